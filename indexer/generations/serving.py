"""What serves while generations change: the slot the pipeline writes through (repointed by a swap
under the write lock), a stand-in for vectors whose model is gone, and searchers that retire once
their in-flight searches end."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from indexer.embedding.fastembed_backend import CachedEmbedder
from indexer.generations.state import Generation
from indexer.stores import VectorPoint

log = logging.getLogger(__name__)


class ServingSlot:
    """The active generation's stores and query/document embedder. The pipeline gets the Slot*
    views below, so a swap repoints it without touching the pipeline object."""

    def __init__(self, generation: Generation, fulltext: Any, vectors: Any, embedder: CachedEmbedder) -> None:
        self.generation, self.fulltext, self.vectors, self.embedder = generation, fulltext, vectors, embedder
        self.embedded_by = threading.local()  # generation id whose model embedded this thread's last batch

    def switch(self, generation: Generation, fulltext: Any, vectors: Any, embedder: CachedEmbedder) -> None:
        self.generation, self.fulltext, self.vectors, self.embedder = generation, fulltext, vectors, embedder


class SlotFullText:
    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slot.fulltext, name)


class SlotEmbedder:
    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    @property
    def model_name(self) -> str:
        return self._slot.embedder.model_name

    @property
    def dim(self) -> int:
        return self._slot.embedder.dim

    def embed_chunks(self, chunks: Sequence[Any]) -> Any:
        self._slot.embedded_by.generation = self._slot.generation.id
        return self._slot.embedder.embed_chunks(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slot.embedder, name)


class SlotVectors:
    """Writes to the active generation. The pipeline embeds outside the write lock: vectors made by
    the previous generation's model before a swap are re-embedded with the new one (cache first)."""

    def __init__(self, slot: ServingSlot) -> None:
        self._slot = slot

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        slot = self._slot
        made_by = getattr(slot.embedded_by, "generation", None)
        slot.embedded_by.generation = None  # only the batch embedded just before counts
        if made_by not in (None, slot.generation.id) and points:
            log.info("re-embedding %d chunks embedded before the swap to generation %d", len(points), slot.generation.id)
            vectors, _ = slot.embedder.embed_chunks([p.chunk for p in points])
            points = [VectorPoint(p.chunk, v) for p, v in zip(points, vectors)]
        slot.vectors.upsert(points)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slot.vectors, name)


class NoVectors:
    """Stands in for the active generation's vectors when its model cannot be loaded: dense search
    answers nothing (keyword search keeps serving) and writes go nowhere (the new generation gets
    every document's vectors from its build, and the old vectors are retired with it)."""

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        return None

    def delete(self, chunk_ids: Any) -> None:
        return None

    def search(self, vector: Any, flt: Any, limit: int) -> list:
        return []

    def ids(self, source: str | None = None) -> set[str]:
        return set()

    def optimize(self) -> bool:
        return False

    def close(self) -> None:
        return None


class GenerationReader:
    """A searcher of one generation that counts its searches in flight, so a swap can retire it
    (close it once they are done) while new searches already go to its successor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._busy = 0
        self._idle = threading.Condition()

    def search(self, *args: Any, **kwargs: Any) -> Any:
        with self._idle:
            self._busy += 1
        try:
            return self.inner.search(*args, **kwargs)
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
