"""Declarations rank below the implementation, copies below the first: on chunks the real chunker cuts."""
from __future__ import annotations

import pytest

from indexer.chunking import chunk_document
from indexer.models import Access, Document
from retrieval.hits import Candidate
from retrieval.packing import cap_per_file
from retrieval.redundancy import declarations, duplicates_last, implementations_first, may_declare

PARSE_PY = '''"""Parsing."""
from typing import overload
import typing


@overload
def parse(value: str) -> int:
    ...


@overload
def parse(value: bytes) -> int:
    ...


@typing.overload
def parse(value: None) -> None: ...


def parse(value):
    """Parse a value into an int, decoding bytes first and passing None through unchanged."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii")
    text = value.strip()
    if not text:
        raise ValueError("empty")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    total = 0
    for ch in digits:
        total = total * 10 + (ord(ch) - 48)
    return sign * total
'''

PAD_TS = '''export function pad(value: string, width: number): string;
export function pad(value: number, width: number): string;
export function pad(value: string | number, width: number, fill?: string): string;

export function pad(value: string | number, width: number, fill = " "): string {
  let text = String(value);
  while (text.length < width) {
    text = fill + text;
  }
  if (text.length > width) {
    text = text.slice(text.length - width);
  }
  return text;
}
'''


def chunks_of(path: str, text: str, source: str = "s", **sizes) -> list[Candidate]:
    doc = Document(id=f"{source}:{path}", source=source, path=path, content=text, version="1",
                   access=Access.of("public"))
    return [Candidate(chunk_id=f"{path}#{c.ordinal}", doc_id=doc.id, source=source, path=path,
                      start_line=c.start_line, end_line=c.end_line, content=c.content, symbol=c.symbol,
                      language=c.language) for c in chunk_document(doc, **sizes)]


def cand(path: str, content: str, score: float, source: str = "s", symbol: str = "", start: int = 1) -> Candidate:
    return Candidate(chunk_id=f"{source}:{path}#{start}", doc_id=f"{source}:{path}", source=source, path=path,
                     start_line=start, end_line=start + content.count("\n"), content=content, symbol=symbol,
                     score=score)


def ranked(*cands: Candidate) -> list[Candidate]:
    """Candidates scored in the order given, best first."""
    return [c.with_score(1.0 - i / 10) for i, c in enumerate(cands)]


def order(cands: list[Candidate]) -> list[str]:
    return [c.chunk_id for c in cands]


@pytest.mark.parametrize("path, text, stubs, implemented", [
    pytest.param("a.py", "@overload\ndef f(x: int) -> int: ...\n@typing.overload\ndef f(x: str) -> str: ...\n"
                 "def g():\n    pass", {"f"}, {"g"}, id="python-overloads"),
    pytest.param("a.py", "@overload\ndef f(x: int) -> int: ...\n\ndef f(x):\n    return x", {"f"}, {"f"},
                 id="python-overloads-with-their-implementation"),
    pytest.param("a.py", "@t.overload  # narrow\n# bytes too\nasync def f(x): ...", {"f"}, set(),
                 id="python-overload-any-spelling"),
    pytest.param("a.py", "@property\ndef overload(self):\n    return self._overload", set(), {"overload"},
                 id="python-not-an-overload"),
    pytest.param("a.pyi", "def f(x: int) -> int: ...\nclass A:\n    def m(self) -> None: ...", {"f", "A", "m"},
                 set(), id="python-stub-file"),
    pytest.param("a.ts", "export function pad(v: string): string;\nexport function pad(v: any): string {\n"
                 "  return v;\n}", {"pad"}, {"pad"}, id="ts-signatures-and-body"),
    pytest.param("a.ts", "  get(key: string): string;\n  get(key: number): { a: number };\n"
                 "  set(k: string, v: string): this {\n    store(k, v);\n    if (k) {\n    }\n  }",
                 {"get"}, {"set"}, id="ts-method-overloads-calls-are-not-signatures"),
    pytest.param("a.ts", "function f(a: string): Promise<\n  Foo\n>;\nfunction g(a): () => {a: T}\n"
                 "function h()\n{\n}", {"f", "g"}, {"h"}, id="ts-multi-line-and-arrow-return-types"),
    pytest.param("a.ts", "export function f(a: string): string\nexport function f(a: number): string\n"
                 "export function f(a: any): string {\n  return a\n}", {"f"}, {"f"}, id="ts-without-semicolons"),
    pytest.param("a.d.ts", "export declare function f(a: string): string;\nexport declare class Box {\n"
                 "  get(k: string): string;\n}", {"f", "Box", "get"}, set(), id="ts-declaration-file"),
    pytest.param("a.js", "export function f(a) {\n  return g(a);\n}\nconst x = y(1);", set(), {"f"},
                 id="javascript-calls"),
    pytest.param("a.go", "func f(a int) int;", set(), set(), id="other-languages-declare-nothing"),
])
def test_declarations(path, text, stubs, implemented):
    found = declarations(cand(path, text, 1.0))
    assert (set(found.stubs), set(found.implemented)) == (stubs, implemented)
    assert may_declare(cand(path, text, 1.0)) or not found.only_declared


def test_overload_stubs_move_just_below_the_implementation():
    stubs, impl = chunks_of("pkg/parse.py", PARSE_PY)
    assert "@overload" in stubs.content and "def parse(value):" in impl.content  # the chunker keeps them apart
    other = cand("pkg/other.py", "def unrelated():\n    pass", 0.0)
    before = ranked(stubs, other, impl, cand("pkg/last.py", "x = 1", 0.0))
    after = implementations_first(before)
    assert order(after) == [other.chunk_id, impl.chunk_id, stubs.chunk_id, "s:pkg/last.py#1"]
    moved = after[2]
    assert after[1].score > moved.score > after[3].score and moved.features["declaration_below"] == 1.0


