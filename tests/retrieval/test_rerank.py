"""Rerankers: the feature reranker's signals, the registry, and the cross-encoder on a tiny model."""
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from retrieval.hits import Candidate
from retrieval.query_analysis import analyse
from retrieval.rerank import RerankerError, build_reranker
from retrieval.rerank_features import FeatureReranker, FeatureWeights, is_docs_path, is_test_path


def cand(path: str, symbol: str = "", score: float = 0.03, start: int = 1, **kw) -> Candidate:
    return Candidate(chunk_id=f"{path}#{start}", doc_id=f"s:{path}", source="s", path=path, start_line=start,
                     end_line=start + 9, content=f"def {symbol or 'f'}():\n    pass", symbol=symbol, score=score, **kw)


def order(query: str, cands: list[Candidate], **options) -> list[str]:
    ranked = build_reranker("features", **options).rerank(analyse(query), cands)
    return [f"{c.path}:{c.symbol}" for c in ranked]


def test_symbol_equal_to_query_identifier_wins():
    query = "why does `resolve_redirects` drop the auth header"
    same = [cand("requests/sessions.py", "Session.rebuild_proxies"), cand("requests/sessions.py", "Session.resolve_redirects", start=50)]
    assert order(query, same)[0].endswith("resolve_redirects")
    fused_lower = [cand("requests/sessions.py", "Session.rebuild_proxies", score=0.032),
                   cand("requests/sessions.py", "Session.resolve_redirects", score=0.028, start=50)]
    assert order(query, fused_lower)[0].endswith("resolve_redirects")


def test_test_file_ranks_below_source_unless_query_mentions_tests():
    test_first = [cand("tests/test_sessions.py", "test_redirect_auth", score=0.032),
                  cand("requests/sessions.py", "redirect_auth", score=0.031)]
    assert order("redirect auth header dropped", test_first)[0] == "requests/sessions.py:redirect_auth"
    assert order("test for redirect auth header", test_first)[0] == "tests/test_sessions.py:test_redirect_auth"
    equal = [cand("tests/test_sessions.py", "redirect"), cand("requests/sessions.py", "redirect")]
    assert order("redirect", equal)[0] == "requests/sessions.py:redirect"


def test_docs_mildly_down_for_code_queries_only():
    cands = [cand("docs/user/advanced.md", score=0.0301), cand("requests/adapters.py", score=0.030)]
    assert order("how does `Session.send` retry", cands)[0].startswith("requests/")
    assert order("docs for how Session.send retries", cands)[0].startswith("docs/")
    assert order("how do sessions retry", cands)[0].startswith("docs/")  # not a code query: no penalty


def test_mentioned_path_and_module_lift_the_file():
    cands = [cand("requests/adapters.py", score=0.032), cand("requests/exceptions.py", score=0.030)]
    assert order("raised requests.exceptions.TooManyRedirects", cands)[0].startswith("requests/exceptions.py")
    assert order("look at exceptions.py please", cands)[0].startswith("requests/exceptions.py")
    assert order('File "/venv/site-packages/requests/exceptions.py", line 3', cands)[0].startswith(
        "requests/exceptions.py")


def feature(query: str, c: Candidate, name: str) -> float:
    return FeatureReranker().rerank(analyse(query), [c])[0].features[name]


