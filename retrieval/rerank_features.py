"""The feature reranker: a weighted sum of explainable features, no model weights needed."""
from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from indexer.identifiers import code_tokens, split_identifier
from retrieval.hits import Candidate
from retrieval.query_analysis import STOP_WORDS, AnalysedQuery

# Features are pure functions of a path or symbol string; the same files come back query after
# query, so their parsed forms are memoised (bounded: a few MB at most).
_memo = functools.lru_cache(maxsize=1 << 16)


@dataclass(frozen=True)
class FeatureWeights:
    """One weight per feature; a candidate's score is the sum of weight x feature value.

    Feature values lie in [0, 1]. The fused RRF score is normalised by the best one in the list,
    so a candidate first in both engines starts at 1.0 and the other features move it from there."""

    rrf: float = 1.0  # fused score / best fused score
    lexical_rr: float = 0.15  # 1 / (1 + BM25 rank), 0 if BM25 did not find it
    dense_rr: float = 0.15  # 1 / (1 + dense rank)
    symbol_exact: float = 0.6  # a query identifier is the symbol (dotted suffix either way)
    symbol_last: float = 0.35  # the symbol's last part is an identifier's last part (0.5: another part)
    symbol_parts: float = 0.2  # share of the symbol name's words among the query terms
    path_exact: float = 0.5  # a query path is the candidate's path (suffix either way)
    path_frame: float = 0.4  # a traceback frame's file: 1 innermost (where it failed), 1/(1+i) outward
    path_basename: float = 0.3  # same file name
    path_stem: float = 0.15  # same file name without extension
    path_module: float = 0.3  # a dotted identifier starts with the file's module (1.0 two+ parts, 0.5 one)
    path_terms: float = 0.2  # weighted share of query terms found in the path
    test_file: float = -0.3  # a test file while the query does not mention tests
    docs_file: float = -0.1  # docs/examples while the query is about code
    code_kind: float = 0.05  # a code chunk while the query is about code

    def score(self, features: dict[str, float]) -> float:
        return sum(getattr(self, f.name) * features.get(f.name, 0.0) for f in fields(self))


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TEST_DIRS = _words("test tests testing __tests__ spec specs e2e")
_TEST_FILE = re.compile(
    r"^(?:test_.+|.+_test|.+_tests|tests?|conftest|.+\.(?:test|spec)|.+_spec)\.\w+$|^.*[a-z0-9]Tests?\.\w+$"
)
_TEST_WORDS = _words("test tests testing pytest unittest spec specs conftest fixture fixtures mock mocks jest")
_DOCS_DIRS = _words("docs doc documentation examples example samples sample demo demos")
_DOCS_EXTENSIONS = _words(".md .rst .adoc .txt .markdown")
_DOCS_WORDS = _words("doc docs documentation documented readme example examples tutorial guide howto changelog")
_MODULE_NOISE = frozenset({"__init__", "index", "mod"})


@_memo
def is_test_path(path: str) -> bool:
    """Tests by location or name: tests/…, test_x.py, x_test.go, x.spec.ts, XTest.java, conftest.py."""
    parts = path.split("/")
    return any(p.lower() in _TEST_DIRS for p in parts[:-1]) or bool(_TEST_FILE.match(parts[-1]))


@_memo
def is_docs_path(path: str, kind: str = "code") -> bool:
    """Documentation and examples: docs/…, examples/…, *.md/*.rst, or a chunk of kind 'doc'."""
    parts = path.lower().split("/")
    ext = posixpath.splitext(parts[-1])[1]
    return kind == "doc" or ext in _DOCS_EXTENSIONS or any(p in _DOCS_DIRS for p in parts[:-1])


@_memo
def _joined(name: str) -> str:
    """An identifier in one spelling: resolve_redirects, resolveRedirects → resolveredirects."""
    return "".join(split_identifier(name))


