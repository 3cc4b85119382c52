"""Chunking: symbols per language, splitting and merging, prose sections, fallbacks, coverage, ids."""
from __future__ import annotations

import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.chunking import chunk_document
from indexer.chunking.symbols import thread_parser
from indexer.models import Access, Chunk, Document

ACCESS = Access.of("group:dev", "user:ann")


def doc(path: str, content: str, language: str = "", kind: str = "code", title: str = "") -> Document:
    return Document(id=f"repo:{path}", source="repo", path=path, content=content, version="v1", access=ACCESS,
                    kind=kind, language=language, title=title)


def chunks_of(path: str, content: str, **options: int) -> list[Chunk]:
    return chunk_document(doc(path, textwrap.dedent(content).lstrip("\n")), **options)


def assert_covers(text: str, chunks: list[Chunk], max_lines: int) -> None:
    """Every non-blank line is in exactly one chunk; chunks are ordered, trimmed and within bounds."""
    lines = text.split("\n")
    owner = [0] * len(lines)
    for chunk in chunks:
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.end_line - chunk.start_line + 1 <= max_lines
        assert chunk.content == "\n".join(lines[chunk.start_line - 1:chunk.end_line])
        assert chunk.content.split("\n")[0].strip() and chunk.content.split("\n")[-1].strip()
        for row in range(chunk.start_line - 1, chunk.end_line):
            owner[row] += 1
    assert [c.start_line for c in chunks] == sorted(c.start_line for c in chunks)
    assert all(owner[row] == 1 for row, line in enumerate(lines) if line.strip())
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


PYTHON = '''
import time

class Retry(Base):
    def __init__(self, attempts): self.attempts = attempts
    @staticmethod
    def backoff(attempt): return 2 ** attempt

def helper(): return 1
'''
JAVASCRIPT = '''
import x from "y";
export class Retry extends Base {
  constructor(attempts) { this.attempts = attempts; }
  backoff(attempt) { return 2 ** attempt; }
}
export const helper = (a) => a;
'''
TYPESCRIPT = '''
export interface Options { attempts: number; }
export class Retry {
  constructor(private attempts: number) {}
  backoff(attempt: number): number { return 2 ** attempt; }
}
namespace Util { export function helper(): void {} }
'''
TSX = '''
import React from "react";
export function View(props: Props) { return <div>{props.name}</div>; }
export const Other = () => <span />;
'''
GO = '''
package retry
import "time"
type Retry struct { Attempts int }
func (r *Retry) Backoff(attempt int) time.Duration { return time.Second }
func Helper() int { return 1 }
'''
JAVA = '''
package com.example;
public class Retry extends Base {
    public Retry(int attempts) { this.attempts = attempts; }
    @Override
    public long backoff(int attempt) { return 1L << attempt; }
}
'''
RUST = '''
use std::time::Duration;
pub struct Retry { attempts: u32 }
impl Retry {
    pub fn backoff(&self, attempt: u32) -> Duration { Duration::from_secs(1) }
    pub fn reset(&mut self) { self.attempts = 0; }
}
pub fn helper() -> u32 { 1 }
'''
C = '''
#include <stdio.h>
struct retry { int attempts; };
static long backoff(struct retry *r, int attempt) { return 1L << attempt; }
int helper(void) { return 1; }
'''
CPP = '''
#include <chrono>
namespace net {
class Retry : public Base {
 public:
  long backoff(int attempt) const { return 1L << attempt; }
};
long Retry::total() { return 0; }
}
'''
CSHARP = '''
using System;
namespace Net {
    public class Retry : Base {
        public Retry(int attempts) { Attempts = attempts; }
        public long Backoff(int attempt) { return 1L << attempt; }
    }
}
'''
RUBY = '''
require "time"
module Net
  class Retry < Base
    def initialize(attempts) = @attempts = attempts
    def backoff(attempt) = 2**attempt
  end
end
'''
PHP = '''
<?php
namespace Net;
class Retry extends Base {
    public function __construct($attempts) { $this->attempts = $attempts; }
    public function backoff($attempt) { return 2 ** $attempt; }
}
function helper() { return 1; }
'''


