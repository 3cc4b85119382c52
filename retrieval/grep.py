"""Exact/regex search over indexed chunks: a literal word narrows candidates in the index, the pattern runs on lines.

The candidate query goes through the FullTextIndex contract with the caller's filter, so grep sees
exactly what search sees; matching runs on the catalog's chunk text with a time budget."""
from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import regex

from indexer.catalog import Catalog
from indexer.identifiers import split_identifier
from indexer.models import Principal
from indexer.stores import FullTextIndex, LexicalQuery
from retrieval.permissions import Scope, build_filter

log = logging.getLogger(__name__)

MAX_PATTERN_CHARS = 300
MAX_CANDIDATES = 1000  # chunks fetched from the index per grep
MIN_LITERAL_CHARS = 3
TIME_BUDGET_SECONDS = 2.0
MAX_LINE_CHARS = 400
_META = set(".^$*+?{}[]()|")
_QUANTIFIERS = set("*+?{")
_WORD_RUN = regex.compile(r"\w+")
# A group holding a quantifier, itself quantified: (a+)+, (\w*x)*, (a{2,})+ can backtrack exponentially.
_NESTED_QUANTIFIER = regex.compile(r"\((?:[^()\\]|\\.)*(?:[*+]|\{\d*,?\d*\})(?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,\d*\})")


class PatternError(ValueError):
    """A pattern grep refuses or cannot run: empty or too long, invalid, unbounded, or too slow."""


@dataclass(frozen=True)
class GrepMatch:
    document_id: str
    source: str
    path: str
    line: int
    text: str


@dataclass
class GrepResult:
    matches: list[GrepMatch] = field(default_factory=list)
    truncated: bool = False  # more matches (or candidates) exist than were returned
    candidates: int = 0


@dataclass
class _Run:
    text: str = ""
    left_closed: bool = False  # starts at an anchor (^, word boundary): its first word is whole
    right_closed: bool = False


