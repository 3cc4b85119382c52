"""Per-document bounds for chunking hostile input: document size, chunk text size and parse time.

A document over `max_document_bytes` is not chunked at all (the sync records it as skipped, with
the reason). A chunk whose text would exceed `max_chunk_chars` (a 900 kB single line, a file of
deeply indented code) is cut into several, at line ends when it can be and inside a line when one
line alone is too long. Tree-sitter parsing and the symbol layout share a deadline of
`parse_seconds`; past it the document gets line chunks instead of symbol chunks."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.models import Document, Skipped, SkipReason
from indexer.settings import Settings


@dataclass(frozen=True)
class ChunkLimits:
    max_document_bytes: int = 1_000_000
    max_chunk_chars: int = 16_000
    parse_seconds: float = 2.0


class ChunkingTimeout(Exception):
    """Symbol chunking ran past its deadline (the caller falls back to line chunks)."""


class Deadline:
    """A point in monotonic time that parsing and layout check as they go."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() > self.at

    def check(self, what: str) -> None:
        if self.expired():
            raise ChunkingTimeout(f"{what} took longer than {self.seconds:g}s")


def document_bytes(doc: Document) -> int:
    """The document's size in UTF-8 bytes (exact only when it could matter for a limit)."""
    return len(doc.content.encode("utf-8", "surrogatepass"))


def oversize_skip(doc: Document, limits: ChunkLimits) -> Skipped | None:
    """A TOO_LARGE skip record for a document over the size limit, else None."""
    if len(doc.content) * 4 <= limits.max_document_bytes:  # cheap: no UTF-8 character is longer
        return None
    size = document_bytes(doc)
    if size <= limits.max_document_bytes:
        return None
    return Skipped(doc.source, doc.path, SkipReason.TOO_LARGE, f"{size} bytes > {limits.max_document_bytes}")


def char_windows(lines: Sequence[str], start: int, end: int, max_chars: int) -> list[tuple[int, int, str]]:
    """Rows start..end as (first row, last row, text) pieces of at most `max_chars` characters.

    Whole rows are kept together while they fit; a row longer than `max_chars` on its own becomes
    several pieces on that row. Pieces holding only whitespace are left out."""
    out: list[tuple[int, int, str]] = []
    rows: list[str] = []  # the rows gathered so far
    first, size = start, 0  # where they start, their joined size
    for row in range(start, end + 1):
        line = lines[row]
        if rows and size + 1 + len(line) > max_chars:
            out.append((first, row - 1, "\n".join(rows)))
            rows, size = [], 0
        if len(line) > max_chars:
            out.extend((row, row, line[at:at + max_chars]) for at in range(0, len(line), max_chars))
            continue
        if not rows:
            first, size = row, len(line)
        else:
            size += 1 + len(line)
        rows.append(line)
    if rows:
        out.append((first, end, "\n".join(rows)))
    return [(s, e, text) for s, e, text in out if text.strip()]


def chunk_limits(settings: Settings) -> ChunkLimits:
    return ChunkLimits(max_document_bytes=settings.max_file_bytes, max_chunk_chars=settings.max_chunk_chars,
                       parse_seconds=settings.parse_timeout_seconds)