def symbols(path: str, content: str) -> list[str]:
    """Chunk symbols with tiny limits, so every definition (and each method of a class) stands alone."""
    return [c.symbol for c in chunks_of(path, content, max_lines=3, min_lines=1)]


@pytest.mark.parametrize("path, source, expected", [
    ("pkg/retry.py", PYTHON, ["retry", "retry.Retry", "retry.Retry.__init__", "retry.Retry.backoff", "retry.helper"]),
    ("web/retry.js", JAVASCRIPT, ["retry", "retry.Retry", "retry.Retry.constructor", "retry.Retry.backoff",
                                  "retry.helper"]),
    ("web/retry.ts", TYPESCRIPT, ["retry.Options", "retry.Retry", "retry.Retry.constructor", "retry.Retry.backoff",
                                  "retry.Util"]),
    ("web/view.tsx", TSX, ["view", "view.View", "view.Other"]),
    ("x/anything.go", GO, ["retry", "retry.Retry", "retry.Retry.Backoff", "retry.Helper"]),  # the package names it
    ("src/Retry.java", JAVA, ["Retry", "Retry", "Retry.Retry", "Retry.backoff"]),
    ("src/retry.rs", RUST, ["retry", "retry.Retry", "retry.Retry", "retry.Retry.backoff", "retry.Retry.reset",
                            "retry.helper"]),
    ("src/retry.c", C, ["retry", "retry.retry", "retry.backoff", "retry.helper"]),
    ("src/retry.cpp", CPP, ["retry", "retry.net", "retry.net.Retry", "retry.net.Retry.backoff",
                            "retry.net.Retry.total"]),
    ("src/Retry.cs", CSHARP, ["Retry", "Net", "Net.Retry", "Net.Retry.Retry", "Net.Retry.Backoff", "Net"]),
    ("lib/retry.rb", RUBY, ["retry", "retry.Net", "retry.Net.Retry", "retry.Net.Retry.initialize",
                            "retry.Net.Retry.backoff", "retry.Net"]),
    ("src/Retry.php", PHP, ["Retry", "Retry", "Retry.__construct", "Retry.backoff", "helper"]),
])
def test_symbol_paths_per_language(path: str, source: str, expected: list[str]) -> None:
    assert symbols(path, source) == expected
    assert_covers(textwrap.dedent(source).lstrip("\n"), chunks_of(path, source, max_lines=3, min_lines=1), 3)


def test_whole_small_file_is_one_chunk_with_path_header() -> None:
    [chunk] = chunks_of("pkg/retry.py", PYTHON)
    assert (chunk.start_line, chunk.end_line, chunk.header) == (1, 8, "pkg/retry.py")
    assert chunk.symbol == "retry.Retry"  # imports merge into the first definition
    assert (chunk.kind, chunk.language, chunk.acl) == ("code", "python", tuple(ACCESS.acl()))


def test_split_method_headers_carry_enclosing_signatures() -> None:
    statements = "\n".join(f"        step_{i} = attempt * {i}" for i in range(30))
    source = f"class Retry(Base):\n    @staticmethod\n    def backoff(self, attempt):\n{statements}\n        return 1\n"
    chunks = chunk_document(doc("pkg/retry.py", source), max_lines=12, min_lines=4)
    assert chunks[0].content.startswith("class Retry(Base):\n    @staticmethod\n    def backoff")
    assert chunks[0].header == "pkg/retry.py"  # it shows both signatures itself
    assert {c.symbol for c in chunks} == {"retry.Retry.backoff"}
    assert {c.header for c in chunks[1:]} == {"pkg/retry.py\nclass Retry(Base):\n    def backoff(self, attempt):"}
    assert_covers(source, chunks, 12)


def test_large_function_splits_at_statement_boundaries() -> None:
    blocks = [f"    if x == {i}:\n        y = {i}\n        z = y * 2\n" for i in range(30)]
    source = "def big(x):\n" + "".join(blocks) + "    return x\n"
    chunks = chunk_document(doc("m.py", source), max_lines=20, min_lines=8)
    lines = source.split("\n")
    assert len(chunks) > 1 and {c.symbol for c in chunks} == {"m.big"}
    for chunk in chunks[1:]:
        assert lines[chunk.start_line - 1].startswith("    if ") or lines[chunk.start_line - 1] == "    return x"
    assert chunks[0].start_line == 1 and chunks[-1].end_line == len(lines) - 1
    assert_covers(source, chunks, 20)


