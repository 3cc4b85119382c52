"""Diversity and budget: cap hits per file, merge nearby hits into one item, pack for a token budget, snippets."""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from indexer.identifiers import code_tokens
from retrieval.hits import Candidate

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """A model-free token estimate: about four characters per token, rounded up."""
    return math.ceil(len(text) / 4)


def cap_per_file(cands: Sequence[Candidate], max_per_file: int) -> list[Candidate]:
    """Keep at most `max_per_file` candidates per document, in the incoming order."""
    if max_per_file < 1:
        raise ValueError(f"max_per_file must be >= 1, got {max_per_file}")
    counts: dict[str, int] = {}
    out = []
    for cand in cands:
        seen = counts.get(cand.doc_id, 0)
        if seen < max_per_file:
            counts[cand.doc_id] = seen + 1
            out.append(cand)
    return out


MERGE_GAP = 3  # hits of one document at most this many lines apart are shown as one item

# Lines first..last (1-based, inclusive) of a stored document as stored, or None when it cannot be read.
LineReader = Callable[[str, int, int], "Sequence[str] | None"]


def merge_nearby(ranked: Sequence[Candidate], limit: int, read_lines: LineReader | None = None,
                 gap: int = MERGE_GAP) -> list[Candidate]:
    """The first `limit` items of `ranked` (best first), hits of one document at most `gap` lines apart
    (or overlapping) merged into one item: the union of their line spans and text, with the identity,
    symbol and score of its best member, the best ranks of all, and `members` naming every chunk in it.
    An item sits where its best member sat; the hits merged into it free places for later ones.

    An item's text comes from its own chunks and, between them, from lines of the stored document that
    are blank: a line that holds anything belongs to some other chunk (the chunker puts every non-blank
    line in one), perhaps one the caller may not read, so hits with such lines between them stay
    apart. Without `read_lines` only touching or overlapping hits merge, and overlapping ones only
    when they agree on their shared lines (two windows of one long line do not)."""
    if limit < 1:
        return []
    items: list[_Item] = []
    for cand in ranked:
        near = [item for item in items if item.accepts(cand, gap, read_lines)]
        if near:
            for other in near[1:]:
                near[0].absorb(other)
                items.remove(other)
            near[0].add(cand)
        elif len(items) < limit:
            items.append(_Item(cand))
        if len(items) == limit:
            break  # the hits after the last place are not returned, so they merge into nothing either
    return [item.candidate() for item in items]


class _Item:
    """Hits of one document being merged: the best member first, and every line shown, by number."""

    def __init__(self, best: Candidate) -> None:
        self.members = [best]
        self.lines = _lines_of(best)
        self.start, self.end = best.start_line, best.end_line

    def _cover(self, lines: dict[int, str]) -> None:
        self.lines.update(lines)
        self.start, self.end = min(self.start, *lines), max(self.end, *lines)

    def accepts(self, cand: Candidate, gap: int, read_lines: LineReader | None) -> bool:
        """Whether `cand` can join: same document, at most `gap` lines away, agreeing on shared lines,
        only blank lines between (read from the stored document, and then kept in `self.lines`)."""
        if cand.doc_id != self.members[0].doc_id:
            return False
        own = _lines_of(cand)
        if any(self.lines.get(n, text) != text for n, text in own.items()):
            return False
        first, last = (self.end + 1, cand.start_line - 1) if cand.start_line > self.end else \
            (cand.end_line + 1, self.start - 1)
        if last < first:
            return True  # touching or overlapping
        if last - first + 1 > gap or read_lines is None:
            return False
        between = _blank_between(read_lines, cand.doc_id, first, last, {**self.lines, **own})
        if between is None:
            return False
        self._cover(between)
        return True

    def add(self, cand: Candidate) -> None:
        self.members.append(cand)
        self._cover(_lines_of(cand))

    def absorb(self, other: _Item) -> None:
        self.members.extend(other.members)
        self._cover(other.lines)

    def candidate(self) -> Candidate:
        best = self.members[0]
        if len(self.members) == 1:
            return best
        start, end = self.start, self.end
        return replace(
            best,
            start_line=start,
            end_line=end,
            content="\n".join(self.lines[n] for n in range(start, end + 1)),
            lexical_rank=_best_rank(m.lexical_rank for m in self.members),
            dense_rank=_best_rank(m.dense_rank for m in self.members),
            lexical_score=max(m.lexical_score for m in self.members),
            dense_score=max(m.dense_score for m in self.members),
            members=tuple(m.chunk_id for m in self.members),
        )


