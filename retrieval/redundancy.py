"""Redundant chunks rank below what they repeat: declarations below the implementation, copies below the first.

A Python `@overload` stub, a TypeScript overload signature and a stub file (`.pyi`, `.d.ts`) declare a
function the implementation also shows, with more of what the reader needs; BM25 likes them (the name
again and again, in few lines) and they crowd the implementation out. A chunk whose text another
candidate already has (a vendored copy, a file copied between packages) adds nothing to a prompt.
Both are decided from the candidates' own text and paths, so indexes built before this stage get it too."""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.hits import Candidate

# A moved candidate goes this far below the one it must follow: far less than any real score gap.
STEP = 1e-9

_PY_STUB_FILES = (".pyi",)
_TS_STUB_FILES = (".d.ts", ".d.mts", ".d.cts")
_PY_FILES = (".pyi", ".py")
_TS_FILES = (*_TS_STUB_FILES, ".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")

# In order: decorators (an `@overload` in any spelling: `typing.overload`, `t.overload`), defs and classes.
_PY_HEADS = re.compile(
    r"^[ \t]*(?:(@[ \t]*(?:[A-Za-z_]\w*[ \t]*\.[ \t]*)*overload\b)|@|(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)"
    r"|class[ \t]+([A-Za-z_]\w*))", re.MULTILINE)
# A line ending in a return type (`): str;`, `): Promise<T>`) or a function head without a body on it
# (`function f(a);`): maybe a signature.
_TS_SIGNATURE_HINT = re.compile(r"\)[ \t]*:[^\n{]*$|\bfunction\b[^\n{]*\)[ \t]*;?[ \t]*$", re.MULTILINE)
_TS_FUNCTION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:declare[ \t]+)?(?:async[ \t]+)?function[ \t]*\*?[ \t]*"
    r"([A-Za-z_$][\w$]*)", re.MULTILINE)
_TS_METHOD = re.compile(
    r"^[ \t]*(?:(?:public|private|protected|static|async|override|readonly|abstract|declare)[ \t]+)*"
    r"([A-Za-z_$][\w$]*)[ \t]*\??[ \t]*(?=[<(])", re.MULTILINE)
_TS_NOT_METHODS = frozenset({
    "if", "for", "while", "switch", "catch", "return", "new", "typeof", "await", "yield", "super", "this", "do",
    "else", "function", "with", "void", "delete", "throw", "case", "in", "of", "instanceof",
})
_TS_DECLARED = re.compile(r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:declare[ \t]+)?(?:abstract[ \t]+)?"
                          r"(?:class|interface|enum|type|namespace|module)[ \t]+([A-Za-z_$][\w$]*)", re.MULTILINE)


@dataclass(frozen=True)
class Declarations:
    """What a chunk says about the functions it names: declared without a body, or implemented."""

    stubs: frozenset[str]
    implemented: frozenset[str]

    @property
    def only_declared(self) -> frozenset[str]:
        return self.stubs - self.implemented


NONE = Declarations(frozenset(), frozenset())


@functools.lru_cache(maxsize=1 << 14)
def module_key(path: str) -> tuple[str, str] | None:
    """The module a file implements or declares, so `x.pyi` meets `x.py` and `x.d.ts` meets `x.js`:
    (family, path without its extension); None for other languages."""
    lower = path.lower()
    for family, suffixes in (("py", _PY_FILES), ("ts", _TS_FILES)):
        for suffix in suffixes:
            if lower.endswith(suffix):
                return family, path[:len(path) - len(suffix)]
    return None


def is_stub_file(path: str) -> bool:
    return path.lower().endswith(_PY_STUB_FILES + _TS_STUB_FILES)


def may_declare(cand: Candidate) -> bool:
    """A cheap necessary condition for `declarations(cand).only_declared`: a stub file, a Python chunk
    naming `overload`, or a TypeScript/JavaScript one with a line ending in a return type or a bodiless
    function head."""
    key = module_key(cand.path)
    if key is None:
        return False
    if is_stub_file(cand.path):
        return True
    return "overload" in cand.content if key[0] == "py" else bool(_TS_SIGNATURE_HINT.search(cand.content))