@pytest.mark.parametrize("query, path, symbol, name, value", [
    ("`Session.resolve_redirects`", "a.py", "requests.sessions.Session.resolve_redirects", "symbol_exact", 1.0),
    ("`Session.resolve_redirects`", "a.py", "SessionRedirectMixin.resolve_redirects", "symbol_exact", 0.0),
    ("`Session.resolve_redirects`", "a.py", "SessionRedirectMixin.resolve_redirects", "symbol_last", 1.0),
    ("`Session.resolve_redirects`", "a.py", "Session", "symbol_last", 0.5),
    ("resolveRedirects", "a.py", "resolve_redirects", "symbol_exact", 1.0),
    ("retry backoff jitter", "a.py", "backoff_with_jitter", "symbol_parts", 1.0),
    ("retry backoff", "a.py", "backoff_jitter", "symbol_parts", 0.5),
    ("see src/requests/sessions.py", "src/requests/sessions.py", "", "path_exact", 1.0),
    ("see requests/sessions.py", "src/requests/sessions.py", "", "path_exact", 1.0),
    ("see sessions.py", "src/requests/sessions.py", "", "path_exact", 0.0),
    ("see sessions.py", "src/requests/sessions.py", "", "path_basename", 1.0),
    ("see sessions.ts", "src/requests/sessions.py", "", "path_stem", 1.0),
    ("`requests.sessions.Session`", "src/requests/sessions.py", "", "path_module", 1.0),
    ("`sessions.Session`", "src/requests/sessions.py", "", "path_module", 0.5),
    ("`requests.get`", "src/requests/__init__.py", "", "path_module", 0.5),
    ("retry backoff", "urllib3/util/retry.py", "", "path_terms", 0.5),
    ("redirects", "tests/test_redirects.py", "", "test_file", 1.0),
    ("redirect tests", "tests/test_redirects.py", "", "test_file", 0.0),
    ("`test_redirects` fails", "tests/test_redirects.py", "", "test_file", 0.0),
])
def test_feature_values(query, path, symbol, name, value):
    assert feature(query, cand(path, symbol), name) == pytest.approx(value)


@pytest.mark.parametrize("path, expected", [
    ("tests/test_api.py", True), ("test_api.py", True), ("pkg/api_test.go", True), ("web/app.spec.ts", True),
    ("web/app.test.jsx", True), ("src/__tests__/app.js", True), ("src/UserTest.java", True),
    ("spec/models/user_spec.rb", True), ("conftest.py", True), ("app/tests.py", True),
    ("src/latest.py", False), ("src/contest.py", False), ("requests/sessions.py", False), ("testing.md", False),
])
def test_is_test_path(path, expected):
    assert is_test_path(path) is expected


@pytest.mark.parametrize("path, kind, expected", [
    ("docs/api.rst", "code", True), ("README.md", "code", True), ("examples/client.py", "code", True),
    ("src/docs.py", "code", False), ("src/app.py", "doc", True), ("PROJ-12", "issue", False),
])
def test_is_docs_path(path, kind, expected):
    assert is_docs_path(path, kind) is expected


def test_features_are_stored_and_explain_the_score():
    ranked = FeatureReranker().rerank(analyse("`Session.send`"), [cand("requests/sessions.py", "Session.send")])
    feats = ranked[0].features
    weights = FeatureWeights()
    assert {f.name for f in fields(FeatureWeights)} <= set(feats)
    assert ranked[0].score == pytest.approx(sum(getattr(weights, f.name) * feats[f.name] for f in fields(weights)))
    assert feats["rrf_raw"] == 0.03


def test_ties_break_by_path_then_line():
    cands = [cand("b.py", start=5), cand("a.py", start=9), cand("a.py", start=2)]
    ranked = FeatureReranker().rerank(analyse("zzz"), cands)
    assert [(c.path, c.start_line) for c in ranked] == [("a.py", 2), ("a.py", 9), ("b.py", 5)]


def test_ranks_count_when_fused_scores_tie():
    cands = [cand("a.py", lexical_rank=None, dense_rank=4), cand("b.py", lexical_rank=0, dense_rank=0)]
    assert order("zzz", cands)[0].startswith("b.py")


def test_empty_candidates():
    assert FeatureReranker().rerank(analyse("x y"), []) == []


def test_weights_override_from_the_registry():
    cands = [cand("tests/test_x.py", score=0.032), cand("src/x.py", score=0.031)]
    assert order("x", cands)[0].startswith("src/")
    assert order("x", cands, weights={"test_file": 0.0})[0].startswith("tests/")
    assert order("x", cands, weights=FeatureWeights(test_file=0.0))[0].startswith("tests/")


