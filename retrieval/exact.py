"""Exact first: in a search-box query, typed identifiers and quoted phrases that occur verbatim win.

Users of code search expect `keep_alive_seconds` to bring the line that defines it first, and a
quoted phrase to mean "must contain" (Sourcegraph, GitHub). BM25 and the dense model only make
that likely; this stage makes it so. It applies to short one-line queries (`AnalysedQuery.search_box`):
a pasted bug report quotes and names many things in passing, and has its own evidence (frames, paths)."""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from indexer.identifiers import code_tokens
from retrieval.hits import Candidate
from retrieval.query_analysis import AnalysedQuery

DEFINES = 2  # tier points of a chunk that defines a typed identifier
CONTAINS = 1  # ... that holds it verbatim
_DEFINITION_KEYWORDS = ("def|class|function|func|fn|const|let|var|val|type|interface|struct|enum|trait|"
                        "module|macro|sub|#define")


@functools.lru_cache(maxsize=256)
def _patterns(identifier: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(verbatim occurrence, definition of its last part): a keyword definition, an assignment or
    annotation at the start of a line, or a key in a settings file (`name:`, `name =`, `"name":`)."""
    whole = re.escape(identifier)
    last = re.escape(identifier.rsplit(".", 1)[-1])
    contains = re.compile(rf"(?<!\w){whole}(?!\w)")
    defines = re.compile(
        rf"(?:^|\s)(?:{_DEFINITION_KEYWORDS})\s+{last}(?!\w)"
        rf"|^[ \t]*(?:export\s+)?[\"']?(?:[\w.]+\.)?{last}[\"']?[ \t]*(?::(?!:)|=(?!=))",
        re.MULTILINE,
    )
    return contains, defines


def identifier_tier(identifiers: Sequence[str], cand: Candidate) -> int:
    """Σ over typed identifiers: DEFINES if the chunk defines it (its symbol, or a definition of the
    last dotted part in the text), CONTAINS if the text holds it verbatim, else 0."""
    tier = 0
    for ident in identifiers:
        contains, defines = _patterns(ident)
        symbol = cand.symbol
        if symbol and (symbol == ident or symbol.endswith("." + ident) or
                       ("." not in ident and symbol.rsplit(".", 1)[-1] == ident)):
            tier += DEFINES
        elif defines.search(cand.content):
            tier += DEFINES if "." not in ident or contains.search(cand.content) else CONTAINS
        elif contains.search(cand.content):
            tier += CONTAINS
    return tier


def exact_first(query: AnalysedQuery, ranked: list[Candidate]) -> list[Candidate]:
    """Candidates that define or hold the query's identifiers move ahead, tier by tier (higher tier
    first, score order kept within a tier); scores gain the lift, so they stay in rank order."""
    if not query.search_box or not query.identifiers or not ranked:
        return ranked
    tiers = [identifier_tier(query.identifiers, c) for c in ranked]
    if not any(tiers):
        return ranked
    step = max(c.score for c in ranked) - min(c.score for c in ranked) + 0.01
    lifted = [c.scored(c.score + tier * step, {"exact_tier": float(tier)}) for c, tier in zip(ranked, tiers, strict=True)]
    return sorted(lifted, key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))


def holds_phrases(phrases: Sequence[str], cand: Candidate) -> bool:
    """Whether the chunk's text holds every phrase as a token sequence (what the full-text index's
    phrase query matches: case-insensitive, `keepAlive` and `keep_alive` alike)."""
    if not phrases:
        return True
    tokens = code_tokens(cand.content)
    return all(_holds(tokens, code_tokens(p)) for p in phrases)


def _holds(tokens: list[str], seq: list[str]) -> bool:
    if not seq:
        return True
    n = len(seq)
    return any(tokens[i:i + n] == seq for i, tok in enumerate(tokens) if tok == seq[0])