def declarations(cand: Candidate) -> Declarations:
    """The names the chunk declares without a body and those it implements (Python and TypeScript or
    JavaScript files; other languages declare nothing here). In a stub file everything is a declaration."""
    key = module_key(cand.path)
    if key is None:
        return NONE
    found = _python(cand.content) if key[0] == "py" else _typescript(cand.content)
    if is_stub_file(cand.path):
        last = cand.symbol.rsplit(".", 1)[-1]
        return Declarations(found.stubs | found.implemented | ({last} if last else set()), frozenset())
    return found


def _python(text: str) -> Declarations:
    """`def f` under an `@overload` is a stub; any other `def f` or `class f` implements f. (Only
    decorators and comments may stand between a decorator and its definition.)"""
    stubs: set[str] = set()
    done: set[str] = set()
    overloaded = False
    for match in _PY_HEADS.finditer(text):
        overload, function, cls = match.groups()
        if overload:
            overloaded = True
        elif function:
            (stubs if overloaded else done).add(function)
            overloaded = False
        elif cls:
            done.add(cls)
            overloaded = False
    return Declarations(frozenset(stubs), frozenset(done))


def _typescript(text: str) -> Declarations:
    """A function or method head ending in `;` (or a line break) before any body is an overload
    signature; one followed by a `{` body implements it. A method head counts as a signature only
    with a return type (`f(x);` is a call), and classes, interfaces and types are implemented where
    they are declared."""
    if "(" not in text:
        return NONE
    stubs: set[str] = set()
    done = {m.group(1) for m in _TS_DECLARED.finditer(text)}
    for pattern, typed in ((_TS_FUNCTION, False), (_TS_METHOD, True)):
        for match in pattern.finditer(text):
            name = match.group(1)
            if typed and name in _TS_NOT_METHODS:
                continue
            body = _has_body(text, match.end(), typed)
            if body is True:
                done.add(name)
            elif body is False:
                stubs.add(name)
    return Declarations(frozenset(stubs), frozenset(done))


_OPEN = {"(": ")", "[": "]", "{": "}", "<": ">"}
_TYPE_BEFORE_BRACE = frozenset(":|&,(<[=")  # a `{` after these starts an object type, not a body


def _has_body(text: str, pos: int, typed: bool) -> bool | None:
    """After a function's name: True when a `{` body follows its parameters (and return type), False when
    the head ends without one (`;`, or a line break where the return type is complete), None when this
    is no function head (a call, an expression) or the text ends first. `typed`: a method head, which
    ends without a body only after a return type (`f(x);` is a call)."""
    pos = _skip_generics(text, pos)
    if pos >= len(text) or text[pos] != "(":
        return None
    closed = _closing(text, pos)
    if closed is None:
        return None
    pos = closed
    rest = text[pos:].lstrip()
    if rest.startswith("{"):
        return True
    if rest.startswith(":"):
        return _after_return_type(text, len(text) - len(rest) + 1)
    if typed or not rest:
        return None
    if rest.startswith(";") or "\n" in text[pos:len(text) - len(rest)]:
        return False  # `function f(a)` ending its statement (a line break ends it too)
    return None


def _after_return_type(text: str, pos: int) -> bool | None:
    depth = 0
    last = ":"
    while pos < len(text):
        char = text[pos]
        if depth == 0 and char == ";":
            return False
        if depth == 0 and char == "{" and last not in _TYPE_BEFORE_BRACE and not text[:pos].rstrip().endswith("=>"):
            return True
        if depth == 0 and char == "\n" and last not in _TYPE_BEFORE_BRACE:
            following = text[pos:].lstrip()
            return True if following.startswith("{") else False if last != ":" else None
        if char in "([{<":
            depth += 1
        elif char in ")]}>" and not (char == ">" and text[pos - 1] == "="):
            depth = max(depth - 1, 0)
        if not char.isspace():
            last = char
        pos += 1
    return None