@pytest.mark.parametrize("kind, options, message", [
    ("bm25-magic", {}, "unknown reranker kind 'bm25-magic'"),
    ("features", {"weights": {"nope": 1.0}}, "unknown feature weights"),
    ("features", {"weights": 3}, "must be a FeatureWeights"),
    ("features", {"model": "x"}, "bad options"),
    ("cross-encoder", {}, "needs a model name"),
    ("cross-encoder", {"model": "not/a-fastembed-model"}, "give local_dir"),
    ("cross-encoder", {"model": "x", "colour": "red"}, "bad options"),
])
def test_registry_errors(kind, options, message):
    with pytest.raises(RerankerError, match=message):
        build_reranker(kind, **options)


def test_registry_default_is_features():
    assert isinstance(build_reranker(), FeatureReranker)


# --- cross-encoder on a tiny BERT made here -------------------------------------------------------

TINY_NAME = "cairn-tests/tiny-bert-cross-encoder"
WORDS = ("retry", "backoff", "jitter", "token", "hash", "session", "redirect", "header", "auth", "def", "pass")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT sequence classifier with random weights, exported to ONNX."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    letters = "abcdefghijklmnopqrstuvwxyz0123456789_.:/()"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]
    # transformers 5 takes the vocabulary itself (`vocab=`); save_pretrained writes tokenizer.json.
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=128)
    tokenizer.save_pretrained(str(out))
    torch.manual_seed(7)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                     num_labels=1, initializer_range=0.2, attn_implementation="eager")
    model = transformers.BertForSequenceClassification(config).eval()
    sample = tokenizer([("retry", "backoff jitter"), ("a", "b")], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    (out / "onnx").mkdir()
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(sample[n] for n in names), str(out / "onnx" / "model.onnx"),
                          input_names=names, output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "logits": {0: "batch"}})
    return out


def direct_logits(model_dir: Path, query: str, docs: list[str]) -> np.ndarray:
    """The same model run with onnxruntime and the tokenizer file directly, without fastembed."""
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tokenizer.encode_batch([(query, d) for d in docs])
    feed = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
            "token_type_ids": [e.type_ids for e in enc]}
    session = onnxruntime.InferenceSession(str(model_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.array(v, dtype=np.int64) for k, v in feed.items()})[0][:, 0]


CE_CANDIDATES = [
    cand("a/retry.py", "retry_backoff", score=0.05),
    cand("b/token.py", "hash_token", score=0.04),
    cand("c/session.py", "redirect", score=0.03),
    cand("d/auth.py", "auth_header", score=0.02),
    cand("e/x.py", "tail_one", score=0.01),
    cand("f/y.py", "tail_two", score=0.005),
]


@pytest.mark.slow
def test_cross_encoder_scores_top_n_like_onnxruntime(tiny_model):
    from retrieval.rerank_cross_encoder import document_text

    reranker = build_reranker("cross-encoder", model=TINY_NAME, local_dir=str(tiny_model), top_n=4,
                              threads=1, model_weight=1.0)
    query = analyse("retry with backoff and jitter")
    ranked = reranker.rerank(query, CE_CANDIDATES)
    assert sorted(c.chunk_id for c in ranked) == sorted(c.chunk_id for c in CE_CANDIDATES)
    logits = direct_logits(tiny_model, query.dense_text, [document_text(c) for c in CE_CANDIDATES[:4]])
    assert len(set(np.round(logits, 5))) == 4, "the tiny model should separate the candidates"
    expected = [CE_CANDIDATES[i].chunk_id for i in np.argsort(-logits, kind="stable")]
    assert [c.chunk_id for c in ranked[:4]] == expected
    assert [c.chunk_id for c in ranked[4:]] == ["e/x.py#1", "f/y.py#1"]  # the rest keep their order
    assert [c.features["cross_encoder"] for c in ranked[:4]] == pytest.approx(sorted(logits, reverse=True), abs=1e-4)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert [c.chunk_id for c in reranker.rerank(query, CE_CANDIDATES)] == [c.chunk_id for c in ranked]


