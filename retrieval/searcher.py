"""The searcher factory: a HybridSearcher over an open index, configured from the index's settings."""
from __future__ import annotations

from indexer.services import IndexServices
from retrieval.learned_ranking import LearnedReranker, LearnedWeights
from retrieval.permissions import StaleSources
from retrieval.rerank import Reranker, build_reranker
from retrieval.search import HybridSearcher, SearchOptions


def build_searcher(services: IndexServices, stale: StaleSources | None = None) -> HybridSearcher:
    """`stale`: a shared stale-source cache (the API's); by default one of the searcher's own. With
    CAIRN_LEARNED_RANKING the feature reranker uses each source's kept learned weights."""
    s = services.settings
    options = {"model": s.cross_encoder_model} if s.reranker == "cross-encoder" else {}
    reranker: Reranker = build_reranker(s.reranker, **options)
    if s.learned_ranking and s.reranker == "features":
        reranker = LearnedReranker(LearnedWeights(services.catalog))
    return HybridSearcher(services.catalog, services.fulltext, services.vectors, services.embedder,
                          reranker, candidates=s.candidates,
                          max_hits_per_file=s.max_hits_per_file, relevance_floor=s.relevance_floor,
                          options=SearchOptions(history_weight=s.history_weight),
                          stale=stale or StaleSources(services.catalog, s.permission_max_staleness))
