"""The point layout both Qdrant stores (Edge and server) share: payload fields, keyword indexes, batch sizes."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.models import Chunk, path_prefixes
from indexer.stores import StoreError, VectorPoint

# Payload fields with a keyword index: every field a SearchFilter can restrict.
KEYWORD_INDEXES = ("acl", "source", "doc_id", "path_prefix", "kind", "language")
UPSERT_BATCH = 512
SCROLL_PAGE = 2048


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    """The payload stored with each vector; `path_prefix` and `acl` are lists matched "any of"."""
    return {
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "path": chunk.path,
        "path_prefix": path_prefixes(chunk.path),
        "acl": list(chunk.acl),
        "kind": chunk.kind,
        "language": chunk.language,
    }


def prepare_points(points: Sequence[VectorPoint], dim: int) -> tuple[list[tuple[str, dict[str, Any]]], np.ndarray]:
    """(chunk id, payload) per point and their vectors as one float32 array, checked to be `dim` wide
    (one conversion for all points: float() per component costs more than the upsert itself)."""
    if not points:
        return [], np.empty((0, dim), dtype=np.float32)
    try:
        vectors = np.asarray([p.vector for p in points], dtype=np.float32).reshape(len(points), -1)
    except ValueError as exc:  # ragged or non-numeric vectors
        raise StoreError(f"vector index upsert failed: vectors must be {dim} numbers each") from exc
    if vectors.shape[1] != dim:
        raise StoreError(f"vector index upsert failed: vectors must be {dim} numbers each")
    return [(p.chunk.id, chunk_payload(p.chunk)) for p in points], vectors
