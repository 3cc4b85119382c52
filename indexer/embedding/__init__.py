"""Embedder contract (the fastembed implementation lives in indexer/embedding/fastembed_backend.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from indexer.models import Chunk


class EmbeddingError(RuntimeError):
    """The embedding model could not be found, prepared or run."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def model_name(self) -> str:
        """The model's key (name@fingerprint): vectors of different keys are never mixed."""

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class ChunkEmbedder(Embedder, Protocol):
    """An Embedder the pipeline writes through: chunks in, their vectors out, reusing cached ones."""

    def embed_chunks(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, int]:
        """Vectors for the chunks in order, and how many texts had to be embedded (cache misses)."""
        ...