def _skip_class(pattern: str, i: int) -> int:
    """Index just past the character class starting at pattern[i] == '['."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _skip_quantifier(pattern: str, i: int) -> int:
    """Index just past the quantifier at pattern[i] (with its lazy `?` or possessive `+`)."""
    j = pattern.index("}", i) + 1 if pattern[i] == "{" and "}" in pattern[i:] else i + 1
    return j + 1 if j < len(pattern) and pattern[j] in "?+" else j


def _top_level(pattern: str) -> list[str]:
    """The pattern's alternatives, split on `|` outside groups and classes, each group emptied to
    `()` (a group may be optional or alternate, so nothing inside one is required)."""
    branches, current, depth, i = [], [], 0, 0
    while i < len(pattern):
        ch = pattern[i]
        end = i + 2 if ch == "\\" else _skip_class(pattern, i) if ch == "[" else i + 1
        if ch == "(":
            depth += 1
            current.append("(" if depth == 1 else "")
        elif ch == ")":
            depth = max(0, depth - 1)
            current.append(")" if depth == 0 else "")
        elif ch == "|" and depth == 0:
            branches.append("".join(current))
            current = []
        elif depth == 0:
            current.append(pattern[i:end])
        i = end
    branches.append("".join(current))
    return branches


def _atom(branch: str, i: int) -> tuple[int, str | None, str]:
    """(end, literal character or None, kind) of the atom at i; kind is `atom` or `anchor`."""
    ch = branch[i]
    if ch == "\\":
        esc = branch[i + 1:i + 2]
        if esc in ("b", "A", "Z", "z", "B", "G"):
            return i + 2, None, "anchor" if esc in ("b", "A", "Z", "z") else "atom"
        return i + 2, (esc if esc and not esc.isalnum() else None), "atom"
    if ch == "[":
        return _skip_class(branch, i), None, "atom"
    if ch == "(":
        return branch.index(")", i) + 1 if ")" in branch[i:] else len(branch), None, "atom"
    if ch in "^$":
        return i + 1, None, "anchor"
    return i + 1, (None if ch in _META else ch), "atom"


def _runs(branch: str) -> list[_Run]:
    """Literal runs every match of this alternative contains, with whether their edges are word boundaries."""
    runs: list[_Run] = []
    current = _Run()
    i = 0
    while i < len(branch):
        end, literal, kind = _atom(branch, i)
        quantified = end < len(branch) and branch[end] in _QUANTIFIERS
        if literal is not None and not quantified:
            current.text += literal
            i = end
            continue
        anchor = kind == "anchor"
        if current.text:
            current.right_closed = anchor
            runs.append(current)
        current = _Run(left_closed=anchor)
        i = _skip_quantifier(branch, end) if quantified else end
    if current.text:
        runs.append(current)
    return runs


def _words(run: _Run) -> list[list[str]]:
    """The identifier parts of each word in a literal run; an edge word that may be cut off by the
    surrounding pattern is dropped unless it is the only word."""
    words = [(m.start(), m.end(), split_identifier(m.group(0))) for m in _WORD_RUN.finditer(run.text)]
    words = [w for w in words if w[2]]
    kept = [parts for start, end, parts in words
            if (start > 0 or run.left_closed) and (end < len(run.text) or run.right_closed)]
    return kept or [parts for _, _, parts in words]


def narrowing_phrase(branch: str) -> str:
    """The most selective whole word (as space-separated identifier parts) a branch requires."""
    best = ""
    for run in _runs(branch):
        for parts in _words(run):
            phrase = " ".join(parts)
            if len(phrase.replace(" ", "")) > len(best.replace(" ", "")):
                best = phrase
    return best


def compile_pattern(pattern: str, is_regex: bool, case_sensitive: bool) -> tuple[regex.Pattern, list[str]]:
    """The compiled pattern and one narrowing phrase per alternative; PatternError when unsafe."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern must have 1 to {MAX_PATTERN_CHARS} characters")
    source = pattern if is_regex else regex.escape(pattern)
    if is_regex and _NESTED_QUANTIFIER.search(pattern):
        raise PatternError("nested quantifiers such as (a+)+ can take exponential time; simplify the pattern")
    try:
        compiled = regex.compile(source, regex.MULTILINE | (0 if case_sensitive else regex.IGNORECASE))
    except regex.error as exc:
        raise PatternError(f"invalid regular expression: {exc}") from exc
    phrases = [narrowing_phrase(b) for b in (_top_level(pattern) if is_regex else [source])]
    if any(len(p.replace(" ", "")) < MIN_LITERAL_CHARS for p in phrases):
        raise PatternError(f"every alternative of the pattern needs a literal word of at least {MIN_LITERAL_CHARS} "
                         "characters (it narrows the search through the index)")
    return compiled, phrases


def grep(catalog: Catalog, fulltext: FullTextIndex, who: Principal, pattern: str, scope: Scope = Scope(),
         is_regex: bool = False, case_sensitive: bool = True, limit: int = 50,
         stale: Collection[str] = ()) -> GrepResult:
    """Lines matching `pattern` in chunks the caller may read, in index-rank order."""
    compiled, phrases = compile_pattern(pattern, is_regex, case_sensitive)
    flt = build_filter(who, scope, stale)
    ids = [s.chunk_id for s in fulltext.search(LexicalQuery(terms=(), phrases=tuple(phrases)), flt, MAX_CANDIDATES)]
    rows = catalog.get_chunks(ids)
    result = GrepResult(candidates=len(ids), truncated=len(ids) >= MAX_CANDIDATES)
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    for chunk_id in ids:
        row = rows.get(chunk_id)
        if row is None:
            continue
        lines = row.content.split("\n")
        try:
            for match in compiled.finditer(row.content, timeout=max(deadline - time.monotonic(), 0.001)):
                offset = row.content.count("\n", 0, match.start())
                key = (row.doc_id, row.start_line + offset)
                if key in seen:
                    continue
                seen.add(key)
                if len(result.matches) >= limit:
                    result.truncated = True
                    return result
                result.matches.append(GrepMatch(row.doc_id, row.source, row.path, key[1],
                                                lines[offset][:MAX_LINE_CHARS]))
        except TimeoutError:
            raise PatternError(f"the pattern took longer than {TIME_BUDGET_SECONDS:g} s; make it more specific") from None
    return result
