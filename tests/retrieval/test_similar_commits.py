"""Similar commits as evidence for files: broad commits left out, ranks counted over the commits kept, shares
spread over the touched files; and the search's rule that commits come only when their kind is named."""
from __future__ import annotations

import itertools
import math

import pytest

from indexer.models import KINDS
from retrieval.history import CommitHit
from retrieval.hits import Candidate
from retrieval.permissions import UNASKED_KINDS, Scope, searched
from retrieval.search import support_by_history
from retrieval.similar_commits import BROAD_COMMIT, file_evidence, similar_commits


def commit(sha: str, *paths: str, source: str = "app") -> CommitHit:
    return CommitHit(document_id=f"{source}:commit:{sha}", source=source, sha=sha, date="2026-01-01T10:00:00+00:00",
                     author="Ada", message=f"change {sha}", url="", references=(), paths=paths)


def test_broad_and_empty_commits_are_skipped_and_ranks_count_the_kept_ones():
    broad = commit("b", *(f"f{i}.py" for i in range(BROAD_COMMIT + 1)))
    found = list(similar_commits([None, broad, commit("e"), commit("a", "x.py"), commit("a", "x.py"),
                                  commit("c", "x.py", "y.py", "z.py", "w.py")]))
    assert [(s.commit.sha, s.rank) for s in found] == [("a", 0), ("c", 1)]
    assert found[0].share == 1.0 and found[1].share == pytest.approx(1 / 2 / 2)
    edge = commit("d", *(f"f{i}.py" for i in range(BROAD_COMMIT)))
    assert [s.commit.sha for s in similar_commits([edge])] == ["d"]


def test_evidence_is_per_file_of_its_own_source_and_summed():
    evidence = file_evidence(similar_commits([commit("a", "x.py"), commit("b", "x.py", "y.py", source="lib")]))
    assert evidence == {"app:x.py": 1.0, "lib:x.py": pytest.approx(1 / 2 / math.sqrt(2)),
                        "lib:y.py": pytest.approx(1 / 2 / math.sqrt(2))}


def test_similar_commits_is_lazy():
    """locate stops reading commits when its time budget is spent: nothing past what it took is read."""
    read = []

    def commits():
        for sha in "abcdef":
            read.append(sha)
            yield commit(sha, "x.py")
    assert [s.commit.sha for s in itertools.islice(similar_commits(commits()), 2)] == ["a", "b"]
    assert read == ["a", "b"]


def candidate(doc_id: str, score: float, line: int = 1) -> Candidate:
    source, path = doc_id.split(":", 1)
    return Candidate(chunk_id=f"{doc_id}#{line}", doc_id=doc_id, source=source, path=path, start_line=line,
                     end_line=line + 5, content="", score=score)


def test_the_history_bonus_is_bounded_and_only_for_the_files_touched():
    ranked = [candidate("app:a.py", 1.0), candidate("app:b.py", 0.9), candidate("app:b.py", 0.5, 20),
              candidate("app:c.py", 0.8)]
    out = support_by_history(ranked, {"app:c.py": 3.0, "app:b.py": 0.25, "app:gone.py": 1.0}, weight=0.3)
    assert [(c.path, c.start_line, round(c.score, 3)) for c in out] == [
        ("c.py", 1, 1.1), ("a.py", 1, 1.0), ("b.py", 1, 0.975), ("b.py", 20, 0.575)]
    assert out[0].features["history"] == 3.0 and "history" not in out[1].features
    assert support_by_history(ranked, {}, weight=0.3) == ranked


@pytest.mark.parametrize("kinds, expected", [
    ((), UNASKED_KINDS),
    (("commit",), ("commit",)),
    (("code", "commit"), ("code", "commit")),
])
def test_search_covers_commits_only_when_their_kind_is_named(kinds, expected):
    assert searched(Scope(sources=("app",), kinds=kinds)) == Scope(sources=("app",), kinds=expected)
    assert "commit" not in UNASKED_KINDS and set(UNASKED_KINDS) | {"commit"} == set(KINDS)
