"""What a crawl or embed worker needs, without the index stores: catalog, cached embedder, chunking.

A `celery worker` on the sync/embed queues must not open Qdrant Edge or tantivy writers (the index
node owns them), so it gets this lighter context; in-process it is taken from the open IndexServices."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from indexer.catalog import Catalog, open_catalog
from indexer.chunking.limits import chunk_limits
from indexer.embedding import ChunkEmbedder
from indexer.embedding.cache import EmbeddingCache
from indexer.embedding.fastembed_backend import CachedEmbedder
from indexer.generations.state import wanted_model_spec
from indexer.pipeline.apply import ChunkingOptions
from indexer.secrets.screen import SecretScreen
from indexer.services import IndexServices, build_embedder
from indexer.settings import Settings
from workers.queue_state import QueueState


@dataclass
class WorkerContext:
    settings: Settings
    catalog: Catalog
    state: QueueState
    chunking: ChunkingOptions
    secrets: SecretScreen
    _embedder: ChunkEmbedder | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_services(cls, services: IndexServices) -> WorkerContext:
        ctx = cls(services.settings, services.catalog, QueueState(services.catalog.engine),
                  services.pipeline.chunking, services.pipeline.secrets)
        ctx._embedder = services.pipeline.embedder
        return ctx

    @classmethod
    def open(cls, settings: Settings) -> WorkerContext:
        catalog = open_catalog(settings.catalog_url)
        chunking = ChunkingOptions(max_lines=settings.max_chunk_lines, min_lines=settings.min_chunk_lines,
                                   limits=chunk_limits(settings))
        secrets = SecretScreen(settings.secret_allowlist, settings.secret_allowlist_paths)
        return cls(settings, catalog, QueueState(catalog.engine), chunking, secrets)

    @property
    def embedder(self) -> ChunkEmbedder:
        """Loaded on first use: a crawl-only worker never loads the model."""
        with self._lock:
            if self._embedder is None:
                # The model the index is built with (after `cairn model switch`, the new one); the index
                # node re-embeds a ready batch made with another model (workers/distributed.py).
                spec = wanted_model_spec(self.catalog.engine, self.settings)
                model = build_embedder(self.settings, spec)
                self._embedder = CachedEmbedder(model, EmbeddingCache(self.catalog.engine))
            return self._embedder