def test_statement_larger_than_a_chunk_splits_inside_it() -> None:
    body = "".join(f"        total += {i}\n" for i in range(100))
    source = f"def run(items):\n    total = 0\n    for item in items:\n{body}    return total\n"
    chunks = chunk_document(doc("m.py", source), max_lines=30, min_lines=8)
    assert len(chunks) >= 4 and {c.symbol for c in chunks} == {"m.run"}
    assert_covers(source, chunks, 30)


def test_small_neighbours_merge_into_groups() -> None:
    source = "".join(f"def f{i}(a):\n    return a + {i}\n\n\n" for i in range(30))
    chunks = chunk_document(doc("m.py", source), max_lines=80, min_lines=8)
    assert 2 <= len(chunks) <= 4
    assert all(c.end_line - c.start_line + 1 <= 40 for c in chunks[:-1])  # separate symbols stop at half size
    assert chunks[0].symbol == "m.f0"
    assert_covers(source, chunks, 80)


def test_comments_and_decorators_stay_with_their_definition() -> None:
    source = "x = 1\n\n# Explains f.\n# More.\n@cache\ndef f():\n    return 1\n"
    chunks = chunk_document(doc("m.py", source), max_lines=5, min_lines=1)
    assert [(c.symbol, c.start_line) for c in chunks] == [("m", 1), ("m.f", 3)]


MARKDOWN = '''---
title: Guide
---
Intro text.

# Install

## Offline

Download the wheel.

```bash
# not a heading
pip install x
```

Setext Title
============

Body under setext.

## Empty parent

### Child

child body
'''


def test_markdown_sections_and_breadcrumbs() -> None:
    chunks = chunk_document(doc("docs/guide.md", MARKDOWN, kind="doc"), max_lines=8, min_lines=1)
    assert [(c.symbol, c.header) for c in chunks] == [
        ("", "docs/guide.md"),
        ("Install", "docs/guide.md\n# Install"),
        ("Install > Offline", "docs/guide.md\n# Install > ## Offline"),
        ("Setext Title", "docs/guide.md\n# Setext Title"),
        ("Setext Title > Empty parent > Child", "docs/guide.md\n# Setext Title > ## Empty parent > ### Child"),
    ]
    assert chunks[2].content.endswith("```")  # the fenced `# not a heading` stays inside its section
    assert_covers(MARKDOWN, chunks, 8)


def test_long_markdown_section_splits_at_paragraphs() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} line one.\nParagraph {i} line two." for i in range(40))
    text = f"# Big\n\n{paragraphs}\n"
    chunks = chunk_document(doc("docs/big.md", text), max_lines=20, min_lines=4)
    assert len(chunks) > 3 and {c.header for c in chunks} == {"docs/big.md\n# Big"}
    assert all(c.content.split("\n")[-1].endswith("line two.") for c in chunks)
    assert_covers(text, chunks, 20)


RST = '''=====
Title
=====

Intro.

Install
-------

Steps.

Offline
~~~~~~~

More.

Usage
-----

Use it.

----

After the transition.
'''


def test_rst_sections_follow_adornment_levels() -> None:
    chunks = chunk_document(doc("docs/guide.rst", RST, kind="doc"), max_lines=8, min_lines=1)
    assert [c.symbol for c in chunks] == ["Title", "Title > Install", "Title > Install > Offline", "Title > Usage"]
    assert chunks[2].header == "docs/guide.rst\nTitle > Install > Offline"
    assert chunks[-1].content.endswith("After the transition.")
    assert_covers(RST, chunks, 8)


def test_issue_chunks_are_headed_by_key_and_title() -> None:
    body = "Login fails.\n\nh2. Steps\n\nOpen Safari.\n\n## Expected\n\nIt works.\n"
    issue = doc("PROJ-12", body, kind="issue", title="Login fails on Safari")
    chunks = chunk_document(issue, max_lines=4, min_lines=1)
    assert [c.header for c in chunks] == ["PROJ-12: Login fails on Safari", "PROJ-12: Login fails on Safari\n## Steps",
                                          "PROJ-12: Login fails on Safari\n## Expected"]
    assert {c.kind for c in chunks} == {"issue"}