@pytest.mark.slow
def test_cross_encoder_blends_with_the_incoming_score(tiny_model):
    reranker = build_reranker("cross-encoder", model=TINY_NAME, local_dir=tiny_model, top_n=30, model_weight=0.0)
    ranked = reranker.rerank(analyse("retry"), CE_CANDIDATES)
    assert [c.chunk_id for c in ranked] == [c.chunk_id for c in CE_CANDIDATES]  # weight 0: incoming order
    assert reranker.rerank(analyse("retry"), []) == []


def test_cross_encoder_load_errors(tmp_path):
    with pytest.raises(RerankerError, match="does not exist"):
        build_reranker("cross-encoder", model="some/custom", local_dir=tmp_path / "missing")
    with pytest.raises(RerankerError, match="no ONNX model"):
        build_reranker("cross-encoder", model="some/custom", local_dir=tmp_path)
    with pytest.raises(RerankerError, match=r"onnx/model\.onnx; that file is missing"):
        build_reranker("cross-encoder", model="Xenova/ms-marco-MiniLM-L-6-v2", local_dir=tmp_path)
    with pytest.raises(RerankerError, match="top_n"):
        build_reranker("cross-encoder", model="some/custom", local_dir=tmp_path, top_n=0)


@pytest.mark.slow
def test_cross_encoder_directory_setting_reranks_a_real_search(tiny_model, make_repo, tmp_path, embedder):
    """CAIRN_RERANKER=cross-encoder with CAIRN_CROSS_ENCODER_MODEL=<dir>: the API's searcher loads the
    tiny model from the directory, and the hit order is the one its logits (computed here with
    onnxruntime directly) blended with the incoming scores give."""
    from indexer.models import Principal
    from indexer.services import IndexServices
    from indexer.settings import Settings
    from retrieval.rerank_cross_encoder import CrossEncoderReranker, document_text
    from retrieval.searcher import build_searcher
    from workers.jobs import run_sync_job

    repo = make_repo("svc")
    repo.write("net/retry.py", "def retry_backoff(attempt):\n    return min(60, 2 ** attempt) + jitter()\n")
    repo.write("auth/token.py", "def hash_token(token):\n    return sha256(token)\n")
    repo.write("web/session.py", "def follow_redirect(session, header):\n    return session.get(header)\n")
    repo.commit()
    settings = Settings(data_dir=tmp_path / "data", reranker="cross-encoder", cross_encoder_model=str(tiny_model))
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        svc.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
        run_sync_job(svc, "svc")
        searcher = build_searcher(svc)
        assert isinstance(searcher.reranker, CrossEncoderReranker)
        incoming: list[Candidate] = []
        rerank = searcher.reranker.rerank
        searcher.reranker.rerank = lambda q, cands: incoming.extend(cands) or rerank(q, cands)
        query = "retry with backoff and jitter on token redirect"
        hits = searcher.search(query, Principal(user="u", admin=True), limit=10).hits
        searcher.close()
    finally:
        svc.close()
    assert len(incoming) == 3 and {h.path for h in hits} == {"net/retry.py", "auth/token.py", "web/session.py"}
    logits = direct_logits(tiny_model, analyse(query).dense_text, [document_text(c) for c in incoming])
    assert len(set(np.round(logits, 5))) == 3, "the tiny model should separate the candidates"

    def unit(values):
        low, high = min(values), max(values)
        return [(v - low) / (high - low) for v in values]

    blended = [0.8 * m + 0.2 * i for m, i in zip(unit(list(logits)), unit([c.score for c in incoming]), strict=True)]
    expected = [incoming[i].path for i in np.argsort(-np.array(blended), kind="stable")]
    assert [h.path for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted((1 + b for b in blended), reverse=True), abs=1e-4)
