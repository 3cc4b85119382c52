"""Golden ranking: bug reports against a small real-looking repository (tests/retrieval/golden/), each
with the files its fix needs and the rank those files must reach. A ranking change that pushes an
expected file past its bound, or lowers the set's MRR, fails here; the last test shows that the set
does tell a weaker ranking apart, so passing it means something."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from indexer.models import Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import StoreTimeout
from retrieval.permissions import Scope
from retrieval.query_analysis import analyse
from retrieval.rerank_features import FeatureReranker, FeatureWeights
from retrieval.search import HybridSearcher, SearchOptions
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

GOLDEN = Path(__file__).parent / "golden"
SOURCE = "tinyhttp"
MIN_MRR = 0.85  # the set's mean reciprocal rank of the first expected file (0.875 when written)
READER = Principal(user="dev", admin=True)


@dataclass(frozen=True)
class GoldenQuery:
    query: str
    expected_paths: tuple[str, ...]
    max_rank: int  # every expected file must be within the first max_rank distinct files


def repo_files(text: str) -> dict[str, str]:
    """`=== path` headers, each followed by that file's content."""
    files: dict[str, list[str]] = {}
    current = None
    for line in text.split("\n"):
        if line.startswith("=== "):
            current = line[4:].strip()
            files[current] = []
        elif current is not None:
            files[current].append(line)
    return {path: "\n".join(lines).rstrip("\n") + "\n" for path, lines in files.items()}