def test_plain_text_is_cut_at_blank_lines() -> None:
    text = "\n\n".join("\n".join(f"key{i}_{j}: {j}" for j in range(7)) for i in range(10)) + "\n"
    chunks = chunk_document(doc("conf/app.yaml", text, kind="text"), max_lines=20, min_lines=4)
    assert all(c.end_line - c.start_line + 1 in (7, 15) for c in chunks)  # whole paragraphs
    assert {(c.symbol, c.header) for c in chunks} == {("", "conf/app.yaml")}
    assert_covers(text, chunks, 20)


def test_broken_file_keeps_symbols_where_it_parses() -> None:
    source = "def ok():\n    return 1\n\n\ndef broken(:\n    return (\n\n\ndef fine():\n    return 2\n"
    chunks = chunk_document(doc("m.py", source), max_lines=3, min_lines=1)
    assert "m.ok" in {c.symbol for c in chunks}
    assert_covers(source, chunks, 3)


def test_mostly_broken_file_falls_back_to_line_chunks() -> None:
    source = "".join(f"{{% if x{i} %}} )( ]] def class {{{{ y }}}} :\n" for i in range(50))
    chunks = chunk_document(doc("m.py", source), max_lines=10, min_lines=2)
    assert len(chunks) == 5 and {c.symbol for c in chunks} == {"m"}
    assert_covers(source, chunks, 10)


def test_deeply_nested_code_does_not_recurse_out() -> None:
    chain = "".join(f"  }} else if (x == {i}) {{\n    y = {i};\n" for i in range(1500))
    source = f"int f(int x) {{\n  int y = 0;\n  if (x == -1) {{\n    y = -1;\n{chain}  }}\n  return y;\n}}\n"
    chunks = chunk_document(doc("deep.c", source))
    assert {c.symbol for c in chunks} == {"deep.f"}
    assert_covers(source, chunks, 80)


def test_identical_chunks_get_distinct_ids() -> None:
    function = "def same():\n" + "".join(f"    x = {i}\n" for i in range(10))
    chunks = chunk_document(doc("m.py", function + "\n\n" + function), max_lines=80, min_lines=8)
    assert [c.occurrence for c in chunks] == [0, 1]
    assert chunks[0].embed_text() == chunks[1].embed_text()
    assert chunks[0].id != chunks[1].id


@pytest.mark.parametrize("content", ["", "\n\n", "   \n\t\n"])
def test_empty_or_blank_document_has_no_chunks(content: str) -> None:
    assert chunk_document(doc("m.py", content)) == []


def test_parsers_are_cached_per_language() -> None:
    assert thread_parser("python") is thread_parser("python")
    assert thread_parser("python") is not thread_parser("go")


def test_thousand_line_file_is_fast() -> None:
    source = "".join(f"class C{i}:\n" + "".join(f"    def m{j}(self, a):\n        return a + {j}\n\n"
                                                 for j in range(8)) + "\n" for i in range(40))
    started = time.perf_counter()
    chunks = chunk_document(doc("big.py", source))
    assert time.perf_counter() - started < 1.0
    assert len(source.split("\n")) > 1000
    assert_covers(source, chunks, 80)


CODE_TOKENS = ["def f(x):", "class A:", "    return x", "    pass", "if x:", "{", "}", "int g() {", "#", "# T",
               "Title", "=====", "-----", "```", "x = [", "]", "(", ")", '"""', "", " ", "\t", "é", "a b c"]


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.sampled_from(CODE_TOKENS), max_size=120),
       path=st.sampled_from(["m.py", "m.js", "m.c", "m.go", "m.rb", "doc.md", "doc.rst", "notes.txt", "x.yaml"]),
       max_lines=st.integers(min_value=3, max_value=30), min_lines=st.integers(min_value=1, max_value=10))
def test_every_line_is_covered(lines: list[str], path: str, max_lines: int, min_lines: int) -> None:
    text = "\n".join(lines)
    chunks = chunk_document(doc(path, text), max_lines=max_lines, min_lines=min_lines)
    assert_covers(text, chunks, max_lines)
    assert bool(chunks) == bool(text.strip())
