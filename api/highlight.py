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

STYLE = "default"  # dark-enough colours on white (readable contrast)
MAX_TERMS = 20


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


def term_pattern(query: str) -> re.Pattern | None:
    """Matches the query's words (longest first) case-insensitively; None for a query without words."""
    words = sorted(set(re.findall(r"\w{2,}", query)), key=len, reverse=True)[:MAX_TERMS]
    return re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None


def _css_class(ttype: _TokenType) -> str:
    found: _TokenType | None = ttype
    while found is not None and found not in STANDARD_TYPES:
        found = found.parent
    # the root token type is in STANDARD_TYPES, so the walk ends there before running out of parents
    return STANDARD_TYPES[found] if found is not None else ""


def _mark(text: str, terms: re.Pattern | None) -> str:
    if terms is None:
        return html.escape(text)
    out, pos = [], 0
    for m in terms.finditer(text):
        out += [html.escape(text[pos:m.start()]), f"<mark>{html.escape(m.group())}</mark>"]
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def highlight_lines(code: str, language: str, path: str, terms: re.Pattern | None = None) -> list[str]:
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
