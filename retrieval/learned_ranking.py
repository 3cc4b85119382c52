"""Feature weights learned from a source's own history: each indexed commit's message is a query whose
answer is the code files it touched, and the weights that rank those files higher are kept per source
when they beat the defaults on the newest commits, held out from the fit.

The fit reranks the searcher's own fused candidates (`HybridSearcher.fused_candidates`) with numpy: features are
computed once per commit, so trying a set of weights is one matrix product, and coordinate ascent over the
weights from the defaults takes seconds. The objective is what a reader sees: the reciprocal rank of the
first touched file among the candidate files, each file scored as `search` scores it (its best chunk plus
the support of its next best chunks)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np

from connectors.git_history import COMMIT_KIND
from indexer.catalog import Catalog
from indexer.catalog.schema import RankerFitRecord
from indexer.models import Principal
from retrieval.history import CommitHit, commit_of, newest_first
from retrieval.hits import Candidate
from retrieval.permissions import Scope
from retrieval.query_analysis import AnalysedQuery
from retrieval.rerank_features import FeatureReranker, FeatureWeights, feature_rows, is_test_path, weight_terms
from retrieval.search import HybridSearcher

log = logging.getLogger(__name__)

DEFAULT_COMMITS = 300  # pairs mined per fit: the newest commits with at least one touched code file
MAX_TOUCHED = 20  # a commit touching more files says little about any one of them
MAX_QUERY_CHARS = 4000  # a message's first this many characters are searched (bodies run to pages)
MIN_PAIRS = 10  # fewer usable commits than this: nothing to learn from
HELD_OUT = 0.2  # the newest this share of the pairs judges the fit (at least 2)
KEEP_MARGIN = 0.01  # held-out MRR the learned weights must gain over the defaults to be kept (and more
# held-out commits must rank their files better than worse)
WEIGHT_RANGE = (-2.0, 2.0)
STEPS = (1.0, 0.4, 0.15, 0.05)  # coordinate ascent tries each weight moved by these, both ways
ROUNDS = 6
PULL = 0.01  # per unit of squared distance from the defaults, in MRR: a small fit stays near them
FITTER = Principal(user="cairn-ranker", admin=True)  # the fit reads every document of the source
ANCHOR = "rrf"  # held at its default: scores keep their scale (file support and history add to them)


class RankerError(ValueError):
    """A fit that cannot run as asked: unknown source, no indexed commits, too few usable ones."""


@dataclass(frozen=True)
class Pair:
    """One commit as a training example: its message and the code files it touched that are indexed."""

    commit: str  # the commit document's id
    message: str
    paths: tuple[str, ...]


def mine_pairs(catalog: Catalog, source: str, limit: int = DEFAULT_COMMITS) -> list[Pair]:
    """The newest `limit` usable commits of the source, newest first. A commit is usable when it touched
    between 1 and MAX_TOUCHED files, at least one of them an indexed non-test code file (merges, version
    bumps and docs-only commits are not). The index holds only commits reachable from the indexed ref."""
    if catalog.get_source(source) is None:
        raise RankerError(f"no source named {source!r}")
    kinds = catalog.document_kinds(source)
    commit_ids = [doc_id for doc_id, kind in kinds.items() if kind == COMMIT_KIND]
    if not commit_ids:
        raise RankerError(f"source {source!r} has no indexed commits (git sources index them unless "
                          "CAIRN_HISTORY_COMMITS=0)")
    prefix = f"{source}:"
    code = {doc_id[len(prefix):] for doc_id, kind in kinds.items()
            if kind == "code" and not is_test_path(doc_id[len(prefix):])}
    texts = catalog.document_texts(commit_ids)
    hits = [commit_of(doc_id, source, "", texts[doc_id]) for doc_id in commit_ids if doc_id in texts]
    pairs = []
    for hit in newest_first([h for h in hits if h is not None]):
        pair = _pair(hit, code)
        if pair is not None:
            pairs.append(pair)
            if len(pairs) >= limit:
                break
    return pairs


def _pair(hit: CommitHit, code: set[str]) -> Pair | None:
    if not hit.message.strip() or not hit.paths or len(hit.paths) > MAX_TOUCHED:
        return None
    touched = tuple(p for p in hit.paths if p in code)
    return Pair(hit.document_id, hit.message.strip(), touched) if touched else None


class Samples:
    """The candidates of many queries as arrays: each chunk's features, the file it belongs to, and per file
    its query and whether the query's commit touched it. `reciprocal_ranks(w)` ranks every query's files."""

    def __init__(self, names: Sequence[str], file_support: float, support_chunks: int) -> None:
        self.names = tuple(names)
        self.file_support = file_support
        self.support_chunks = support_chunks
        self._rows: list[list[float]] = []
        self._group: list[int] = []  # per chunk, its file (numbered over all queries)
        self._group_pair: list[int] = []  # per file, its query
        self._group_gold: list[bool] = []
        self.pairs = 0

    def add(self, query: AnalysedQuery, candidates: Sequence[Candidate], touched: Sequence[str]) -> None:
        files: dict[str, int] = {}
        gold = set(touched)
        for cand, feats in zip(candidates, feature_rows(query, candidates), strict=True):
            if cand.path not in files:
                files[cand.path] = len(self._group_pair)
                self._group_pair.append(self.pairs)
                self._group_gold.append(cand.path in gold)
            self._group.append(files[cand.path])
            self._rows.append([feats.get(name, 0.0) for name in self.names])
        self.pairs += 1

    def freeze(self) -> None:
        """Arrays in the order every evaluation needs: chunks grouped by file."""
        group = np.asarray(self._group, dtype=np.int64)
        order = np.argsort(group, kind="stable")
        self.x = np.asarray(self._rows, dtype=np.float64).reshape(len(self._rows), len(self.names))[order]
        self.group = group[order]
        self.group_pair = np.asarray(self._group_pair, dtype=np.int64)
        self.group_gold = np.asarray(self._group_gold, dtype=bool)
        sizes = np.bincount(self.group, minlength=len(self.group_pair))
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def reciprocal_ranks(self, weights: np.ndarray) -> np.ndarray:
        """Per query, 1 / rank of its best-ranked touched file among its candidate files (0 if none)."""
        scores = self.x @ weights
        order = np.lexsort((-scores, self.group))  # by file, best chunk first
        ranked = scores[order]
        place = np.arange(len(ranked)) - self.starts[self.group]
        n_files = len(self.group_pair)
        top = np.full(n_files, -np.inf)
        top[self.group[place == 0]] = ranked[place == 0]
        near = (place >= 1) & (place <= self.support_chunks)
        support = np.bincount(self.group[near], weights=np.clip(ranked[near], 0, None), minlength=n_files)
        file_scores = top + self.file_support * support
        best_gold = np.full(self.pairs, -np.inf)
        np.maximum.at(best_gold, self.group_pair[self.group_gold], file_scores[self.group_gold])
        above = np.bincount(self.group_pair, weights=file_scores > best_gold[self.group_pair], minlength=self.pairs)
        return np.where(np.isfinite(best_gold), 1.0 / (1.0 + above), 0.0)


def coordinate_ascent(objective: Callable[[np.ndarray], float], start: np.ndarray, fixed: Sequence[int] = ()
                      ) -> np.ndarray:
    """Move one weight at a time by each of STEPS (both ways) while `objective` (minus the pull back to
    `start`) improves; a few rounds over all weights."""
    def penalised(w: np.ndarray) -> float:
        return objective(w) - PULL * float(np.sum((w - start) ** 2))

    best, best_value = start.copy(), penalised(start)
    for _ in range(ROUNDS):
        moved = False
        for i in range(len(start)):
            if i in fixed:
                continue
            for step in STEPS:
                for sign in (1.0, -1.0):
                    trial = best.copy()
                    trial[i] = float(np.clip(best[i] + sign * step, *WEIGHT_RANGE))
                    value = penalised(trial)
                    if value > best_value + 1e-6:
                        best, best_value, moved = trial, value, True
        if not moved:
            break
    return best


def fit_source(searcher: HybridSearcher, catalog: Catalog, source: str, commits: int = DEFAULT_COMMITS,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RankerFitRecord:
    """Mine the source's pairs, search each message, fit the weights, judge them on the held-out pairs and
    store the result: kept when they gain KEEP_MARGIN held-out MRR and more held-out commits gain than lose."""
    t0 = time.perf_counter()
    pairs = mine_pairs(catalog, source, commits)
    if len(pairs) < MIN_PAIRS:
        raise RankerError(f"source {source!r} has {len(pairs)} usable commits (a message and 1-{MAX_TOUCHED} "
                          f"touched code files); a fit needs at least {MIN_PAIRS}")
    held = max(2, round(len(pairs) * HELD_OUT))
    names = [f.name for f in fields(FeatureWeights)]
    train = Samples(names, searcher.options.file_support, searcher.options.support_chunks)
    test = Samples(names, searcher.options.file_support, searcher.options.support_chunks)
    for i, pair in enumerate(pairs):  # newest first: the newest `held` judge the fit
        query, cands = searcher.fused_candidates(pair.message[:MAX_QUERY_CHARS], FITTER, Scope(sources=(source,)))
        (test if i < held else train).add(query, cands, pair.paths)
    train.freeze()
    test.freeze()
    defaults = np.array([getattr(FeatureWeights(), n) for n in names])
    learned = coordinate_ascent(lambda w: float(train.reciprocal_ranks(w).mean()), defaults,
                                fixed=[names.index(ANCHOR)])
    rr_before, rr_after = test.reciprocal_ranks(defaults), test.reciprocal_ranks(learned)
    before, after = float(rr_before.mean()), float(rr_after.mean())
    # a gain carried by a few commits is noise on a held-out set this small: more of them must rank better
    broad = int((rr_after > rr_before).sum()) > int((rr_after < rr_before).sum())
    record = RankerFitRecord(
        source=source, weights={n: round(float(v), 4) for n, v in zip(names, learned, strict=True)},
        fitted_at=clock(), pairs=len(pairs), held_out=held, mrr_default=round(before, 4),
        mrr_learned=round(after, 4), kept=after >= before + KEEP_MARGIN and broad,
        seconds=round(time.perf_counter() - t0, 2))
    catalog.save_ranker_fit(record)
    log.info("ranker fit %s: %d pairs (%d held out), held-out MRR %.3f -> %.3f, %s in %.1fs", source, len(pairs),
             held, before, after, "kept" if record.kept else "not kept", record.seconds)
    return record


def weights_of(record: RankerFitRecord) -> FeatureWeights:
    """The stored weights as FeatureWeights (a weight the record lacks keeps its default)."""
    known = {f.name for f in fields(FeatureWeights)}
    return FeatureWeights(**{k: float(v) for k, v in record.weights.items() if k in known})


class LearnedWeights:
    """The kept weights per source, read from the catalog at most every `ttl` seconds (a refit shows up
    within that) and shared by every query."""

    def __init__(self, catalog: Catalog, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, FeatureWeights] = {}
        self._terms: dict[str, tuple[tuple[str, float], ...]] = {}
        self._read_at: float | None = None

    def current(self) -> dict[str, FeatureWeights]:
        with self._lock:
            self._refresh()
            return self._value

    def terms(self) -> dict[str, tuple[tuple[str, float], ...]]:
        """The (feature, weight) pairs of each source with kept weights, built once per read."""
        with self._lock:
            self._refresh()
            return self._terms

    def _refresh(self) -> None:
        """Read the catalog again once the ttl has passed (the caller holds the lock)."""
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.ttl:
            self._value = {s: weights_of(r) for s, r in self.catalog.ranker_fits().items() if r.kept}
            self._terms = {s: weight_terms(w) for s, w in self._value.items()}
            self._read_at = now

    def invalidate(self) -> None:
        with self._lock:
            self._read_at = None


class LearnedReranker(FeatureReranker):
    """The feature reranker, scoring each candidate with its source's learned weights where kept (read at
    most every `LearnedWeights.ttl` seconds, not per candidate)."""

    def __init__(self, learned: LearnedWeights, default: FeatureWeights | None = None) -> None:
        super().__init__(default)
        self.learned = learned

    def terms_for(self, source: str) -> tuple[tuple[str, float], ...]:
        learned = self.learned.terms().get(source)
        return learned if learned is not None else super().terms_for(source)
