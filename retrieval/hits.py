"""What retrieval passes between stages (Candidate) and returns to clients (Hit)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Candidate:
    """A chunk found by at least one engine, hydrated from the catalog, on its way to the reranker."""

    chunk_id: str
    doc_id: str
    source: str
    path: str
    start_line: int
    end_line: int
    content: str
    symbol: str = ""
    kind: str = "code"
    language: str = ""
    title: str = ""
    url: str = ""
    header: str = ""  # the path + enclosing signatures the chunk was embedded with
    lexical_rank: int | None = None  # 0-based rank in the BM25 list, None if absent
    dense_rank: int | None = None
    lexical_score: float = 0.0
    dense_score: float = 0.0
    score: float = 0.0  # the current stage's score (fusion, then reranker)
    features: dict[str, float] = field(default_factory=dict, compare=False)
    # the chunks a merged item holds, best first (retrieval.packing.merge_nearby); () for a single chunk
    members: tuple[str, ...] = ()

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        """Every chunk whose text this candidate shows, best first."""
        return self.members or (self.chunk_id,)

    def with_score(self, score: float) -> Candidate:
        return replace(self, score=score)

    def scored(self, score: float, features: dict[str, float]) -> Candidate:
        """A copy with a new score and these features added: what every ranking stage does to each
        candidate of every query, so it skips `dataclasses.replace`'s per-field re-validation (a
        quarter of the reranker's time)."""
        out = object.__new__(Candidate)
        state = out.__dict__
        state.update(self.__dict__)
        state["score"] = score
        state["features"] = {**self.features, **features}
        return out


@dataclass(frozen=True)
class Hit:
    """One search result as clients see it."""

    chunk_id: str
    doc_id: str
    source: str
    path: str
    start_line: int
    end_line: int
    score: float
    snippet: str
    symbol: str = ""
    kind: str = "code"
    language: str = ""
    title: str = ""
    url: str = ""
    # The item's whole text: its chunk's, or for nearby hits merged into one item the union of their lines
    content: str = field(default="", repr=False)
    chunk_ids: tuple[str, ...] = ()  # the chunks this item shows, best (`chunk_id`) first