@_memo
def _components(dotted: str) -> tuple[str, ...]:
    return tuple(c for c in (_joined(part) for part in dotted.split(".")) if c)


@dataclass(frozen=True)
class _QueryView:
    """The query, prepared once per rerank call in the shapes the features compare against."""

    identifiers: tuple[tuple[str, ...], ...]
    paths: tuple[str, ...]
    frame_paths: tuple[str, ...]
    terms: dict[str, float]
    mentions_tests: bool
    about_code: bool

    @classmethod
    def of(cls, query: AnalysedQuery) -> _QueryView:
        idents = tuple(c for c in (_components(i) for i in query.identifiers) if c)
        paths = tuple(p.lower().strip("/") for p in query.paths if p.strip("/"))
        terms = dict(query.lexical.terms)
        mentions_tests = (
            bool(_TEST_WORDS.intersection(terms))
            or any(is_test_path(p) for p in query.paths)
            or any(i[-1].startswith("test") for i in idents)
        )
        about_code = bool(idents or any(not is_docs_path(p) for p in paths)) and not _DOCS_WORDS.intersection(terms)
        frames = tuple(p.lower().strip("/") for p in query.frame_paths if p.strip("/"))
        return cls(idents, paths, frames, terms, mentions_tests, about_code)

    def frames_among(self, candidates: Sequence[Candidate]) -> _QueryView:
        """Only the frame paths of files among the candidates, so frames of other code (the
        standard library, third-party packages, the reporter's script) do not push project frames out."""
        paths = {c.path.lower() for c in candidates}
        kept = tuple(f for f in self.frame_paths if any(_same_file(p, f) for p in paths))
        return replace(self, frame_paths=kept)


def weight_terms(weights: FeatureWeights) -> tuple[tuple[str, float], ...]:
    """(feature, weight) pairs in field order: what scores a candidate."""
    return tuple((f.name, getattr(weights, f.name)) for f in fields(weights))


class FeatureReranker:
    """Reorders fused candidates by a linear combination of features stored in `features`."""

    def __init__(self, weights: FeatureWeights | None = None) -> None:
        self.weights = weights or FeatureWeights()
        self._terms = weight_terms(self.weights)

    def terms_for(self, source: str) -> tuple[tuple[str, float], ...]:
        """(feature, weight) pairs that score a candidate of `source` (the same for every source here)."""
        return self._terms

    def rerank(self, query: AnalysedQuery, candidates: Sequence[Candidate]) -> list[Candidate]:
        out = []
        for cand, feats in zip(candidates, feature_rows(query, candidates), strict=True):
            terms = self.terms_for(cand.source)
            out.append(cand.scored(sum(w * feats.get(name, 0.0) for name, w in terms), feats))
        return sorted(out, key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))


def feature_rows(query: AnalysedQuery, candidates: Sequence[Candidate]) -> list[dict[str, float]]:
    """The features of each fused candidate of one query, in order (what any weights score)."""
    if not candidates:
        return []
    view = _QueryView.of(query).frames_among(candidates)
    best = max(c.score for c in candidates)
    return [features(view, cand, best) for cand in candidates]


def features(view: _QueryView, cand: Candidate, best_fused: float) -> dict[str, float]:
    """Every feature of one candidate (values in [0, 1]) plus the raw fused score for explanation."""
    return {
        "rrf_raw": cand.score,
        "rrf": cand.score / best_fused if best_fused > 0 else 0.0,
        "lexical_rr": 0.0 if cand.lexical_rank is None else 1.0 / (1 + cand.lexical_rank),
        "dense_rr": 0.0 if cand.dense_rank is None else 1.0 / (1 + cand.dense_rank),
        **_symbol_features(view, cand.symbol),
        **_path_features(view, cand.path),
        "test_file": float(not view.mentions_tests and is_test_path(cand.path)),
        "docs_file": float(view.about_code and is_docs_path(cand.path, cand.kind)),
        "code_kind": float(view.about_code and cand.kind == "code" and not is_docs_path(cand.path)),
    }