def gap_documents(ranked: Sequence[Candidate], gap: int = MERGE_GAP) -> set[str]:
    """Documents with two of these hits 1 to `gap` lines apart: those `merge_nearby` may read lines of."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for cand in ranked:
        spans.setdefault(cand.doc_id, []).append((cand.start_line, cand.end_line))
    out = set()
    for doc_id, found in spans.items():
        found.sort()
        if any(0 < b[0] - a[1] - 1 <= gap for a, b in itertools.pairwise(found)):
            out.add(doc_id)
    return out


def _lines_of(cand: Candidate) -> dict[int, str]:
    return dict(enumerate(cand.content.split("\n"), start=cand.start_line))


def _blank_between(read_lines: LineReader, doc_id: str, first: int, last: int,
                   shown: dict[int, str]) -> dict[int, str] | None:
    """Lines first..last of the stored document when all are blank and the document's lines on either
    side are the hits' own (so the document read is the text the chunks came from); else None."""
    stored = read_lines(doc_id, first - 1, last + 1)
    if stored is None or len(stored) != last - first + 3:
        return None
    if stored[0] != shown.get(first - 1) or stored[-1] != shown.get(last + 1):
        return None
    inner = stored[1:-1]
    if any(line.strip() for line in inner):
        return None
    return dict(enumerate(inner, start=first))


def _best_rank(ranks: Iterable[int | None]) -> int | None:
    present = [r for r in ranks if r is not None]
    return min(present) if present else None


def pack(
    cands: Sequence[Candidate],
    token_budget: int,
    count_tokens: TokenCounter = estimate_tokens,
) -> list[Candidate]:
    """Greedily take candidates in score order while their content fits the budget.

    A candidate that does not fit is skipped, unless nothing has been taken yet: then it is cut
    to fit (whole lines first), so a tight budget still returns the best result."""
    if token_budget <= 0:
        return []
    ordered = sorted(enumerate(cands), key=lambda pair: (-pair[1].score, pair[0]))
    out: list[Candidate] = []
    used = 0
    for _, cand in ordered:
        cost = count_tokens(cand.content)
        if used + cost <= token_budget:
            out.append(cand)
            used += cost
        elif not out:
            cut = truncate(cand, token_budget, count_tokens)
            if cut is not None:
                out.append(cut)
                used += count_tokens(cut.content)
    return out


def truncate(cand: Candidate, token_budget: int, count_tokens: TokenCounter = estimate_tokens) -> Candidate | None:
    """The candidate cut to its longest prefix of whole lines within the budget (or a cut first
    line when even one line is too long); None when not a single character fits."""
    lines = cand.content.split("\n")
    keep = _longest_fitting(len(lines), lambda n: count_tokens("\n".join(lines[:n])) <= token_budget)
    if keep > 0:
        return replace(cand, content="\n".join(lines[:keep]), end_line=cand.start_line + keep - 1)
    first = lines[0]
    chars = _longest_fitting(len(first), lambda n: count_tokens(first[:n]) <= token_budget)
    if chars == 0:
        return None
    return replace(cand, content=first[:chars], end_line=cand.start_line)


def _longest_fitting(size: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, size] with fits(n), assuming fits is monotone (binary search)."""
    low, high = 0, size
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


@functools.lru_cache(maxsize=1 << 16)
def _line_tokens(line: str) -> frozenset[str]:
    """A line's code tokens; the same lines come back query after query (bounded: a few MB at most)."""
    return frozenset(code_tokens(line))


def snippet(content: str, query_terms: Sequence[str], max_lines: int = 12) -> str:
    """The window of at most `max_lines` lines holding the most query-term hits (earliest on ties).

    A line's hits are the distinct query terms among its code tokens, so `hash_token` in the
    query finds `hashToken` in code. Without any hit the first lines are returned."""
    if max_lines < 1:
        raise ValueError(f"max_lines must be >= 1, got {max_lines}")
    lines = content.split("\n")
    if len(lines) <= max_lines:
        return content
    terms = {t.lower() for t in query_terms}
    hits = [len(terms.intersection(_line_tokens(line))) if line.strip() else 0 for line in lines]
    window = sum(hits[:max_lines])
    best_start, best = 0, window
    for start in range(1, len(lines) - max_lines + 1):
        window += hits[start + max_lines - 1] - hits[start - 1]
        if window > best:
            best_start, best = start, window
    return "\n".join(lines[best_start:best_start + max_lines])
