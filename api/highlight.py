"""Server-side syntax highlighting for the web UI: pygments tokens as HTML lines, query terms marked."""
from __future__ import annotations

import html
import re
from collections.abc import Callable

from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_by_name, get_lexer_for_filename
from pygments.token import STANDARD_TYPES, _TokenType
from pygments.util import ClassNotFound

from indexer.identifiers import code_tokens, split_identifier
from retrieval.query_analysis import QueryError, analyse

STYLE = "default"  # dark-enough colours on white (readable contrast)
MAX_TERMS = 20
_IDENTIFIER = re.compile(r"\w+")  # a word or identifier; its parts are split like the index splits them


def stylesheet() -> str:
    """The CSS of the token classes, scoped to `.hl`."""
    return HtmlFormatter(style=STYLE).get_style_defs(".hl")


def lexer_for(language: str, path: str) -> Lexer:
    finders: tuple[tuple[Callable[..., Lexer], str], ...] = ((get_lexer_by_name, language),
                                                              (get_lexer_for_filename, path))
    for find, key in finders:
        if key:
            try:
                return find(key, stripnl=False, ensurenl=False)
            except ClassNotFound:
                pass
    return TextLexer(stripnl=False, ensurenl=False)


def query_terms(query: str) -> frozenset[str]:
    """The tokens a search for `query` matches (stop-words dropped, identifiers split as the index splits
    them): what the UI marks. Empty for a query without searchable words."""
    try:
        lexical = analyse(query).lexical
    except QueryError:
        return frozenset()
    tokens = {t for term, _ in lexical.terms for t in code_tokens(term)}
    return frozenset(sorted(tokens, key=len, reverse=True)[:MAX_TERMS])


def _part_spans(word: str) -> list[tuple[int, int, str]]:
    """(start, end, lower-cased part) of each identifier part of `word`, as `split_identifier` splits it."""
    spans, pos, lower = [], 0, word.lower()
    for part in split_identifier(word):
        start = lower.find(part, pos)
        if start < 0:  # casing that changes length (rare Unicode): no parts to mark
            return []
        spans.append((start, start + len(part), part))
        pos = start + len(part)
    return spans


def _term_spans(text: str, terms: frozenset[str]) -> list[tuple[int, int]]:
    """Whole words or whole identifier parts of `text` that are query terms (`down` marks `tearDown` and
    `tear_down`, never `teardown`)."""
    out = []
    for m in _IDENTIFIER.finditer(text):
        parts = _part_spans(m.group())
        if len(parts) > 1 and "".join(p for _, _, p in parts) in terms:
            out.append((m.start(), m.end()))
            continue
        out += [(m.start() + a, m.start() + b) for a, b, part in parts if part in terms]
    return out


def _css_class(ttype: _TokenType) -> str:
    found: _TokenType | None = ttype
    while found is not None and found not in STANDARD_TYPES:
        found = found.parent
    # the root token type is in STANDARD_TYPES, so the walk ends there before running out of parents
    return STANDARD_TYPES[found] if found is not None else ""


def _mark(text: str, terms: frozenset[str] | None) -> str:
    if not terms:
        return html.escape(text)
    out, pos = [], 0
    for start, end in _term_spans(text, terms):
        out += [html.escape(text[pos:start]), f"<mark>{html.escape(text[start:end])}</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def highlight_lines(code: str, language: str, path: str, terms: frozenset[str] | None = None) -> list[str]:
    """One HTML string per line of `code` (a final newline does not start another line)."""
    lines: list[list[str]] = [[]]
    for ttype, value in lexer_for(language, path).get_tokens(code):
        cls = _css_class(ttype)
        for i, part in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if part:
                marked = _mark(part, terms)
                lines[-1].append(f'<span class="{cls}">{marked}</span>' if cls else marked)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return ["".join(parts) for parts in lines]