def _symbol_features(view: _QueryView, symbol: str) -> dict[str, float]:
    comps = _components(symbol)
    if not comps:
        return {"symbol_exact": 0.0, "symbol_last": 0.0, "symbol_parts": 0.0}
    exact = last = 0.0
    for ident in view.identifiers:
        if _dotted_suffix(ident, comps) or _dotted_suffix(comps, ident):
            exact = 1.0
        if ident[-1] == comps[-1]:
            last = 1.0
        elif comps[-1] in ident:
            last = max(last, 0.5)
    parts = _symbol_name_parts(symbol)
    share = sum(p in view.terms for p in parts) / len(parts) if parts else 0.0
    return {"symbol_exact": exact, "symbol_last": last, "symbol_parts": share}


@_memo
def _symbol_name_parts(symbol: str) -> tuple[str, ...]:
    """The words of a symbol's last name, stop words left out unless that leaves none."""
    name = symbol.split(".")[-1]
    return tuple(p for p in split_identifier(name) if p not in STOP_WORDS) or tuple(split_identifier(name))


def _dotted_suffix(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """`short` names `long` by its tail: at least two parts, or both a single part."""
    if len(short) > len(long) or (len(short) == 1 and len(long) > 1):
        return False
    return long[len(long) - len(short):] == short


def _path_features(view: _QueryView, path: str) -> dict[str, float]:
    lower = path.lower()
    base = posixpath.basename(lower)
    stem = posixpath.splitext(base)[0]
    exact = basename = stem_match = frame = 0.0
    for qpath in view.paths:
        qbase = posixpath.basename(qpath)
        if _same_file(lower, qpath):
            exact = 1.0
        if base == qbase:
            basename = 1.0
        if stem == posixpath.splitext(qbase)[0]:
            stem_match = 1.0
    for depth, qpath in enumerate(view.frame_paths):
        if _same_file(lower, qpath):
            frame = 1.0 / (1 + depth)
            break
    return {
        "path_exact": exact,
        "path_frame": frame,
        "path_basename": basename,
        "path_stem": stem_match,
        "path_module": _module_match(view, lower),
        "path_terms": _path_term_share(view, lower),
    }


def _same_file(path: str, mentioned: str) -> bool:
    """A mentioned path names this file: equal, or one a suffix of the other at a `/`."""
    return path == mentioned or ("/" in mentioned and path.endswith("/" + mentioned)) or mentioned.endswith("/" + path)


def _module_match(view: _QueryView, path: str) -> float:
    """1.0 when a dotted identifier starts with the file's module path (two or more parts, e.g.
    requests.sessions.Session in requests/sessions.py), 0.5 for one part (sessions.Session)."""
    module = _module_components(path)
    best = 0.0
    for ident in view.identifiers:
        if len(ident) < 2:
            continue
        for size in range(min(len(module), len(ident) - 1), 0, -1):
            if tuple(module[len(module) - size:]) == ident[:size]:
                best = max(best, 1.0 if size >= 2 else 0.5)
                break
    return best


@_memo
def _module_components(path: str) -> tuple[str, ...]:
    """A file's module path in joined spelling: requests/sessions.py → (requests, sessions)."""
    parts = posixpath.splitext(path)[0].split("/")
    while parts and parts[-1] in _MODULE_NOISE:
        parts.pop()  # a package's __init__.py / index.js stands for the package itself
    return tuple(_joined(p) for p in parts)


@_memo
def _path_tokens(path: str) -> frozenset[str]:
    return frozenset(code_tokens(path))


def _path_term_share(view: _QueryView, path: str) -> float:
    total = sum(view.terms.values())
    if total <= 0:
        return 0.0
    tokens = _path_tokens(path)
    return sum(w for term, w in view.terms.items() if term in tokens) / total
