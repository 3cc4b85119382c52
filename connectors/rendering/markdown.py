"""Markdown building blocks the renderers share: pipe tables, code fences, whitespace tidying."""
from __future__ import annotations


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
