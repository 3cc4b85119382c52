"""End to end on a real repository: git connector → chunks → tantivy + Qdrant Edge → hybrid search."""
from __future__ import annotations

import os

import pytest

from indexer.models import Access, Principal
from retrieval.permissions import Scope, build_filter
from retrieval.query_analysis import analyse
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

RETRY = '''"""Retry helpers."""
import random
import time


class Backoff:
    """Exponential backoff with jitter."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the given attempt."""
        exp = min(self.cap, self.base * 2 ** attempt)
        return random.uniform(0, exp)


def retry_call(fn, attempts: int = 5, backoff: Backoff | None = None):
    """Call fn until it succeeds, sleeping with backoff between failures."""
    backoff = backoff or Backoff()
    for attempt in range(attempts):
        try:
            return fn()
        except ConnectionError:
            time.sleep(backoff.delay(attempt))
    return fn()
'''

TOKENS = '''"""API token hashing."""
import hashlib


def hash_token(token: str) -> str:
    """Store only the SHA-256 of a token, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()
'''

GUIDE = "# Guide\n\nIntro text.\n\n## Deploying\n\nRun the compose file with the worker queues.\n"
OPERATOR = Principal("op", admin=True)


def index(services, repo, name="repo", access=("public",), full=False):
    services.catalog.upsert_source(name, "git", {"location": str(repo.root), "ref": ""}, list(access))
    return run_sync_job(services, name, full=full)


@pytest.fixture
def repo(make_repo):
    r = make_repo()
    r.write("pkg/retry.py", RETRY)
    r.write("pkg/tokens.py", TOKENS)
    r.write("docs/guide.md", GUIDE)
    r.commit("initial")
    return r


def paths(services, query, principal=OPERATOR, scope=Scope(), limit=10):
    searcher = build_searcher(services)
    searcher.relevance_floor = 0.0  # these tests check what is indexed and filtered, not relevance
    try:
        return [h.path for h in searcher.search(query, principal, scope, limit=limit).hits]
    finally:
        searcher.close()


def all_ids(services, source="repo"):
    return services.fulltext.ids(source), services.vectors.ids(source), set(services.catalog.chunk_ids_of_source(source))


def test_index_then_search_finds_the_function(services, repo):
    counts = index(services, repo)
    assert counts.files_changed == 3 and counts.chunks_embedded > 0
    assert counts.chunks_embedded == counts.chunks_written
    assert paths(services, "exponential backoff jitter")[0] == "pkg/retry.py"
    assert paths(services, "hash_token")[0] == "pkg/tokens.py"
    assert "docs/guide.md" in paths(services, "deploying with compose")
    lexical, dense, catalog = all_ids(services)
    assert lexical == dense == catalog and len(catalog) == counts.chunks_written


def test_unchanged_reindex_embeds_and_writes_nothing(services, repo):
    index(services, repo)
    again = index(services, repo)
    assert (again.files_changed, again.chunks_embedded, again.chunks_written, again.files_deleted) == (0, 0, 0, 0)


def test_changed_file_reembeds_only_its_changed_chunks(services, repo):
    first = index(services, repo)
    before = all_ids(services)[2]
    repo.write("pkg/retry.py", RETRY.replace("return random.uniform(0, exp)", "return exp * random.random()"))
    repo.commit("tweak delay")
    second = index(services, repo)
    assert second.files_changed == 1
    assert 1 <= second.chunks_embedded < first.chunks_embedded
    after = all_ids(services)
    assert after[0] == after[1] == after[2]
    assert len(before ^ after[2]) == 2 * second.chunks_embedded  # each changed chunk: one id out, one in


def test_deleted_file_leaves_both_stores(services, repo):
    index(services, repo)
    repo.remove("pkg/tokens.py")
    repo.commit("drop tokens")
    counts = index(services, repo)
    assert counts.files_deleted == 1
    assert "pkg/tokens.py" not in paths(services, "hash_token sha256")
    lexical, dense, catalog = all_ids(services)
    assert lexical == dense == catalog
    assert all(row.path != "pkg/tokens.py" for row in services.catalog.get_chunks(list(catalog)).values())


