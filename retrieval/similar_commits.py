"""Past commits that resemble a text, as evidence for the files they changed: what `search` adds to its
ranking (a bounded bonus per file) and what `locate` weighs in its `commits` step.

The commits come ranked from the engines (under the caller's filter, so a commit of a source the caller
cannot read is never among them); a commit touching many files is left out (it says nothing about any one
of them), and the others share their weight among the files they touched."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from retrieval.history import CommitHit

BROAD_COMMIT = 12  # a commit touching more files than this is not evidence for any of them


@dataclass(frozen=True)
class SimilarCommit:
    commit: CommitHit
    rank: int  # 0-based among the commits kept, most similar first

    @property
    def share(self) -> float:
        """The weight each touched file gets: 1 / (1 + rank), spread over the files (1 / sqrt(files))."""
        return 1.0 / (1 + self.rank) / math.sqrt(len(self.commit.paths))


def similar_commits(commits: Iterable[CommitHit | None], broad: int = BROAD_COMMIT) -> Iterator[SimilarCommit]:
    """The commits (most similar first; None for a document that is not a readable commit) that touched at
    least one and at most `broad` files, each once. Lazy: a caller on a time budget stops when it must."""
    rank, seen = 0, set()
    for commit in commits:
        if commit is None or commit.document_id in seen or not commit.paths or len(commit.paths) > broad:
            continue
        seen.add(commit.document_id)
        yield SimilarCommit(commit, rank)
        rank += 1


def file_evidence(commits: Iterable[SimilarCommit]) -> dict[str, float]:
    """Per touched file's document id (`source:path`), the sum of the shares of the commits that changed it."""
    out: dict[str, float] = {}
    for similar in commits:
        for path in similar.commit.paths:
            doc_id = f"{similar.commit.source}:{path}"
            out[doc_id] = out.get(doc_id, 0.0) + similar.share
    return out
