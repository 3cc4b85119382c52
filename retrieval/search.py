"""Hybrid search: BM25 and dense candidates under one permission filter, fused, reranked, capped."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from connectors.git_history import COMMIT_KIND
from indexer.catalog import Catalog
from indexer.embedding import Embedder
from indexer.models import Principal
from indexer.settings import Settings
from indexer.stores import FullTextIndex, ScoredId, SearchFilter, StoreTimeout, VectorStore
from retrieval.exact import exact_first, holds_phrases
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.history import commit_of
from retrieval.hits import Candidate, Hit
from retrieval.packing import cap_per_file, gap_documents, merge_nearby, snippet
from retrieval.permissions import Scope, StaleSources, build_filter, searched
from retrieval.query_analysis import AnalysedQuery, analyse
from retrieval.redundancy import duplicates_last, implementations_first
from retrieval.relevance import Evidence, dense_evidence, is_empty_input, lexical_share
from retrieval.rerank import Reranker
from retrieval.similar_commits import file_evidence, similar_commits

log = logging.getLogger(__name__)

DEFAULT_MAX_STALENESS = float(Settings.model_fields["permission_max_staleness"].default)


@dataclass(frozen=True)
class SearchOptions:
    """Ranking levers, each measured on its own with bench/eval_baselines.py --variants.

    depth: each engine returns `candidates` x depth chunks before fusion (more files get a chance).
    fusion_weights: RRF weights of the (lexical, dense) lists.
    file_support: a file's chunks all gain file_support x the summed scores of its next
    `support_chunks` best chunks, so a file that matches in several places outranks a file with one
    lucky chunk (what whole-file BM25 gets for free); 0 turns it off.
    history_weight: the chunks of a candidate file changed by one of the `history_commits` indexed commits
    most like the query (the caller may read, touching at most `retrieval.similar_commits.BROAD_COMMIT`
    files) gain up to history_weight x min(1, the file's summed commit shares); only files already among the
    candidates gain (a file no engine found for the query is not pulled in); 0 turns it off."""

    depth: int = 1
    fusion_weights: tuple[float, float] = (1.0, 1.0)
    file_support: float = 0.15
    support_chunks: int = 3
    history_weight: float = 0.0
    history_commits: int = 5


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    candidates: int = 0
    partial: tuple[str, ...] = ()  # engines whose results are missing (they did not answer in time)
    # True when the query was answered with nothing because nothing indexed is relevant enough
    # (below the relevance floor, or an empty editor input such as `null`)
    abstained: bool = False
    evidence: Evidence | None = None  # both engines' relevance evidence (measured when a floor is set)


class HybridSearcher:
    """Stateless over its stores: safe to share between request threads."""

    def __init__(self, catalog: Catalog, fulltext: FullTextIndex, vectors: VectorStore, embedder: Embedder,
                 reranker: Reranker, candidates: int = 50, max_hits_per_file: int = 3,
                 options: SearchOptions | None = None, stale: StaleSources | None = None,
                 relevance_floor: float = 0.0) -> None:
        self.catalog = catalog
        # Sources whose restricted chunks are not served (stale access): part of every filter.
        self.stale = stale or StaleSources(catalog, DEFAULT_MAX_STALENESS)
        self.fulltext = fulltext
        self.vectors = vectors
        self.embedder = embedder
        self.reranker = reranker
        self.candidates = candidates
        self.max_hits_per_file = max_hits_per_file
        self.options = options or SearchOptions()
        self.relevance_floor = relevance_floor  # 0 = answer every query (see retrieval/relevance.py)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cairn-search")
        self._partial_log = _ThrottledWarning("search answered from BM25 alone", every=10.0)

    def search(self, text: str, principal: Principal | None, scope: Scope | None = None,
               limit: int = 10) -> SearchResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if is_empty_input(text):
            return SearchResult([], {"total": time.perf_counter() - t0}, abstained=True)
        query = analyse(text)
        scope = scope or Scope()
        stale = self.stale.current()
        flt = build_filter(principal, searched(scope), stale)
        if flt.matches_nothing:
            return SearchResult([], {"total": time.perf_counter() - t0})
        history = (build_filter(principal, Scope(sources=scope.sources, kinds=(COMMIT_KIND,)), stale)
                   if self.options.history_weight > 0 else None)
        lexical, dense, partial, commits = self._retrieve(query, flt, history, timings)
        cands = self._fused(query, lexical, dense, timings)
        evidence = self._evidence(query, cands, dense, timings) if self.relevance_floor > 0 else None
        if evidence is not None and evidence.relevance < self.relevance_floor:
            timings["total"] = time.perf_counter() - t0
            return SearchResult([], timings, candidates=len(cands), partial=partial, abstained=True,
                                evidence=evidence)
        t = time.perf_counter()
        ranked = self.reranker.rerank(query, cands)
        if self.options.file_support > 0:
            ranked = support_by_file(ranked, self.options.file_support, self.options.support_chunks)
        if commits:
            t_history = time.perf_counter()
            ranked = support_by_history(ranked, self._commit_evidence(commits), self.options.history_weight)
            timings["history"] = time.perf_counter() - t_history
        ranked = duplicates_last(implementations_first(exact_first(query, ranked)))
        ranked = cap_per_file(ranked, self.max_hits_per_file)
        timings["rerank"] = time.perf_counter() - t
        t = time.perf_counter()
        stored = _StoredLines(self.catalog, gap_documents(ranked[:limit * self.max_hits_per_file]))
        items = merge_nearby(ranked, limit, stored.read)
        timings["merge"] = time.perf_counter() - t
        hits = [self._hit(c, query) for c in items]
        timings["total"] = time.perf_counter() - t0
        return SearchResult(hits, timings, candidates=len(cands), partial=partial, evidence=evidence)

    def fused_candidates(self, text: str, principal: Principal | None, scope: Scope | None = None
                         ) -> tuple[AnalysedQuery, list[Candidate]]:
        """The query as analysed and its fused candidates before any reranking (fusion score in `.score`):
        what `search` reranks, for a caller that scores them itself (retrieval/learned_ranking.py)."""
        query = analyse(text)
        flt = build_filter(principal, searched(scope or Scope()), self.stale.current())
        if is_empty_input(text) or flt.matches_nothing:
            return query, []
        timings: dict[str, float] = {}
        lexical, dense, _, _ = self._retrieve(query, flt, None, timings)
        return query, self._fused(query, lexical, dense, timings)

    def _fused(self, query: AnalysedQuery, lexical: list[ScoredId], dense: list[ScoredId],
               timings: dict[str, float]) -> list[Candidate]:
        fused = reciprocal_rank_fusion([[s.chunk_id for s in lexical], [s.chunk_id for s in dense]],
                                       weights=self.options.fusion_weights)
        t = time.perf_counter()
        cands = [c for c in self._hydrate(fused, lexical, dense) if holds_phrases(query.required, c)]
        timings["hydrate"] = time.perf_counter() - t
        return cands

    def _evidence(self, query: AnalysedQuery, cands: list[Candidate], dense: list[ScoredId],
                  timings: dict[str, float]) -> Evidence:
        """Both engines' evidence; the dense half is 0 when the vector store did not answer (the
        floor then judges on BM25's evidence alone)."""
        t = time.perf_counter()
        best_cosine = max((s.score for s in dense), default=0.0)
        share, whole = lexical_share(query, cands, self.fulltext)
        evidence = Evidence(lexical=share, dense=dense_evidence(best_cosine),
                            lexical_alone=bool(query.identifiers or query.paths or whole or not dense))
        timings["relevance"] = time.perf_counter() - t
        return evidence

    def _retrieve(self, query: AnalysedQuery, flt: SearchFilter, history: SearchFilter | None,
                  timings: dict[str, float]) -> tuple[list[ScoredId], list[ScoredId], tuple[str, ...], list[str]]:
        """BM25 (on the pool) and dense (on this thread) candidates, and with a `history` filter the ids of
        the commit chunks most like the query (both engines, the query vector embedded once). A vector
        store that does not answer in time (`StoreTimeout`) leaves the dense list empty and the result
        `partial`."""
        depth = self.candidates * self.options.depth
        commits = 2 * self.options.history_commits  # chunks per engine: a commit may have several

        def lexical() -> tuple[list[ScoredId], list[ScoredId]]:
            t = time.perf_counter()
            out = self.fulltext.search(query.lexical, flt, depth)
            timings["lexical"] = time.perf_counter() - t
            if history is None:
                return out, []
            t = time.perf_counter()
            found = self.fulltext.search(query.lexical, history, commits)
            timings["history_lexical"] = time.perf_counter() - t
            return out, found

        def dense() -> tuple[list[ScoredId], list[ScoredId]]:
            t = time.perf_counter()
            vector = self.embedder.embed_query(query.dense_text)
            timings["embed"] = time.perf_counter() - t
            out = self.vectors.search(vector, flt, depth)
            timings["dense"] = time.perf_counter() - t - timings["embed"]
            if history is None:
                return out, []
            t = time.perf_counter()
            try:
                found = self.vectors.search(vector, history, commits)
            except StoreTimeout as exc:  # the file hits stand; the similar commits come from BM25 alone
                self._partial_log.note(exc)
                found = []
            timings["history_dense"] = time.perf_counter() - t
            return out, found

        lex_future = self._pool.submit(lexical)
        partial: tuple[str, ...] = ()
        try:
            dense_hits, dense_commits = dense() if query.dense_text else ([], [])
        except StoreTimeout as exc:
            self._partial_log.note(exc)
            dense_hits, dense_commits, partial = [], [], ("dense",)
        lexical_hits, lexical_commits = lex_future.result()
        fused = reciprocal_rank_fusion([[s.chunk_id for s in lexical_commits], [s.chunk_id for s in dense_commits]],
                                       weights=self.options.fusion_weights)
        return lexical_hits, dense_hits, partial, [cid for cid, _ in fused]

    def _commit_evidence(self, chunk_ids: list[str]) -> dict[str, float]:
        """Per file (document id), its summed share of the first `history_commits` similar commits among
        these commit chunks (most similar first)."""
        rows = self.catalog.search_rows(chunk_ids)
        docs = dict.fromkeys(rows[cid][1] for cid in chunk_ids if cid in rows)  # doc id, in rank order
        where = {rows[cid][1]: (rows[cid][2], rows[cid][11]) for cid in chunk_ids if cid in rows}
        texts = self.catalog.document_texts(docs)
        found = (commit_of(doc_id, where[doc_id][0], where[doc_id][1] or "", texts[doc_id])
                 if doc_id in texts else None for doc_id in docs)
        return file_evidence(itertools.islice(similar_commits(found), self.options.history_commits))

    def _hydrate(self, fused: list[tuple[str, float]], lexical: list[ScoredId],
                 dense: list[ScoredId]) -> list[Candidate]:
        """Fused ids → Candidates with text and metadata from the catalog (ids it lacks are dropped)."""
        lex_rank = {s.chunk_id: (i, s.score) for i, s in enumerate(lexical)}
        dense_rank = {s.chunk_id: (i, s.score) for i, s in enumerate(dense)}
        rows = self.catalog.search_rows([cid for cid, _ in fused])
        out = []
        for cid, score in fused:
            row = rows.get(cid)
            if row is None:
                continue
            _, doc_id, source, path, start, end, content, symbol, kind, language, title, url = row
            lr, ls = lex_rank.get(cid, (None, 0.0))
            dr, ds = dense_rank.get(cid, (None, 0.0))
            out.append(Candidate(chunk_id=cid, doc_id=doc_id, source=source, path=path, start_line=start,
                                 end_line=end, content=content, symbol=symbol, kind=kind, language=language,
                                 title=title or path, url=url or "", lexical_rank=lr, dense_rank=dr,
                                 lexical_score=ls, dense_score=ds, score=score))
        return out

    @staticmethod
    def _hit(c: Candidate, query: AnalysedQuery) -> Hit:
        terms = [t for t, _ in query.lexical.terms]
        return Hit(chunk_id=c.chunk_id, doc_id=c.doc_id, source=c.source, path=c.path, start_line=c.start_line,
                   end_line=c.end_line, score=round(c.score, 6), snippet=snippet(c.content, terms),
                   symbol=c.symbol, kind=c.kind, language=c.language, title=c.title, url=c.url,
                   content=c.content, chunk_ids=c.chunk_ids)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class _StoredLines:
    """Line ranges of stored documents for one search: the documents the merge may need are read
    together up front (`gap_documents` of the hits that can be returned); any other, once, on demand."""

    def __init__(self, catalog: Catalog, doc_ids: set[str]) -> None:
        self.catalog = catalog
        texts = catalog.document_texts(doc_ids) if doc_ids else {}
        self._lines: dict[str, list[str] | None] = {d: texts[d].split("\n") if d in texts else None for d in doc_ids}

    def read(self, doc_id: str, first: int, last: int) -> list[str] | None:
        if doc_id not in self._lines:
            text = self.catalog.document_texts([doc_id]).get(doc_id)
            self._lines[doc_id] = text.split("\n") if text is not None else None
        lines = self._lines[doc_id]
        if lines is None or first < 1 or last > len(lines):
            return None
        return lines[first - 1:last]


class _ThrottledWarning:
    """One warning per `every` seconds with the number of occurrences since the last one (a long
    optimize makes every search partial for minutes: the metric counts them, the log summarises)."""

    def __init__(self, message: str, every: float) -> None:
        self.message = message
        self.every = every
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._since = 0

    def note(self, cause: Exception) -> None:
        with self._lock:
            self._since += 1
            now = time.monotonic()
            if now - self._last < self.every:
                return
            count, self._since, self._last = self._since, 0, now
        log.warning("%s (%d time(s) since the last warning): %s", self.message, count, cause)


def support_by_history(ranked: list[Candidate], evidence: dict[str, float], weight: float) -> list[Candidate]:
    """Add to every chunk of a file changed by similar commits `weight` x min(1, its summed commit shares)
    (`retrieval.similar_commits.file_evidence`), then re-sort; the order within a file does not change."""
    if not evidence:
        return ranked
    out = [c.scored(c.score + weight * min(1.0, evidence[c.doc_id]), {"history": evidence[c.doc_id]})
           if c.doc_id in evidence else c for c in ranked]
    return sorted(out, key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))


def support_by_file(ranked: list[Candidate], weight: float, chunks: int) -> list[Candidate]:
    """Add to every chunk of a file `weight` x the sum of the file's 2nd..(chunks+1)th best scores
    (negative scores count as 0), then re-sort; the order within a file does not change."""
    by_doc: dict[str, list[float]] = {}
    for cand in ranked:
        by_doc.setdefault(cand.doc_id, []).append(max(cand.score, 0.0))
    bonus = {doc: weight * sum(sorted(scores, reverse=True)[1:chunks + 1]) for doc, scores in by_doc.items()}
    out = [c.scored(c.score + bonus[c.doc_id], {"file_support": bonus[c.doc_id]}) for c in ranked]
    return sorted(out, key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))

