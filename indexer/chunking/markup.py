"""Section chunking for prose: Markdown headings, reStructuredText titles, and issue or page bodies."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer.chunking.pieces import Limits, Piece, line_ranges, merge, seal, trim

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_JIRA = re.compile(r"^h([1-6])\.[ \t]+(.*\S)[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])(\s|$)")
_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


@dataclass(frozen=True)
class Heading:
    """A section title: the row it starts on, its depth, its text, and the first row below it."""

    row: int
    level: int
    title: str
    body: int


def _blank(line: str) -> bool:
    return not line.strip()


def _front_matter_end(lines: Sequence[str]) -> int:
    """Rows of a leading `---` YAML block are never headings; returns the first row after it."""
    if not lines or lines[0].strip() != "---":
        return 0
    for row in range(1, len(lines)):
        if lines[row].strip() in ("---", "..."):
            return row + 1
    return 0


def _setext_title(lines: Sequence[str], row: int, fenced: list[bool], taken: int) -> bool:
    """Whether the line above an `===`/`---` underline is a paragraph line it turns into a title."""
    if row - 1 < taken or fenced[row - 1]:
        return False
    above = lines[row - 1]
    indent = len(above) - len(above.lstrip(" "))
    return bool(above.strip()) and indent < 4 and not _ATX.match(above) and not _LIST_ITEM.match(above) \
        and not _SETEXT.match(above)


def markdown_headings(lines: Sequence[str], jira: bool = False) -> tuple[list[Heading], list[bool]]:
    """ATX and setext headings outside fenced code (plus Jira `h2.` titles), and which rows are fenced."""
    headings: list[Heading] = []
    fenced = [False] * len(lines)
    fence = ""
    taken = _front_matter_end(lines)
    for row in range(taken, len(lines)):
        line = lines[row]
        opener = _FENCE.match(line)
        if fence or opener:
            fenced[row] = True
            if not fence:
                fence = opener.group(1) if opener else ""
            elif opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence) \
                    and not line.strip().lstrip(fence[0]):
                fence = ""
            continue
        atx = _ATX.match(line) or (_JIRA.match(line) if jira else None)
        if atx:
            level = len(atx.group(1)) if atx.group(1).startswith("#") else int(atx.group(1))
            headings.append(Heading(row, level, (atx.group(2) or "").strip(), row + 1))
            taken = row + 1
        elif row > 0 and _SETEXT.match(line) and _setext_title(lines, row, fenced, taken):
            level = 1 if line.strip().startswith("=") else 2
            headings.append(Heading(row - 1, level, lines[row - 1].strip(), row + 1))
            taken = row + 1
    return headings, fenced


def rst_headings(lines: Sequence[str]) -> list[Heading]:
    """Section titles: a line underlined (optionally also overlined) with one punctuation character.

    Levels follow the order in which adornment styles first appear, as docutils assigns them."""
    styles: dict[tuple[str, bool], int] = {}
    headings: list[Heading] = []
    row = 1
    while row < len(lines):
        under = _RST_ADORNMENT.match(lines[row])
        title = lines[row - 1]
        if not under or _blank(title) or _RST_ADORNMENT.match(title):
            row += 1
            continue
        char = under.group(1)
        over = row >= 2 and lines[row - 2].strip() == lines[row].strip()
        top = row - 2 if over else row - 1
        indented = title[:1].isspace() and not over
        if indented or (top > 0 and not _blank(lines[top - 1])) or (headings and top < headings[-1].body):
            row += 1
            continue
        level = styles.setdefault((char, over), len(styles) + 1)
        headings.append(Heading(top, level, title.strip(), row + 1))
        row += 2
    return headings


def _section(lines: Sequence[str], start: int, end: int, piece: Piece, limits: Limits,
             breakable: Callable[[int], bool] | None) -> list[Piece]:
    if end - start + 1 <= limits.max_lines:
        return [piece]
    ranges = line_ranges(lines, start, end, limits, breakable)
    return seal([Piece(s, e, piece.symbol, piece.header, symbolic=piece.symbolic) for s, e in ranges])


def section_pieces(lines: Sequence[str], headings: Sequence[Heading], base: str, limits: Limits,
                   render: Callable[[Heading], str], breakable: Callable[[int], bool] | None = None) -> list[Piece]:
    """One piece per section with the heading breadcrumb in its header; long sections split at
    paragraphs; small sections merge. Text before the first heading is headed by `base` alone."""
    pieces: list[Piece] = []
    first = headings[0].row if headings else len(lines)
    start, end = trim(lines, 0, first - 1)
    if start <= end:
        pieces.extend(_section(lines, start, end, Piece(start, end, "", base), limits, breakable))
    trail: list[Heading] = []
    for i, heading in enumerate(headings):
        start, end = trim(lines, heading.row, headings[i + 1].row - 1 if i + 1 < len(headings) else len(lines) - 1)
        while trail and trail[-1].level >= heading.level:
            trail.pop()
        trail.append(heading)
        symbol = " > ".join(h.title for h in trail)
        header = f"{base}\n" + " > ".join(render(h) for h in trail)
        if end - start + 1 > limits.max_lines and pieces and pieces[-1].bare:
            start = pieces.pop().start  # an empty parent heading opens its long first child
        piece = Piece(start, end, symbol, header, symbolic=True, bare=end < heading.body)
        pieces.extend(_section(lines, start, end, piece, limits, breakable))
    return merge(pieces, limits)


def _markdown_title(heading: Heading) -> str:
    return f"{'#' * heading.level} {heading.title}"


def markdown_pieces(lines: Sequence[str], base: str, limits: Limits, jira: bool = False) -> list[Piece]:
    headings, fenced = markdown_headings(lines, jira)
    return section_pieces(lines, headings, base, limits, _markdown_title, lambda row: not fenced[row])


def rst_pieces(lines: Sequence[str], base: str, limits: Limits) -> list[Piece]:
    return section_pieces(lines, rst_headings(lines), base, limits, lambda heading: heading.title)


def ticket_pieces(lines: Sequence[str], title: str, limits: Limits) -> list[Piece]:
    """Issues, merge requests and pages: Markdown (or Jira `h2.`) sections, each headed by the title."""
    return markdown_pieces(lines, title, limits, jira=True)
