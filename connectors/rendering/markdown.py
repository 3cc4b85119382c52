"""Markdown building blocks the renderers share: pipe tables, code fences, whitespace tidying, hidden comments."""
from __future__ import annotations

import re

FENCE = re.compile(r"^\s*(```|~~~)")  # a line opening or closing fenced code


def table(rows: list[list[str]], header: bool) -> str:
    """A Markdown pipe table (the first row is the header; an empty one is made when there is none)."""
    rows = [[" ".join(cell.split()).replace("|", "\\|") for cell in row] for row in rows if row]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    if not header:
        rows.insert(0, [""] * width)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def fence(code: str, language: str = "") -> str:
    ticks = "```"
    while ticks in code:
        ticks += "`"
    return f"{ticks}{language}\n{code.strip(chr(10))}\n{ticks}"


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no leading/trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


def without_html_comments(text: str, keep_if_empty: bool = True) -> str:
    """Markdown as its reader sees it: complete `<!-- ... -->` comments outside fenced code are dropped (GitHub
    and GitLab hide them; an issue template's instructions name files such as CONTRIBUTING.md that have nothing
    to do with the issue). Comments inside fences are code and stay; an unclosed `<!--` stays. A text that
    would be left empty is kept whole with `keep_if_empty` (a query of nothing else), else answered empty."""
    if "<!--" not in text:
        return text
    parts: list[str] = []
    prose: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if FENCE.match(line):
            if not in_fence:
                parts.append(_drop_comments("\n".join(prose)))
                prose = []
            in_fence = not in_fence
            parts.append(line)
        elif in_fence:
            parts.append(line)
        else:
            prose.append(line)
    parts.append(_drop_comments("\n".join(prose)))
    kept = "\n".join(parts).strip()
    return kept if kept or not keep_if_empty else text


def _drop_comments(text: str) -> str:
    """`text` without its complete `<!-- ... -->` comments, in one pass (no backtracking over an unclosed
    `<!--`, whatever the input)."""
    out: list[str] = []
    at = 0
    while (start := text.find("<!--", at)) >= 0:
        end = text.find("-->", start + 4)
        if end < 0:
            break
        out.append(text[at:start])
        at = end + 3
    out.append(text[at:])
    return "".join(out)
