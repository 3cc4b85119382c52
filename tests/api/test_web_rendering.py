"""What the web UI renders on the server: query terms marked as whole words or identifier parts, and
Markdown made safe (escaped HTML, no script links, no remote fetches) with its source lines."""
from __future__ import annotations

import re

import pytest

from api.highlight import highlight_lines, query_terms
from api.markdown_view import is_markdown, render_markdown
from api.web_search import context_lines
from indexer.catalog.schema import ChunkRecord


def marked(query: str, line: str) -> list[str]:
    return re.findall(r"<mark>(.*?)</mark>", "".join(highlight_lines(line, "", "notes.txt", query_terms(query))))


@pytest.mark.parametrize(("query", "line", "expected"), [
    ("parent teardown", "the apparent parent teardown", ["parent", "teardown"]),  # not inside `apparent`
    ("down", "teardown tearDown tear_down", ["Down", "down"]),  # identifier parts, never part of a word
    ("are the pants", "we are parents of the pants", ["pants"]),  # stop-words are not marked
    ("retry_with_backoff", "retry_with_backoff() and retryWithBackoff", ["retry_with_backoff", "retryWithBackoff"]),
    ("the of and", "the end", ["the"]),  # a query of stop-words only searches (and marks) them
    ("", "anything", []),
])
def test_whole_query_terms_are_marked(query, line, expected):
    assert marked(query, line) == expected


def test_marked_text_stays_escaped():
    assert highlight_lines("<b>parent</b>", "", "x.txt", query_terms("parent")) == ["&lt;b&gt;<mark>parent</mark>&lt;/b&gt;"]


def test_a_hit_shows_the_lines_with_most_terms_numbered():
    content = "\n".join(["import os", "", "", "def ledger_total(ledger):", "    return sum(ledger)", "", "x = 1"])
    row = ChunkRecord(id="c", doc_id="d", source="s", path="a.py", ordinal=0, start_line=40, end_line=46,
                      symbol="", kind="code", language="python", content=content, header="", acl=(), occurrence=0,
                      content_hash="", title="", url="")
    lines = context_lines(row, query_terms("ledger total"), size=3)
    assert [line["n"] for line in lines] == [43, 44, 45]
    assert "<mark>ledger</mark>" in lines[0]["html"]
    assert [line["n"] for line in context_lines(row, query_terms("absent"), size=3)] == [40, 41, 42]


def test_markdown_is_rendered_safely_with_its_lines():
    out = render_markdown("# T\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://a.example)\n\n"
                          "![pic](https://cdn.example/p.png)\n\n```python\ndef f(): pass\n```\n")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'href="javascript' not in out
    assert '<a href="https://a.example" rel="noopener noreferrer">ok</a>' in out
    assert "<img" not in out and '<a class="image-link" href="https://cdn.example/p.png"' in out
    assert '<h1 data-lines="1-1">T</h1>' in out
    assert '<span class="k">def</span>' in out


@pytest.mark.parametrize(("kind", "language", "path", "expected"), [
    ("doc", "markdown", "README.md", True), ("issue", "", "PROJ-1", True), ("page", "markdown", "Home", True),
    ("code", "python", "a.py", False), ("doc", "rst", "index.rst", False), ("doc", "", "NOTES.MD", True),
])
def test_what_is_rendered(kind, language, path, expected):
    assert is_markdown(kind, language, path) is expected