def test_skips_symlink_out_of_repo_binary_and_huge_files(services, repo, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("supersecretoutsidevalue\n")
    os.symlink(secret, repo.root / "link.txt")
    repo.write("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    repo.write("blob.dat", b"abc\x00def" * 100)
    repo.write("big.txt", "x = 1\n" * 400_000)
    repo.commit("odd files")
    counts = index(services, repo)
    skipped = {s.path: s.reason for s in services.catalog.list_skipped("repo")}
    assert skipped["link.txt"] == "symlink"
    assert skipped["logo.png"] == "binary" and skipped["blob.dat"] == "binary"
    assert skipped["big.txt"] == "too_large"
    assert counts.files_skipped >= 4
    searcher = build_searcher(services)
    searcher.relevance_floor = 0.0  # any hits will do: the outside file's text must be in none of them
    hits = searcher.search("supersecretoutsidevalue", OPERATOR, limit=50).hits
    searcher.close()
    assert hits and not any("supersecretoutsidevalue" in h.snippet for h in hits)
    assert services.fulltext.search(analyse("supersecretoutsidevalue").lexical,
                                    build_filter(OPERATOR), 10) == []


def test_file_tree_sitter_cannot_parse_is_still_indexed(services, repo):
    repo.write("pkg/broken.py", "def broken(:\n    return zanzibarquux(\n\nclass \n")
    repo.commit("broken")
    index(services, repo)
    assert paths(services, "zanzibarquux")[0] == "pkg/broken.py"


def test_principals_only_see_their_sources(services, make_repo):
    a, b = make_repo("a"), make_repo("b")
    a.write("alpha.py", "def shared_helper():\n    return 'alpha payroll'\n")
    b.write("beta.py", "def shared_helper():\n    return 'beta payroll'\n")
    a.commit(), b.commit()
    index(services, a, name="a", access=("group:alpha",))
    index(services, b, name="b", access=("group:beta", "user:carol"))
    assert paths(services, "shared_helper payroll", Principal("x", frozenset({"alpha"}))) == ["alpha.py"]
    assert paths(services, "shared_helper payroll", Principal("carol")) == ["beta.py"]
    assert paths(services, "shared_helper payroll", Principal("nobody")) == []
    assert sorted(paths(services, "shared_helper payroll", Principal("x", frozenset({"alpha", "beta"})))) == [
        "alpha.py", "beta.py"]
    assert paths(services, "shared_helper payroll", None) == []


def test_scope_filters_by_source_path_and_language(services, repo):
    index(services, repo)
    assert set(paths(services, "backoff token guide", scope=Scope(path_prefixes=("pkg",)))) <= {
        "pkg/retry.py", "pkg/tokens.py"}
    assert set(paths(services, "backoff token deploying", scope=Scope(languages=("markdown",)))) == {"docs/guide.md"}
    assert paths(services, "backoff", scope=Scope(sources=("other",))) == []


def test_reapplied_access_moves_every_chunk_to_the_new_readers_without_embedding(services, repo):
    index(services, repo, access=("group:alpha",))
    alpha, beta = Principal("a", frozenset({"alpha"})), Principal("b", frozenset({"beta"}))
    assert paths(services, "exponential backoff jitter", alpha)[0] == "pkg/retry.py"
    before = all_ids(services)[2]
    counts = services.pipeline.reapply_access({"repo:pkg/retry.py": Access.of("group:beta"), "repo:nope.py": Access()})
    assert counts.docs_changed == 1 and counts.chunks_embedded == 0 and counts.chunks_written > 0
    assert "pkg/retry.py" not in paths(services, "exponential backoff jitter", alpha)
    assert set(paths(services, "exponential backoff jitter", beta)) == {"pkg/retry.py"}
    lexical, dense, catalog = all_ids(services)
    assert lexical == dense == catalog and catalog != before and len(catalog) == len(before)
    assert services.catalog.access_digests("repo")["repo:pkg/retry.py"] == Access.of("group:beta").digest()
    record = services.catalog.get_document("repo:pkg/retry.py")
    assert record is not None and record.content == RETRY and record.state == "indexed"
