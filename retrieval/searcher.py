"""The searcher factory: a HybridSearcher over an open index, configured from the index's settings."""
from __future__ import annotations

from indexer.services import IndexServices
from retrieval.permissions import StaleSources
from retrieval.rerank import build_reranker
from retrieval.search import HybridSearcher, SearchOptions


def build_searcher(services: IndexServices, stale: StaleSources | None = None) -> HybridSearcher:
    """`stale`: a shared stale-source cache (the API's); by default one of the searcher's own."""
    s = services.settings
    options = {"model": s.cross_encoder_model} if s.reranker == "cross-encoder" else {}
    return HybridSearcher(services.catalog, services.fulltext, services.vectors, services.embedder,
                          build_reranker(s.reranker, **options), candidates=s.candidates,
                          max_hits_per_file=s.max_hits_per_file, relevance_floor=s.relevance_floor,
                          options=SearchOptions(history_weight=s.history_weight),
                          stale=stale or StaleSources(services.catalog, s.permission_max_staleness))
