"""The relevance floor: whether a query's best candidates are evidence enough to answer at all.

An assistant pastes whatever Cairn returns into its prompt, so a chat line ("write me a haiku"),
a key mash or an editor's `null` must get nothing rather than the ten least-bad chunks. Neither
engine alone can tell: BM25 finds a chunk for any word the index holds ("write"), and a dense
model gives every text some neighbour. Together they can: a query about the indexed code has its
rare words in the top lexical hits, or its meaning close to some chunk, or both."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.identifiers import code_tokens
from indexer.stores import FullTextIndex
from retrieval.hits import Candidate
from retrieval.query_analysis import AnalysedQuery

TOP_LEXICAL = 10  # the lexical hits whose text is read for the query's terms
# Dense cosine (the default MiniLM model) mapped to [0, 1]: at or below DENSE_LOW nothing in the index
# means the same (chit-chat against code scores 0.05-0.25), at DENSE_HIGH a chunk clearly answers.
DENSE_LOW = 0.25
DENSE_HIGH = 0.55
# What editors send when the input box is empty (Continue: `cairn://search/null`).
EMPTY_INPUTS = frozenset({"null", "undefined", "none", "nil", "nan", "[object object]", '""', "''"})


@dataclass(frozen=True)
class Evidence:
    """Both engines' evidence that the index holds an answer, each in [0, 1].

    lexical: IDF-weighted share of the query's terms found verbatim in the top lexical hits (a term
    that none of them holds counts at the highest IDF, whatever the rest of the index holds).
    dense: the best dense cosine, mapped from [DENSE_LOW, DENSE_HIGH] to [0, 1].
    lexical_alone: BM25's evidence may vouch alone: the query names code (an identifier such as
    `get_adapter`, a dotted name, a path), or one top hit holds every term of it (a ticket key, an
    error code, a marker), or the dense engine gave nothing to weigh."""

    lexical: float
    dense: float
    lexical_alone: bool = False

    @property
    def relevance(self) -> float:
        """With `lexical_alone`: the stronger engine plus a quarter of the weaker, since an identifier
        or every word of the query found verbatim in one place is evidence by itself (and the model
        often misses a name typed alone). Otherwise (plain words spread over several hits): the dense
        evidence plus a quarter of the lexical, since every repository with docs holds common English
        words ("price", "week", "prediction"), so finding them here and there proves little."""
        if self.lexical_alone:
            high, low = max(self.lexical, self.dense), min(self.lexical, self.dense)
            return min(1.0, high + 0.25 * low)
        return min(1.0, self.dense + 0.25 * self.lexical)

    def as_dict(self) -> dict[str, float]:
        return {"lexical": round(self.lexical, 4), "dense": round(self.dense, 4),
                "lexical_alone": float(self.lexical_alone), "relevance": round(self.relevance, 4)}


def is_empty_input(text: str) -> bool:
    """A placeholder an editor sends for an empty input box, not a question."""
    return text.strip().lower() in EMPTY_INPUTS


def dense_evidence(cosine: float) -> float:
    return min(1.0, max(0.0, (cosine - DENSE_LOW) / (DENSE_HIGH - DENSE_LOW)))


def lexical_share(query: AnalysedQuery, candidates: Sequence[Candidate], fulltext: FullTextIndex) -> tuple[float, bool]:
    """(Σ weight x idf of the query terms found in the TOP_LEXICAL best lexical hits / Σ over all
    terms, whether one of those hits holds every term)."""
    weights = _term_weights(query)
    if not weights:
        return 0.0, False
    top = sorted((c for c in candidates if c.lexical_rank is not None), key=lambda c: c.lexical_rank or 0)
    seen: set[str] = set()
    whole = False
    for cand in top[:TOP_LEXICAL]:
        tokens = set(code_tokens(f"{cand.path} {cand.symbol} {cand.content}"))
        whole = whole or tokens.issuperset(weights)
        seen |= tokens
    found = [t for t in weights if t in seen]
    total_docs, freqs = fulltext.term_statistics(found) if found else (0, {})
    ceiling = _idf(0, total_docs)
    found_mass = sum(weights[t] * _idf(freqs.get(t, 0), total_docs) for t in found)
    missing_mass = sum(w for t, w in weights.items() if t not in seen) * ceiling
    total = found_mass + missing_mass
    return (found_mass / total if total > 0 else 0.0), whole


def _term_weights(query: AnalysedQuery) -> dict[str, float]:
    """The query's analysed terms as index tokens (a term seen twice keeps its highest weight)."""
    out: dict[str, float] = {}
    for term, weight in query.lexical.terms:
        for token in code_tokens(term):
            out[token] = max(weight, out.get(token, 0.0))
    return out


def _idf(df: int, total: int) -> float:
    """BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)); at least a small positive weight."""
    return max(0.05, math.log(1 + (max(total, df) - df + 0.5) / (df + 0.5)))