def test_stubs_below_their_implementation_and_without_one_stay_put():
    stubs, impl = chunks_of("pkg/parse.py", PARSE_PY)
    already = ranked(impl, stubs)
    assert order(implementations_first(already)) == order(already)
    alone = ranked(stubs, cand("pkg/other.py", "def parse_other():\n    pass", 0.0))
    assert implementations_first(alone) == alone


def test_typescript_overload_signatures_move_below_the_body():
    chunks = chunks_of("src/pad.ts", PAD_TS, max_lines=8, min_lines=2)
    signatures = [c for c in chunks if "{" not in c.content]
    body = [c for c in chunks if "export function pad(value: string | number, width: number, fill" in c.content]
    assert signatures and body and signatures[0] is not body[0]
    after = implementations_first(ranked(signatures[0], cand("src/x.ts", "call(1);", 0.0), body[0]))
    assert order(after)[:3] == ["s:src/x.ts#1", body[0].chunk_id, signatures[0].chunk_id]


@pytest.mark.parametrize("stub_path, impl_path", [
    ("tinyhttp/hooks.pyi", "tinyhttp/hooks.py"),
    ("web/fetch.d.ts", "web/fetch.js"),
    ("web/fetch.d.ts", "web/fetch.ts"),
])
def test_a_stub_file_ranks_below_the_implementation_in_the_same_source(stub_path, impl_path):
    python = stub_path.endswith(".pyi")
    stub = cand(stub_path, "def dispatch(key: str) -> None: ..." if python else
                "export declare function dispatch(key: string): void;", 0.0, symbol="hooks.dispatch")
    impl = cand(impl_path, "def dispatch(key):\n    return run(key)" if python else
                "export function dispatch(key) {\n  return run(key);\n}", 0.0, symbol="hooks.dispatch")
    middle = cand("tinyhttp/models.py", "class Response:\n    pass", 0.0)
    assert order(implementations_first(ranked(stub, middle, impl))) == [middle.chunk_id, impl.chunk_id, stub.chunk_id]
    elsewhere = cand(impl_path, impl.content, 0.0, source="other", symbol="hooks.dispatch")
    unmoved = ranked(stub, middle, elsewhere)
    assert implementations_first(unmoved) == unmoved  # another source's file is not this stub's implementation


def test_a_piece_of_a_long_implementation_counts_as_the_implementation():
    """A function longer than a chunk is cut into pieces under its symbol; the piece without the `def`
    line still implements it."""
    stub = cand("pkg/parse.pyi", "def parse(value: str) -> int: ...", 0.0, symbol="parse.parse")
    piece = cand("pkg/parse.py", "    for ch in digits:\n        total += 1\n    return total", 0.0,
                 symbol="parse.parse", start=40)
    assert order(implementations_first(ranked(stub, piece))) == [piece.chunk_id, stub.chunk_id]


def test_stubs_no_longer_crowd_the_implementation_out_of_a_files_places():
    """Four stub chunks above the implementation, three places per file: the implementation gets one."""
    stubs = [cand("pkg/parse.py", f"@overload\ndef parse(value: T{i}) -> int: ...", 0.0, start=1 + 3 * i)
             for i in range(4)]
    impl = cand("pkg/parse.py", "def parse(value):\n    return int(value)", 0.0, start=20)
    before = ranked(*stubs, impl)
    assert impl.chunk_id not in order(cap_per_file(before, 3))
    capped = cap_per_file(implementations_first(before), 3)
    assert order(capped)[0] == impl.chunk_id and len(capped) == 3


def test_an_exact_copy_moves_below_all_others():
    text = 'def where():\n    """The CA bundle."""\n    return os.path.join(HERE, "cacert.pem")'
    original = cand("tinyhttp/certs.py", text, 0.0)
    copy = cand("tinyhttp/packages/certifi/core.py", text, 0.0)
    rest = [cand(f"tinyhttp/m{i}.py", f"x = {i}", 0.0) for i in range(3)]
    after = duplicates_last(ranked(original, copy, *rest))
    assert order(after) == [original.chunk_id, *(r.chunk_id for r in rest), copy.chunk_id]
    assert after[-1].score < after[-2].score and after[-1].features["duplicate"] == 1.0


def test_of_equal_copies_the_shortest_path_stays_first():
    text = "def where():\n    return CA_BUNDLE"
    vendored = cand("tinyhttp/packages/certifi/core.py", text, 0.7)
    original = cand("tinyhttp/certs.py", text, 0.7)
    after = duplicates_last([vendored, original, cand("tinyhttp/m.py", "x = 1", 0.5)])
    assert order(after) == [original.chunk_id, "s:tinyhttp/m.py#1", vendored.chunk_id]


def test_without_copies_nothing_moves():
    cands = ranked(cand("a.py", "x = 1", 0.0), cand("b.py", "x = 2", 0.0))
    assert duplicates_last(cands) == cands


@pytest.mark.parametrize("signatures", ["function f(a);\nfunction f(a, b);", "function f(a)\nfunction f(a, b)"])
def test_untyped_signatures_are_seen_too(signatures):
    stub = cand("a.ts", signatures, 0.0)
    impl = cand("a.ts", "function f(a, b) {\n  return a\n}", 0.0, start=3)
    assert may_declare(stub) and declarations(stub).only_declared == {"f"}
    assert order(implementations_first(ranked(stub, impl))) == [impl.chunk_id, stub.chunk_id]
