"""The vector backends by kind: how each opens a generation's store and the facts callers plan around."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.settings import Settings
from indexer.stores import StoreError, VectorStore

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


@dataclass(frozen=True)
class VectorPlace:
    """Where one generation's vectors live: its directory in the data dir, or its collection on a
    Qdrant server (reached through `client`, shared by every generation)."""

    directory: Path
    collection: str = ""
    client: QdrantClient | None = None


VectorOpener = Callable[[Settings, VectorPlace, int], VectorStore]


@dataclass(frozen=True)
class VectorBackend:
    """One registry entry. Each backend module is imported inside its opener, so importing this
    registry loads neither Qdrant Edge nor qdrant-client."""

    kind: str
    open: VectorOpener
    # The store is files in this node's data dir that one process can hold open: the index owner
    # (`cairn serve`) applies every write, workers never open it, and a backup copies its directory.
    owner_writes: bool
    # Each generation's vectors are a server collection and an alias names the serving one (nothing
    # in the data dir): generations create, point and drop collections.
    collections: bool
    # The kind that runs this backend in a child process of the index owner (`vector_process`).
    child_process: str | None = None


def _open_edge(settings: Settings, place: VectorPlace, dim: int) -> VectorStore:
    from indexer.stores.edge import EdgeVectorStore

    return EdgeVectorStore(place.directory / "vectors", dim, oversampling=settings.vector_oversampling)


def _open_edge_process(settings: Settings, place: VectorPlace, dim: int) -> VectorStore:
    from indexer.stores.edge_process import ProcessVectorStore

    return ProcessVectorStore(place.directory / "vectors", dim, oversampling=settings.vector_oversampling,
                              search_timeout=settings.vector_search_timeout_ms / 1000)


def _open_qdrant(settings: Settings, place: VectorPlace, dim: int) -> VectorStore:
    from indexer.stores.qdrant_server import QdrantServerStore

    if place.client is None:
        raise StoreError("a Qdrant server store needs a client (vector_backend=qdrant needs CAIRN_QDRANT_URL)")
    return QdrantServerStore(place.client, place.collection, dim)


VECTOR_BACKENDS: dict[str, VectorBackend] = {
    "edge": VectorBackend("edge", _open_edge, owner_writes=True, collections=False, child_process="edge-process"),
    "edge-process": VectorBackend("edge-process", _open_edge_process, owner_writes=True, collections=False),
    "qdrant": VectorBackend("qdrant", _open_qdrant, owner_writes=False, collections=True),
}


def vector_backend(settings: Settings) -> VectorBackend:
    """The backend `settings` name (`vector_backend`, in a child process when `vector_process` is on
    and the backend has that variant); an unknown kind is a StoreError."""
    backend = VECTOR_BACKENDS.get(settings.vector_backend)
    if backend is None:
        raise StoreError(f"unknown vector_backend {settings.vector_backend!r}; "
                         f"expected one of {', '.join(VECTOR_BACKENDS)}")
    if settings.vector_process and backend.child_process is not None:
        return VECTOR_BACKENDS[backend.child_process]
    return backend
