"""Store contracts: the engine-neutral search filter, the VectorStore and FullTextIndex protocols."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from indexer.models import PUBLIC, Chunk, normalise_prefix

if TYPE_CHECKING:
    import numpy as np

# A query or chunk vector: a list of floats or a float32 numpy row (what the embedder hands out).
Vector: TypeAlias = "Sequence[float] | np.ndarray"


class StoreError(RuntimeError):
    """A vector or full-text store failed to open, read or write."""


class StoreLocked(StoreError):
    """A store's files are locked by another owner (another process, or already open in this one)."""


class StoreTimeout(StoreError):
    """A store did not answer a search in time (e.g. its process is busy building an index)."""


@dataclass(frozen=True)
class SearchFilter:
    """What a query may see. Built from a Principal plus an optional scope; applied inside engines.

    `principals` must be non-empty: a filter without principals matches nothing (fails closed).
    Empty scope tuples mean "no restriction" on that field."""

    principals: tuple[str, ...]
    sources: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()  # user-facing prefixes such as "src/cairn"
    languages: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    # Sources whose access is stale (indexer/pipeline/permissions.py): their chunks are admitted only
    # when their ACL holds `public`. Every engine applies it inside the query, like the ACL.
    stale_sources: tuple[str, ...] = ()

    def prefix_values(self) -> list[str]:
        """Values matched exactly against a chunk's `path_prefix` list (see documents.path_prefixes)."""
        return [v for p in self.path_prefixes for v in normalise_prefix(p)]

    def field_values(self) -> list[tuple[str, tuple[str, ...]]]:
        """(indexed field, allowed values) pairs every engine ANDs together, each matching "any of".

        `acl` always comes first (an empty one matches nothing); unrestricted scope parts are left out."""
        scope = [("source", self.sources), ("path_prefix", tuple(self.prefix_values())),
                 ("language", self.languages), ("kind", self.kinds)]
        return [("acl", self.principals)] + [(name, values) for name, values in scope if values]

    def excluded(self) -> tuple[tuple[str, tuple[str, ...]], tuple[str, str]] | None:
        """What every engine must leave out: chunks whose `source` is one of the stale sources AND
        whose `acl` lacks `public` — as ((field, any of values), (field, value it lacks)); None: nothing."""
        if not self.stale_sources:
            return None
        return ("source", self.stale_sources), ("acl", PUBLIC)

    @property
    def matches_nothing(self) -> bool:
        return not self.principals


@dataclass(frozen=True)
class VectorPoint:
    chunk: Chunk
    vector: Sequence[float]


@dataclass(frozen=True)
class ScoredId:
    chunk_id: str
    score: float


class VectorStore(Protocol):
    """Dense vectors with the chunk's filter fields as payload (acl, source, doc_id, path_prefix,
    kind, language). Implementations (indexer/stores/backends.py): Qdrant Edge in-process or in a
    child process, qdrant-client (server/cluster)."""

    def upsert(self, points: Sequence[VectorPoint]) -> None: ...

    def delete(self, chunk_ids: Iterable[str]) -> None: ...

    def search(self, vector: Vector, flt: SearchFilter, limit: int) -> list[ScoredId]: ...

    def ids(self, source: str | None = None) -> set[str]: ...

    def optimize(self) -> bool:
        """Build the ANN index over what was written since the last call; whether anything changed.
        A no-op (False) for a store whose server optimizes in the background."""

    def flush(self) -> None:
        """Persist what was written (and let the store trim its write-ahead log); a no-op for a
        store that persists every write itself."""

    @property
    def path(self) -> Path | None:
        """The directory holding the store's files, or None when they are not on this node (a server)."""

    def close(self) -> None: ...


class FullTextIndex(Protocol):
    """BM25 over content, split identifiers, symbols and path, filtered by the same SearchFilter."""

    def upsert(self, chunks: Sequence[Chunk], expanded: Mapping[str, str] | None = None) -> None:
        """`expanded`: `expand_identifiers(text)` already computed for some of the chunks' texts."""

    def delete(self, source: str, chunk_ids: Iterable[str]) -> None: ...

    def commit(self) -> None: ...

    def search(self, query: LexicalQuery, flt: SearchFilter, limit: int) -> list[ScoredId]: ...

    def ids(self, source: str | None = None) -> set[str]: ...

    def facet_counts(self, query: LexicalQuery | None, flt: SearchFilter, field: str) -> dict[str, int]:
        """Per value of `field` (source, kind or language), the chunks matching `query` (None: every
        chunk) under the same filter as `search`: the counts of a search page's facets."""

    def term_statistics(self, tokens: Sequence[str]) -> tuple[int, dict[str, int]]:
        """(chunks in the index, chunks whose content holds each token): the index-wide statistics BM25
        itself scores with, for callers that weigh query terms by rarity."""

    @property
    def root(self) -> Path:
        """The directory holding the index's files."""

    @property
    def per_source_writers(self) -> bool:
        """Whether each source has its own writer (the layout before INDEX_VERSION 3, until rebuilt)
        rather than one for every source: processes writing side by side lock per source then."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class LexicalQuery:
    """An analysed query for the full-text engine (built by retrieval.query_analysis).

    terms: lower-cased words and identifier parts with a weight each; phrases: exact sequences;
    identifiers: whole identifiers as typed (matched against symbols and paths with a boost);
    required: text every hit's content must hold as a token sequence (quoted in a search box)."""

    terms: tuple[tuple[str, float], ...]
    phrases: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
