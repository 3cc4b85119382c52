"""Diversity and budget: cap hits per file, merge touching chunks, pack for a token budget, snippets."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def merge_adjacent(cands: Sequence[Candidate]) -> list[Candidate]:
    """Merge candidates of one document whose line spans overlap or touch into one span.

    The merged candidate keeps the identity, symbol and score of its best-scored member, takes
    the best lexical/dense ranks of all members, and sits where that best member sat in the input."""
    groups: dict[str, list[int]] = {}
    for index, cand in enumerate(cands):
        groups.setdefault(cand.doc_id, []).append(index)
    placed: list[tuple[int, Candidate]] = []
    for indexes in groups.values():
        span: list[int] = []
        end = 0
        for index in sorted(indexes, key=lambda i: (cands[i].start_line, cands[i].end_line, i)):
            if span and cands[index].start_line > end + 1:
                placed.append(_merge_span(cands, span))
                span = []
            end = max(end, cands[index].end_line) if span else cands[index].end_line
            span.append(index)
        placed.append(_merge_span(cands, span))
    return [cand for _, cand in sorted(placed, key=lambda pair: pair[0])]


def _merge_span(cands: Sequence[Candidate], span: list[int]) -> tuple[int, Candidate]:
    """One merged candidate for members sorted by start line, with the input index of the best."""
    best = min(span, key=lambda i: (-cands[i].score, i))
    if len(span) == 1:
        return best, cands[best]
    members = [cands[i] for i in span]
    lines = members[0].content.split("\n")
    end = members[0].end_line
    for member in members[1:]:
        if member.end_line <= end:
            continue  # fully inside what is already covered
        skip = end - member.start_line + 1  # lines of this member already present
        lines.extend(member.content.split("\n")[max(skip, 0):])
        end = member.end_line
    return best, replace(
        cands[best],
        start_line=members[0].start_line,
        end_line=end,
        content="\n".join(lines),
        lexical_rank=_best_rank(m.lexical_rank for m in members),
        dense_rank=_best_rank(m.dense_rank for m in members),
        lexical_score=max(m.lexical_score for m in members),
        dense_score=max(m.dense_score for m in members),
    )


def _best_rank(ranks) -> int | None:
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
    hits = [len(terms.intersection(code_tokens(line))) for line in lines]
    window = sum(hits[:max_lines])
    best_start, best = 0, window
    for start in range(1, len(lines) - max_lines + 1):
        window += hits[start + max_lines - 1] - hits[start - 1]
        if window > best:
            best_start, best = start, window
    return "\n".join(lines[best_start:best_start + max_lines])
