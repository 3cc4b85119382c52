"""Builds the index's components from Settings (stores chosen by explicit kind) and owns their lifetime."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from indexer.catalog import Catalog
from indexer.db import make_engine
from indexer.embedding_cache import EmbeddingCache
from indexer.fastembed_embedder import CachedEmbedder, FastEmbedEmbedder
from indexer.fulltext import TantivyIndex
from indexer.model_files import resolve_model
from indexer.pipeline import ChunkingOptions, Pipeline
from indexer.settings import Settings
from indexer.stores import StoreError, VectorStore
from indexer.version import INDEX_VERSION

log = logging.getLogger(__name__)


def _edge(settings: Settings, dim: int) -> VectorStore:
    from indexer.vector_edge import EdgeVectorStore

    return EdgeVectorStore(settings.data_dir / "vectors", dim)


def _qdrant(settings: Settings, dim: int) -> VectorStore:
    from indexer.vector_qdrant import QdrantServerStore

    if not settings.qdrant_url:
        raise StoreError("vector_backend=qdrant needs CAIRN_QDRANT_URL")
    return QdrantServerStore(settings.qdrant_url, settings.collection, dim, api_key=settings.qdrant_api_key or None)


VECTOR_BACKENDS: dict[str, Callable[[Settings, int], VectorStore]] = {"edge": _edge, "qdrant": _qdrant}


def build_embedder(settings: Settings) -> FastEmbedEmbedder:
    location = resolve_model(settings.embedding_model, settings.model_cache_dir)
    return FastEmbedEmbedder(location, batch_size=settings.embed_batch_size, threads=settings.embed_threads or None)


@dataclass
class IndexServices:
    """Everything that reads or writes the index, opened once per process that owns it."""

    settings: Settings
    catalog: Catalog
    fulltext: TantivyIndex
    vectors: VectorStore
    embedder: FastEmbedEmbedder
    pipeline: Pipeline

    @classmethod
    def open(cls, settings: Settings, embedder: FastEmbedEmbedder | None = None) -> "IndexServices":
        if settings.vector_backend not in VECTOR_BACKENDS:
            raise StoreError(f"unknown vector_backend {settings.vector_backend!r}; "
                             f"expected one of {', '.join(VECTOR_BACKENDS)}")
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.catalog_url)
        catalog = Catalog(engine)
        catalog.create_all()
        embedder = embedder or build_embedder(settings)
        cached = CachedEmbedder(embedder, EmbeddingCache(engine))
        if settings.vector_backend == "edge":
            _check_generation(catalog, settings, embedder)
        fulltext = TantivyIndex(settings.data_dir / "fulltext")
        try:
            vectors = VECTOR_BACKENDS[settings.vector_backend](settings, embedder.dim)
        except Exception:
            fulltext.close()
            raise
        chunking = ChunkingOptions(max_lines=settings.max_chunk_lines, min_lines=settings.min_chunk_lines)
        pipeline = Pipeline(catalog, fulltext, vectors, cached, chunking)
        return cls(settings, catalog, fulltext, vectors, embedder, pipeline)

    def close(self) -> None:
        for closer in (self.fulltext.close, self.vectors.close):
            try:
                closer()
            except Exception:  # closing is best effort; report and keep closing the rest
                log.exception("error while closing a store")


def _check_generation(catalog: Catalog, settings: Settings, embedder: FastEmbedEmbedder) -> bool:
    """Record the index version and model. When either differs from what built the stored index,
    drop the stores' contents and the catalog's document state so the next sync rebuilds everything
    (sources and their configuration are kept). Returns True when a rebuild was triggered."""
    stored = (catalog.get_meta("index_version"), catalog.get_meta("embedding_model"))
    current = (str(INDEX_VERSION), embedder.model_name)
    if stored == current:
        return False
    rebuild = stored[0] is not None
    if rebuild:
        log.warning("index generation changed from %s to %s: dropping the stores for a rebuild", stored, current)
        for sub in ("vectors", "fulltext"):
            shutil.rmtree(Path(settings.data_dir) / sub, ignore_errors=True)
        catalog.reset_index()
    catalog.set_meta("index_version", current[0])
    catalog.set_meta("embedding_model", current[1])
    return rebuild
