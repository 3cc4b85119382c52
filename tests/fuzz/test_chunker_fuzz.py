"""Hostile input to the chunker: random text and bytes, and hand-made nasties (huge lines, deep
nesting, NUL, bad UTF-8). No exception, no hang, no chunk over the size bound, no text lost."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nasty import CODE

from indexer.chunking import ChunkLimits, chunk_document
from indexer.chunking.limits import oversize_skip
from indexer.languages import decode_text, skip_reason_for_content
from indexer.models import Access, Document, SkipReason

LIMITS = ChunkLimits(max_document_bytes=1_000_000, max_chunk_chars=4000, parse_seconds=2.0)
NO_SIZE_LIMIT = ChunkLimits(max_document_bytes=10**9, max_chunk_chars=16_000, parse_seconds=2.0)
SECONDS_PER_NASTY = 30.0  # generous for a shared 2-core machine; a hang is minutes
PATHS = ["a.py", "a.js", "a.ts", "a.tsx", "a.go", "A.java", "a.rs", "a.c", "a.cpp", "A.cs", "a.rb", "a.php",
         "a.kt", "a.scala", "a.swift", "a.sh", "README.md", "doc.rst", "notes.txt", "data.json", "x.unknown"]
KINDS = ["code", "code", "code", "issue", "page"]
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
FUZZ_HEAVY = settings(FUZZ, max_examples=100)  # documents of 5-60k characters: 300 of them took 45 s of the suite

# Text that looks like code: brackets, keywords, quotes, comment markers, headings, odd whitespace.
TOKENS = st.sampled_from(["def ", "class ", "function ", "fn ", "{", "}", "(", ")", "[", "]", ":", ";", "\n",
                          "\n\n", "    ", "\t", "#", "# ", "## ", "//", "/*", "*/", '"', "'", "`", "```",
                          "===", "---", "\\", "\x00", "\r", "\ufffd", "\udcff", "é", "x", "return", "=>",
                          "<?php", "package p\n", "impl ", "struct ", "h2. ", "*", "end\n"])
CODELIKE = st.lists(TOKENS | st.text(max_size=20), max_size=400).map("".join)


def _document(path: str, content: str, kind: str = "code") -> Document:
    return Document(id=f"s:{path}", source="s", path=path, content=content, version="1",
                    access=Access.of("public"), kind=kind, title=path)


def _check(doc: Document, limits: ChunkLimits) -> list:
    chunks = chunk_document(doc, max_lines=20, min_lines=4, limits=limits)
    lines = doc.content.split("\n")
    for chunk in chunks:
        assert len(chunk.content) <= limits.max_chunk_chars
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.content.strip()
    # Only whitespace may be lost: every other character lands in some chunk.
    assert sum(len("".join(c.content.split())) for c in chunks) == len("".join(doc.content.split()))
    assert len({c.id for c in chunks}) == len(chunks)
    return chunks


@FUZZ
@given(path=st.sampled_from(PATHS), kind=st.sampled_from(KINDS), content=CODELIKE)
def test_code_like_text_never_breaks_the_chunker(tried, path, kind, content):
    tried["chunker: code-like text"] += 1
    _check(_document(path, content, kind), LIMITS)


@FUZZ
@given(path=st.sampled_from(PATHS), content=st.text(max_size=3000))
def test_any_unicode_text_never_breaks_the_chunker(tried, path, content):
    tried["chunker: unicode text"] += 1
    _check(_document(path, content), LIMITS)


@FUZZ
@given(path=st.sampled_from(PATHS), data=st.binary(max_size=4000))
def test_random_bytes_are_skipped_with_a_reason_or_chunked(tried, path, data):
    """What the git connector does with a blob: a recorded skip reason, or text that chunks."""
    tried["chunker: random bytes"] += 1
    reason = skip_reason_for_content(path, data)
    if reason is not None:
        assert isinstance(reason[0], SkipReason) and reason[1]
        return
    _check(_document(path, decode_text(data)), LIMITS)


@FUZZ_HEAVY
@given(path=st.sampled_from(PATHS), line=st.text(alphabet="ab(){}[] \t;=", min_size=5000, max_size=20_000),
       repeat=st.integers(1, 3))
def test_long_lines_are_cut_to_the_chunk_bound(tried, path, line, repeat):
    tried["chunker: long lines"] += 1
    _check(_document(path, "\n".join([line] * repeat)), LIMITS)


@pytest.mark.parametrize("name", list(CODE))
def test_nasty_documents_chunk_in_bounded_time_or_are_skipped_as_too_large(tried, name):
    tried["chunker: hand-made nasties"] += 1
    path, content = CODE[name]
    doc = _document(path, content)
    skip = oversize_skip(doc, LIMITS)
    if len(content.encode("utf-8", "surrogatepass")) > LIMITS.max_document_bytes:
        assert skip is not None and skip.reason == SkipReason.TOO_LARGE and "bytes >" in skip.detail
    else:
        assert skip is None
    started = time.monotonic()
    _check(doc, NO_SIZE_LIMIT)  # even past the size limit, chunking would end, in bounded chunks
    assert time.monotonic() - started < SECONDS_PER_NASTY


def test_a_parse_past_its_deadline_falls_back_to_line_chunks():
    content = "x = " + "(" * 200_000 + ")" * 200_000 + "\n" + "def f():\n    return 1\n" * 50
    tight = ChunkLimits(max_document_bytes=10**9, max_chunk_chars=16_000, parse_seconds=0.001)
    fallback = chunk_document(_document("p.py", content), limits=tight)
    assert fallback and all(c.symbol in ("", "p") for c in fallback)  # line chunks carry the module only
    relaxed = chunk_document(_document("p.py", content), limits=NO_SIZE_LIMIT)
    assert any(c.symbol == "p.f" for c in relaxed)  # with time to parse, the symbols are there