def golden_queries() -> list[GoldenQuery]:
    rows = [json.loads(line) for line in (GOLDEN / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [GoldenQuery(r["query"], tuple(r["expected_paths"]), int(r["max_rank"])) for r in rows]


@pytest.fixture(scope="module")
def golden_index(tmp_path_factory, embedder):
    from tests.conftest import GitRepo

    root = tmp_path_factory.mktemp("golden")
    repo = GitRepo(root / SOURCE)
    for path, content in repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8")).items():
        repo.write(path, content)
    repo.commit("tinyhttp 2.4.1")
    svc = IndexServices.open(Settings(data_dir=root / "data"), embedder=embedder)
    svc.catalog.upsert_source(SOURCE, "git", {"location": str(repo.root), "ref": ""}, ["public"])
    run_sync_job(svc, SOURCE)
    yield svc
    svc.close()


def ranked_files(searcher: HybridSearcher, query: str) -> list[str]:
    hits = searcher.search(query, READER, Scope(sources=(SOURCE,)), limit=50).hits
    return list(dict.fromkeys(h.path for h in hits))


def run_golden(searcher: HybridSearcher) -> tuple[list[str], float]:
    """Bound violations (as readable lines) and the MRR over the golden set."""
    violations, reciprocal = [], []
    for q in golden_queries():
        files = ranked_files(searcher, q.query)
        ranks = {p: files.index(p) + 1 if p in files else None for p in q.expected_paths}
        first = min((r for r in ranks.values() if r), default=None)
        reciprocal.append(1 / first if first else 0.0)
        late = {p: r for p, r in ranks.items() if r is None or r > q.max_rank}
        if late:
            violations.append(f"{q.query.splitlines()[0]!r}: {late} (bound {q.max_rank}), top: {files[:5]}")
    return violations, sum(reciprocal) / len(reciprocal)


def test_golden_fixture_is_well_formed():
    files = repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8"))
    queries = golden_queries()
    assert len(files) >= 15 and len(queries) >= 8
    assert all(p in files for q in queries for p in q.expected_paths)


@pytest.mark.slow
def test_golden_bug_reports_rank_their_files_within_bounds(golden_index):
    searcher = build_searcher(golden_index)
    try:
        violations, mrr = run_golden(searcher)
    finally:
        searcher.close()
    assert not violations, "\n".join(violations)
    assert mrr >= MIN_MRR


@pytest.mark.slow
def test_golden_set_tells_a_weaker_ranking_apart(golden_index):
    """Dense retrieval alone with no reranking features (the naive pipeline) must fail the bounds."""
    base = build_searcher(golden_index)
    only_fusion = FeatureReranker(FeatureWeights(**{f.name: 0.0 for f in fields(FeatureWeights) if f.name != "rrf"}))
    weak = HybridSearcher(base.catalog, base.fulltext, base.vectors, base.embedder, only_fusion,
                          candidates=base.candidates, max_hits_per_file=base.max_hits_per_file,
                          options=SearchOptions(fusion_weights=(0.0, 1.0), file_support=0.0))
    base.close()
    try:
        violations, mrr = run_golden(weak)
    finally:
        weak.close()
    assert violations or mrr < MIN_MRR


# -- exact first and abstention ---------------------------------------------------------------------

def relevance_checks() -> list[tuple[str, bool]]:
    """The abstention check set: (query, whether the golden repository answers it)."""
    rows = [json.loads(line) for line in (GOLDEN / "relevance.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [(r["query"], bool(r["answerable"])) for r in rows]


def hit_texts(searcher: HybridSearcher, query: str) -> list[str]:
    """Each hit's lines, read from the golden repository's files (not from the index)."""
    files = repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8"))
    hits = searcher.search(query, READER, Scope(sources=(SOURCE,)), limit=50).hits
    return ["\n".join(files[h.path].split("\n")[h.start_line - 1:h.end_line]) for h in hits]


@pytest.fixture
def golden_searcher(golden_index):
    searcher = build_searcher(golden_index)
    yield searcher
    searcher.close()


def test_relevance_check_set_is_large_enough():
    checks = relevance_checks()
    assert sum(a for _, a in checks) >= 50 and sum(not a for _, a in checks) >= 50


@pytest.mark.slow
def test_floor_abstains_off_topic_and_answers_questions_about_the_code(golden_searcher):
    """Right = an answerable query gets hits, an off-topic one at most one; >= 90 % of each kind."""
    wrong = {True: [], False: []}
    for query, answerable in relevance_checks():
        result = golden_searcher.search(query, READER, Scope(sources=(SOURCE,)), limit=10)
        if (len(result.hits) > 0) != answerable and (answerable or len(result.hits) > 1):
            wrong[answerable].append(f"{query!r} ({len(result.hits)} hits, {result.evidence})")
        assert result.abstained == (not result.hits)
    checks = relevance_checks()
    for kind in (True, False):
        total = sum(a == kind for _, a in checks)
        assert len(wrong[kind]) <= 0.1 * total, "\n".join(wrong[kind])


@pytest.mark.slow
def test_without_a_floor_off_topic_queries_get_hits(golden_searcher):
    """The check set does tell: with the floor off most off-topic queries fill a result list."""
    golden_searcher.relevance_floor = 0.0
    filled = [q for q, answerable in relevance_checks()
              if not answerable and len(golden_searcher.search(q, READER, Scope(sources=(SOURCE,))).hits) > 1]
    assert len(filled) > 0.5 * sum(not a for _, a in relevance_checks())


@pytest.mark.slow
@pytest.mark.parametrize("query", ["null", "undefined", "  NULL ", "[object Object]"])
def test_editor_placeholders_for_an_empty_input_get_nothing(golden_searcher, query):
    result = golden_searcher.search(query, READER, Scope(sources=(SOURCE,)))
    assert result.hits == [] and result.abstained


@pytest.mark.slow
@pytest.mark.parametrize("identifier", ["keep_alive_seconds", "rate_limit_per_minute"])
def test_files_holding_a_typed_identifier_rank_before_all_others(golden_searcher, identifier):
    holding = {p for p, text in repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8")).items()
               if identifier in text}
    files = ranked_files(golden_searcher, identifier)
    assert len(holding) >= 2 and set(files[:len(holding)]) == holding, files


@pytest.mark.slow
@pytest.mark.parametrize("query, phrase", [
    ('"rate limit reached"', "rate limit reached"),
    ('"positive number" of requests', "positive number"),
    ('where are "idle connections" closed', "idle connections"),
])
def test_quoted_phrases_are_required(golden_searcher, query, phrase):
    texts = hit_texts(golden_searcher, query)
    assert texts and all(phrase in " ".join(t.lower().split()) for t in texts), texts


@pytest.mark.slow
def test_a_quoted_phrase_nothing_holds_gives_no_hits(golden_searcher):
    assert hit_texts(golden_searcher, 'adapter "connection pool exhausted"') == []
    assert hit_texts(golden_searcher, "adapter connection pool exhausted")  # unquoted: words are enough


def test_a_pasted_report_keeps_quotes_as_boosts_not_requirements():
    report = 'Uploads fail\n\nThe server says "payload too large" when I send a file with tinyhttp.post.'
    assert analyse(report).required == () and not analyse(report).search_box
    assert analyse('"payload too large" post').required == ("payload too large",)


# -- cleaner context: nearby hits as one item, declarations and copies below what they repeat ----------

NEW_QUERIES = ["to_native_string", "retry a fetch with backoff in the browser", "dispatch_hook",
               "where is the CA bundle used to verify TLS certificates", "how are redirects followed"]


@pytest.mark.slow
def test_nearby_hits_come_as_one_item_holding_the_files_own_lines(golden_searcher):
    """Every item holds exactly its file's lines, and two items of one file never have only 1-3 blank lines
    between them (they would be one item); across the set some items do merge several chunks."""
    files = repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8"))
    merged = 0
    for query in [q.query for q in golden_queries()] + NEW_QUERIES:
        hits = golden_searcher.search(query, READER, Scope(sources=(SOURCE,)), limit=10).hits
        assert len({c for h in hits for c in h.chunk_ids}) == sum(len(h.chunk_ids) for h in hits)
        spans: dict[str, list[tuple[int, int]]] = {}
        for h in hits:
            lines = files[h.path].split("\n")
            assert h.content == "\n".join(lines[h.start_line - 1:h.end_line]), (query, h.path)
            merged += len(h.chunk_ids) > 1
            spans.setdefault(h.path, []).append((h.start_line, h.end_line))
        for path, found in spans.items():
            lines = files[path].split("\n")
            for (_, end), (start, _) in itertools.pairwise(sorted(found)):
                between = lines[end:start - 1]
                assert len(between) > 3 or any(line.strip() for line in between), (query, path, found)
    assert merged >= 5


@pytest.mark.slow
@pytest.mark.parametrize("query, path, implementation", [
    ("to_native_string", "tinyhttp/_internal_utils.py", 'def to_native_string(string, encoding="ascii"):'),
    ("retry a fetch with backoff in the browser", "extras/browser/tinyfetch.ts", "export async function withRetries("),
])
def test_the_implementation_leads_its_overload_stubs(golden_index, golden_searcher, query, path, implementation):
    """The file comes first, as one item led by (named after, scored as) the implementation's chunk,
    not by the overload stubs or signatures above it."""
    hits = golden_searcher.search(query, READER, Scope(sources=(SOURCE,)), limit=10).hits
    assert hits[0].path == path
    best = golden_index.catalog.get_chunks([hits[0].chunk_id])[hits[0].chunk_id]
    assert implementation in best.content
    assert len(hits[0].chunk_ids) > 1 and implementation in hits[0].content  # the stubs come along, below


@pytest.mark.slow
@pytest.mark.parametrize("query", ["dispatch_hook", "default_hooks", "run the response hooks on the hook data"])
def test_a_stub_file_ranks_below_its_implementation(golden_searcher, query):
    files = ranked_files(golden_searcher, query)
    assert "tinyhttp/hooks.py" in files
    assert "tinyhttp/hooks.pyi" not in files or files.index("tinyhttp/hooks.py") < files.index("tinyhttp/hooks.pyi")


@pytest.mark.slow
@pytest.mark.parametrize("query", ["where is the CA bundle used to verify TLS certificates", "CURL_CA_BUNDLE"])
def test_a_vendored_copy_ranks_below_every_other_file(golden_searcher, query):
    files = ranked_files(golden_searcher, query)
    copy = "tinyhttp/packages/certifi/core.py"
    assert files[0] == "tinyhttp/certs.py"
    assert copy not in files or files[-1] == copy, files


# -- history evidence -------------------------------------------------------------------------------

# Past fixes on top of the import: (file, commit message). The import touches every file (a broad commit:
# evidence for none of them); each fix touches one file, in words the file's code does not use.
FIXES = (
    ("tinyhttp/adapters.py", "Retry pooled connections the server closed while they sat idle"),
    ("tinyhttp/structures.py", "Compare header mappings without regard to letter case"),
    ("tinyhttp/hooks.py", "Let callbacks registered for a response replace it"),
    ("tinyhttp/ratelimit.py", "Back off politely when the server says we are sending too fast"),
    ("tinyhttp/config.py", "Read the default timeout from the environment"),
    ("tinyhttp/sessions.py", "Keep the Authorization header off requests redirected to another host"),
)
HISTORY_WEIGHT = 0.3  # what bench/eval_locate.py measures as search+h
ENG = Principal(user="dev", groups=frozenset({"eng"}))  # the history source is eng's


@pytest.fixture(scope="module")
def history_index(tmp_path_factory, embedder):
    """The golden repository with history: the import (every file, a `# before the fix` line added to the
    fixed ones), then one commit per fix restoring that file."""
    from tests.conftest import GitRepo

    root = tmp_path_factory.mktemp("golden-history")
    files = repo_files((GOLDEN / "repo.txt").read_text(encoding="utf-8"))
    fixed = dict(FIXES)
    repo = GitRepo(root / SOURCE)
    for path, content in files.items():
        repo.write(path, content + ("# before the fix\n" if path in fixed else ""))
    repo.commit("Import tinyhttp 2.4.1")
    for path, message in FIXES:
        repo.write(path, files[path])
        repo.commit(message)
    svc = IndexServices.open(Settings(data_dir=root / "data", history_commits=100), embedder=embedder)
    svc.catalog.upsert_source(SOURCE, "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    run_sync_job(svc, SOURCE)
    yield svc
    svc.close()


def eng_files(searcher: HybridSearcher, query: str) -> list[str]:
    return list(dict.fromkeys(h.path for h in searcher.search(query, ENG, Scope(sources=(SOURCE,)), limit=50).hits))


@pytest.fixture
def history_searcher(history_index):
    searcher = build_searcher(history_index)
    yield searcher
    searcher.close()


@pytest.mark.slow
@pytest.mark.parametrize("query, path", [
    ("pooled connection closed by the server while idle is not retried", "tinyhttp/adapters.py"),
    ("header mapping comparison should ignore letter case", "tinyhttp/structures.py"),
    ("a callback registered for the response cannot replace it", "tinyhttp/hooks.py"),
    ("client does not back off when the server says we send too fast", "tinyhttp/ratelimit.py"),
    ("default timeout is not read from the environment", "tinyhttp/config.py"),
])
def test_a_query_like_a_past_commit_ranks_the_file_it_changed_higher(history_searcher, query, path):
    history_searcher.options = SearchOptions(history_weight=0.0)
    without = eng_files(history_searcher, query)
    history_searcher.options = SearchOptions(history_weight=HISTORY_WEIGHT)
    with_history = eng_files(history_searcher, query)
    assert path in with_history
    assert path not in without or with_history.index(path) < without.index(path), (without[:5], with_history[:5])


@pytest.mark.slow
def test_a_broad_commit_and_an_unreadable_source_give_no_history_evidence(history_searcher):
    """The import touched every file: for a query repeating its message (the import is the most similar
    commit), the files only it changed gain nothing. A caller who cannot read the source gets no commit (and
    no hit) at all."""
    query = "Import tinyhttp 2.4.1"
    top = history_searcher.search(query, ENG, Scope(sources=(SOURCE,), kinds=("commit",)), limit=1).hits
    assert top and top[0].content.startswith(query)
    history_searcher.options = SearchOptions(history_weight=0.0)
    without = {h.chunk_id: h.score for h in history_searcher.search(query, ENG, Scope(sources=(SOURCE,)), limit=20).hits}
    history_searcher.options = SearchOptions(history_weight=HISTORY_WEIGHT)
    with_history = history_searcher.search(query, ENG, Scope(sources=(SOURCE,)), limit=20).hits
    fixed = dict(FIXES)
    unfixed = [h for h in with_history if h.path not in fixed and h.chunk_id in without]
    assert unfixed and all(h.score == without[h.chunk_id] for h in unfixed)
    outsider = Principal(user="outsider", groups=frozenset({"ops"}))
    assert history_searcher.search(FIXES[0][1], outsider, Scope(kinds=("commit", "code")), limit=20).hits == []


@pytest.mark.slow
def test_search_leaves_commits_out_unless_the_kind_is_named(history_searcher):
    """A query repeating a commit's message word for word: without `kinds` the limit fills with files only;
    naming `commit` brings that commit first."""
    path, message = FIXES[0]
    plain = history_searcher.search(message, ENG, Scope(sources=(SOURCE,)), limit=8).hits
    assert len(plain) == 8 and {h.kind for h in plain} <= {"code", "doc", "text"}
    commits = history_searcher.search(message, ENG, Scope(sources=(SOURCE,), kinds=("commit",)), limit=8).hits
    assert commits and {h.kind for h in commits} == {"commit"}
    assert commits[0].content.startswith(message) and path in commits[0].content
    mixed = history_searcher.search(message, ENG, Scope(kinds=("code", "commit")), limit=20).hits
    assert {"code", "commit"} <= {h.kind for h in mixed}


class CommitSearchTimesOut:
    """The real vector store, except that a search for commit documents does not answer in time."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def search(self, vector, flt, limit):
        if flt.kinds == ("commit",):
            raise StoreTimeout("busy")
        return self.inner.search(vector, flt, limit)


@pytest.mark.slow
def test_a_commit_search_that_times_out_keeps_the_file_hits(history_searcher):
    base = history_searcher
    slow = HybridSearcher(base.catalog, base.fulltext, CommitSearchTimesOut(base.vectors), base.embedder, base.reranker,
                          candidates=base.candidates, max_hits_per_file=base.max_hits_per_file,
                          options=SearchOptions(history_weight=HISTORY_WEIGHT))
    try:
        query = "pooled connection closed by the server while idle is not retried"
        result = slow.search(query, ENG, Scope(sources=(SOURCE,)), limit=10)
        base.options = SearchOptions(history_weight=0.0)
        without = base.search(query, ENG, Scope(sources=(SOURCE,)), limit=10)
    finally:
        slow.close()
    assert result.partial == () and result.hits and result.hits[0].path == "tinyhttp/adapters.py"
    assert {h.chunk_id for h in result.hits} == {h.chunk_id for h in without.hits}  # the same files, BM25's commits
