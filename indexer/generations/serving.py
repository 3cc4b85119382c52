"""What serves while generations change: the slot the pipeline writes through (repointed by a swap
under the write lock), a stand-in for vectors whose model is gone, and searchers that retire once
their in-flight searches end."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from indexer.embedding import ChunkEmbedder
from indexer.generations.state import Generation
from indexer.models import Chunk, Principal
from indexer.stores import FullTextIndex, LexicalQuery, ScoredId, SearchFilter, Vector, VectorPoint, VectorStore

log = logging.getLogger(__name__)


class ServingSlot:
    """The active generation's stores and query/document embedder. The pipeline gets the Slot*
    views below, so a swap repoints it without touching the pipeline object."""

    def __init__(self, generation: Generation, fulltext: FullTextIndex, vectors: VectorStore,
                 embedder: ChunkEmbedder) -> None:
        self.generation, self.fulltext, self.vectors, self.embedder = generation, fulltext, vectors, embedder
        self.embedded_by = threading.local()  # generation id whose model embedded this thread's last batch

    def switch(self, generation: Generation, fulltext: FullTextIndex, vectors: VectorStore,
               embedder: ChunkEmbedder) -> None:
        self.generation, self.fulltext, self.vectors, self.embedder = generation, fulltext, vectors, embedder


class SlotFullText:
    """`FullTextIndex` of whichever generation the slot serves at each call."""

    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    def upsert(self, chunks: Sequence[Chunk], expanded: Mapping[str, str] | None = None) -> None:
        self._slot.fulltext.upsert(chunks, expanded)

    def delete(self, source: str, chunk_ids: Iterable[str]) -> None:
        self._slot.fulltext.delete(source, chunk_ids)

    def commit(self) -> None:
        self._slot.fulltext.commit()

    def search(self, query: LexicalQuery, flt: SearchFilter, limit: int) -> list[ScoredId]:
        return self._slot.fulltext.search(query, flt, limit)

    def ids(self, source: str | None = None) -> set[str]:
        return self._slot.fulltext.ids(source)

    def facet_counts(self, query: LexicalQuery | None, flt: SearchFilter, field: str) -> dict[str, int]:
        return self._slot.fulltext.facet_counts(query, flt, field)

    def term_statistics(self, tokens: Sequence[str]) -> tuple[int, dict[str, int]]:
        return self._slot.fulltext.term_statistics(tokens)

    @property
    def root(self) -> Path:
        return self._slot.fulltext.root

    @property
    def per_source_writers(self) -> bool:
        return self._slot.fulltext.per_source_writers

    def close(self) -> None:
        self._slot.fulltext.close()


class SlotEmbedder:
    """`ChunkEmbedder` of the slot's generation; notes which generation embedded each thread's batch."""

    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    @property
    def model_name(self) -> str:
        return self._slot.embedder.model_name

    @property
    def dim(self) -> int:
        return self._slot.embedder.dim

    def embed_chunks(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, int]:
        self._slot.embedded_by.generation = self._slot.generation.id
        return self._slot.embedder.embed_chunks(chunks)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._slot.embedder.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._slot.embedder.embed_query(text)


class SlotVectors:
    """Writes to the active generation. The pipeline embeds outside the write lock: vectors made by
    the previous generation's model before a swap are re-embedded with the new one (cache first)."""

    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        slot = self._slot
        made_by = getattr(slot.embedded_by, "generation", None)  # a thread-local, unset in a fresh thread
        slot.embedded_by.generation = None  # only the batch embedded just before counts
        if made_by not in (None, slot.generation.id) and points:
            log.info("re-embedding %d chunks embedded before the swap to generation %d", len(points), slot.generation.id)
            vectors, _ = slot.embedder.embed_chunks([p.chunk for p in points])
            points = [VectorPoint(p.chunk, v) for p, v in zip(points, vectors, strict=True)]
        slot.vectors.upsert(points)

    def delete(self, chunk_ids: Iterable[str]) -> None:
        self._slot.vectors.delete(chunk_ids)

    def search(self, vector: Vector, flt: SearchFilter, limit: int) -> list[ScoredId]:
        return self._slot.vectors.search(vector, flt, limit)

    def ids(self, source: str | None = None) -> set[str]:
        return self._slot.vectors.ids(source)

    def optimize(self) -> bool:
        return self._slot.vectors.optimize()

    def flush(self) -> None:
        self._slot.vectors.flush()

    @property
    def path(self) -> Path | None:
        return self._slot.vectors.path

    def close(self) -> None:
        self._slot.vectors.close()


class NoVectors:
    """Stands in for the active generation's vectors when its model cannot be loaded: dense search
    answers nothing (keyword search keeps serving) and writes go nowhere (the new generation gets
    every document's vectors from its build, and the old vectors are retired with it)."""

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        return None

    def delete(self, chunk_ids: Iterable[str]) -> None:
        return None

    def search(self, vector: Vector, flt: SearchFilter, limit: int) -> list[ScoredId]:
        return []

    def ids(self, source: str | None = None) -> set[str]:
        return set()

    def optimize(self) -> bool:
        return False

    def flush(self) -> None:
        return None

    @property
    def path(self) -> Path | None:
        """No files: a backup of this generation holds no vectors."""
        return None

    def close(self) -> None:
        return None


ScopeT_contra = TypeVar("ScopeT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)
S = TypeVar("S")
R = TypeVar("R")


class Searcher(Protocol[ScopeT_contra, ResultT_co]):
    """What a generation's searcher offers (retrieval's HybridSearcher): generic in its scope and
    result types, which belong to the retrieval layer above this one."""

    def search(self, text: str, principal: Principal | None, scope: ScopeT_contra | None = None,
               limit: int = 10) -> ResultT_co: ...

    def close(self) -> None: ...


class GenerationReader(Generic[S, R]):
    """A searcher of one generation that counts its searches in flight, so a swap can retire it
    (close it once they are done) while new searches already go to its successor."""

    def __init__(self, inner: Searcher[S, R]) -> None:
        self.inner = inner
        self._busy = 0
        self._idle = threading.Condition()

    def search(self, text: str, principal: Principal | None, scope: S | None = None, limit: int = 10) -> R:
        with self._idle:
            self._busy += 1
        try:
            return self.inner.search(text, principal, scope, limit=limit)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def retire(self, timeout: float = 30.0) -> bool:
        """Wait for the searches in flight (up to `timeout`), then close; False if some still ran."""
        with self._idle:
            drained = self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)
        if not drained:
            log.warning("retiring a searcher with %d searches still running", self._busy)
        self.inner.close()
        return drained

    def close(self) -> None:
        self.inner.close()
