"""Turns a Document into Chunks: symbols for code, sections for prose, headed sections for tickets.

Every non-blank line of a document lands in exactly one chunk; chunks never start or end with
blank lines, and chunks that would hold only whitespace are dropped. The exception is a line longer
than `ChunkLimits.max_chunk_chars`, which is cut across several chunks (see `limits`)."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from indexer.chunking.limits import ChunkLimits, Deadline, char_windows
from indexer.chunking.markup import markdown_pieces, rst_pieces, ticket_pieces
from indexer.chunking.occurrences import Occurrence, mentions, occurrences
from indexer.chunking.pieces import Limits, Piece, line_ranges, trim
from indexer.chunking.symbols import module_name, symbol_pieces
from indexer.languages import detect_language, kind_for
from indexer.models import Chunk, Document

log = logging.getLogger(__name__)

__all__ = ["ChunkLimits", "Occurrence", "chunk_document", "mentions", "module_name", "occurrences"]

TICKET_KINDS = frozenset({"issue", "merge_request", "page", "commit"})
SNIFF_CHARS = 512


def _ticket_title(doc: Document) -> str:
    """`PROJ-12: Login fails` (the key is left out when the title already names it)."""
    if doc.title and doc.path and doc.path not in doc.title:
        return f"{doc.path}: {doc.title}"
    return doc.title or doc.path


def _line_pieces(doc: Document, language: str, lines: Sequence[str], limits: Limits) -> list[Piece]:
    symbol = module_name(doc.path) if kind_for(language) == "code" else ""
    return [Piece(s, e, symbol, doc.path) for s, e in line_ranges(lines, 0, len(lines) - 1, limits)]


def _pieces(doc: Document, language: str, lines: Sequence[str], limits: Limits, deadline: Deadline) -> list[Piece]:
    try:
        if doc.kind in TICKET_KINDS:
            return ticket_pieces(lines, _ticket_title(doc), limits)
        if language == "markdown":
            return markdown_pieces(lines, doc.path, limits)
        if language == "rst":
            return rst_pieces(lines, doc.path, limits)
        pieces = symbol_pieces(doc.content, lines, language, doc.path, limits, deadline)
    except Exception:  # one document the structure-aware chunkers choke on still gets line chunks
        log.warning("structured chunking failed for %s (%s); using line chunks", doc.id, language, exc_info=True)
        pieces = None
    return pieces if pieces is not None else _line_pieces(doc, language, lines, limits)


def _bounded(lines: Sequence[str], start: int, end: int, max_chars: int) -> list[tuple[int, int, str]]:
    """The piece's rows as one text, or several when that text would exceed max_chars."""
    text = "\n".join(lines[start:end + 1])
    if len(text) <= max_chars:
        return [(start, end, text)]
    out = []
    for first, last, part in char_windows(lines, start, end, max_chars):
        if first < last:
            top, bottom = trim(lines, first, last)
            out.append((top, bottom, "\n".join(lines[top:bottom + 1])))
        else:
            out.append((first, last, part))
    return out


def chunk_document(doc: Document, max_lines: int = 80, min_lines: int = 8,
                   limits: ChunkLimits | None = None) -> list[Chunk]:
    """Split a document into chunks of at most about `max_lines` lines (see the module docstring).

    Never raises for any content: what cannot be chunked by structure in time gets line chunks.
    The document size limit is the caller's to apply (`limits.oversize_skip`) before this."""
    if max_lines < 1:
        raise ValueError(f"max_lines must be at least 1, not {max_lines}")
    if not doc.content.strip():
        return []
    bounds = limits or ChunkLimits()
    lines = doc.content.split("\n")
    if lines[-1] == "":
        lines.pop()
    language = doc.language or detect_language(doc.path, doc.content[:SNIFF_CHARS])
    sizes = Limits(max_lines, max(1, min(min_lines, max_lines)))
    acl = tuple(doc.access.acl())
    seen: Counter[str] = Counter()
    chunks: list[Chunk] = []
    for piece in _pieces(doc, language, lines, sizes, Deadline(bounds.parse_seconds)):
        start, end = trim(lines, piece.start, piece.end)
        if start > end:
            continue
        for first, last, content in _bounded(lines, start, end, bounds.max_chunk_chars):
            chunk = Chunk(doc_id=doc.id, source=doc.source, path=doc.path, ordinal=len(chunks),
                          start_line=first + 1, end_line=last + 1, content=content, header=piece.header,
                          symbol=piece.symbol, kind=doc.kind, language=language, acl=acl)
            text = chunk.embed_text()
            chunks.append(replace(chunk, occurrence=seen[text]) if seen[text] else chunk)
            seen[text] += 1
    log.debug("chunked %s into %d chunks", doc.id, len(chunks))
    return chunks