def _skip_generics(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t?":
        pos += 1
    if pos < len(text) and text[pos] == "<":
        end = _closing(text, pos)
        return len(text) if end is None else end
    return pos


def _closing(text: str, pos: int) -> int | None:
    """The index just past the bracket closing the one at `pos` (strings are not looked into)."""
    stack = [_OPEN[text[pos]]]
    pos += 1
    while pos < len(text) and stack:
        char = text[pos]
        if char in _OPEN and (char != "<" or stack[-1] == ">"):
            stack.append(_OPEN[char])
        elif char == stack[-1] and not (char == ">" and text[pos - 1] == "="):
            stack.pop()
        pos += 1
    return pos if not stack else None


def implementations_first(ranked: Sequence[Candidate]) -> list[Candidate]:
    """Every chunk that only declares a function (overload stubs, signatures, a stub file's entry)
    moves to just below the best-ranked candidate implementing it in the same module (`x.pyi` and
    `x.py` are one module), when that implementation ranks below it. Nothing else moves."""
    groups: dict[tuple[str, tuple[str, str]], list[int]] = {}
    for index, cand in enumerate(ranked):
        key = module_key(cand.path)
        if key is not None:
            groups.setdefault((cand.source, key), []).append(index)
    below: dict[int, int] = {}  # stub index → index of the implementation it must follow
    for indexes in groups.values():
        if len(indexes) > 1 and any(may_declare(ranked[i]) for i in indexes):
            below.update(_stub_moves(ranked, indexes))
    if not below:
        return list(ranked)
    return _reorder(ranked, below, "declaration_below")


def _stub_moves(ranked: Sequence[Candidate], indexes: list[int]) -> dict[int, int]:
    found = {i: declarations(ranked[i]) for i in indexes}
    moves = {}
    for i in indexes:
        names = found[i].only_declared
        if not names:
            continue
        impls = [j for j in indexes if j != i and not is_stub_file(ranked[j].path)
                 and _implements(ranked[j], found[j], names)]
        if impls and min(impls) > i:
            moves[i] = min(impls)
    return moves


def _implements(cand: Candidate, found: Declarations, names: frozenset[str]) -> bool:
    """The chunk implements one of `names`: it holds its definition, or it is a piece of one (a long
    function is cut into pieces under its symbol) and does not merely declare it."""
    if found.implemented & names:
        return True
    parts = set(cand.symbol.split(".")[1:])
    return bool(parts & names - found.stubs)


def duplicates_last(ranked: Sequence[Candidate]) -> list[Candidate]:
    """A chunk whose exact text an earlier candidate has moves below all the others (in its order).
    Among copies of equal score, the one with the shortest path counts as the first (a vendored copy
    lives deeper than its original)."""
    order = sorted(range(len(ranked)), key=lambda i: (-ranked[i].score, ranked[i].path.count("/"), i))
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(ranked[i].content, i)
    copies = [i for i, cand in enumerate(ranked) if first[cand.content] != i]
    if not copies:
        return list(ranked)
    originals = [c for i, c in enumerate(ranked) if first[c.content] == i]
    floor = min(c.score for c in originals)
    moved = [ranked[i].scored(min(ranked[i].score, floor) - STEP * (n + 1), {"duplicate": 1.0})
             for n, i in enumerate(copies)]
    return _sorted([*originals, *moved])


def _reorder(ranked: Sequence[Candidate], below: dict[int, int], feature: str) -> list[Candidate]:
    """Candidates in `below` rescored to sit just under the candidate they must follow."""
    out = list(ranked)
    for n, (stub, impl) in enumerate(sorted(below.items())):
        target = ranked[impl].score - STEP * (n + 1)
        out[stub] = ranked[stub].scored(min(ranked[stub].score, target), {feature: 1.0})
    return _sorted(out)


def _sorted(cands: list[Candidate]) -> list[Candidate]:
    return sorted(cands, key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))
