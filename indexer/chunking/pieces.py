"""Line ranges with a symbol and header, before they become chunks, and the rule that merges small ones."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    """Chunk size bounds in lines: pieces above `max_lines` split, neighbours below `min_lines` merge."""

    max_lines: int = 80
    min_lines: int = 8

    @property
    def symbol_group(self) -> int:
        """How far separate small symbols grow together (half a chunk keeps them findable)."""
        return max(self.min_lines, self.max_lines // 2)


@dataclass(frozen=True)
class Piece:
    """Rows `start`..`end` (0-based, inclusive) of a document with what describes them.

    `symbolic` marks a definition (or a section) rather than loose statements; `head` marks the
    piece holding the signature of the symbol being split, whose symbol it keeps when merged;
    `sealed` pieces came from splitting one large symbol and never merge with its neighbours; a
    `bare` piece is a heading with nothing under it, which takes the header of what follows."""

    start: int
    end: int
    symbol: str = ""
    header: str = ""
    symbolic: bool = False
    head: bool = False
    sealed: bool = False
    bare: bool = False

    @property
    def lines(self) -> int:
        return self.end - self.start + 1


def _joinable(group: Piece, piece: Piece, limits: Limits) -> bool:
    if group.sealed or piece.sealed:
        return False
    size = piece.end - group.start + 1
    if group.bare:
        return size <= limits.max_lines
    if not group.symbolic and not piece.symbolic:
        return size <= limits.max_lines
    if group.lines >= limits.min_lines and piece.lines >= limits.min_lines:
        return False
    limit = limits.symbol_group if group.symbolic and piece.symbolic else limits.max_lines
    return size <= limit


def _join(group: Piece, piece: Piece) -> Piece:
    if group.bare:
        lead = piece
    elif group.symbolic or group.head or not (piece.symbolic or piece.head):
        lead = group
    else:
        lead = piece
    return Piece(group.start, piece.end, lead.symbol, piece.header if group.bare else group.header,
                 symbolic=group.symbolic or piece.symbolic, head=group.head or piece.head,
                 sealed=group.sealed or piece.sealed, bare=group.bare and piece.bare)


def _fold(members: Sequence[Piece]) -> Piece:
    out = members[0]
    for piece in members[1:]:
        out = _join(out, piece)
    return out


def _fix_tail(groups: list[list[Piece]], limits: Limits) -> None:
    """A small last group joins the one before when both fit in max_lines; otherwise it takes over
    that group's last members, so a split function does not end in a one-line chunk."""
    last, previous = groups[-1], groups[-2]
    if last[-1].end - last[0].start + 1 >= limits.min_lines or last[0].sealed or previous[0].sealed:
        return
    if last[-1].end - previous[0].start + 1 <= limits.max_lines:
        groups[-2:] = [previous + last]
        return
    while len(previous) > 1 and last[-1].end - last[0].start + 1 < limits.min_lines \
            and last[-1].end - previous[-1].start + 1 <= limits.max_lines:
        last.insert(0, previous.pop())


def merge(pieces: Sequence[Piece], limits: Limits) -> list[Piece]:
    """Merge neighbours greedily: loose statements up to max_lines, small symbols into half-size groups."""
    groups: list[list[Piece]] = []
    current: Piece | None = None
    for piece in pieces:
        if current is not None and _joinable(current, piece, limits):
            groups[-1].append(piece)
            current = _join(current, piece)
        else:
            groups.append([piece])
            current = piece
    if len(groups) > 1:
        _fix_tail(groups, limits)
    return [_fold(members) for members in groups]


def trim(lines: Sequence[str], start: int, end: int) -> tuple[int, int]:
    """Rows start..end without blank lines at either edge (start > end when all are blank)."""
    while start <= end and not lines[start].strip():
        start += 1
    while end >= start and not lines[end].strip():
        end -= 1
    return start, end


def seal(pieces: Sequence[Piece]) -> list[Piece]:
    return [replace(p, sealed=True) for p in pieces]


def line_ranges(lines: Sequence[str], lo: int, hi: int, limits: Limits,
                breakable: Callable[[int], bool] | None = None) -> list[tuple[int, int]]:
    """Cut rows lo..hi into runs of at most max_lines, ending each at the last blank line that keeps it
    at least min_lines long when there is one (`breakable` narrows which blank lines qualify)."""
    out: list[tuple[int, int]] = []
    start = lo
    while start <= hi:
        end = min(hi, start + limits.max_lines - 1)
        if end < hi:
            for row in range(end, start + limits.min_lines - 2, -1):
                if not lines[row].strip() and (breakable is None or breakable(row)):
                    end = row
                    break
        out.append((start, end))
        start = end + 1
    return out
