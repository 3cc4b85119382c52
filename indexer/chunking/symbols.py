"""Symbol-aware chunking of source code with tree-sitter: definitions become chunks, large ones split.

A file is laid out level by level. At each level the children of a node are tiled into units that
cover every row: a definition (with the comments and attributes directly above it) is one unit,
every other child is a unit of its own, and a non-definition child longer than max_lines is
replaced by its children. A definition that fits in max_lines becomes one piece; a larger one is
laid out again one level down, under its own symbol path and with its signature in the header.
Small neighbouring units then merge (see `pieces.merge`).

When tree-sitter raises, or ERROR nodes cover more than half the file's rows, the caller falls back
to line chunks: tree-sitter recovers locally from syntax errors, so a few broken lines keep their
file's symbols, but mostly-broken input (a template, another dialect) has no structure to trust.
So it does when parsing and layout together outlast their deadline (`limits.ChunkLimits`).
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tree_sitter import Node, Parser
from tree_sitter_language_pack import get_parser

from indexer.chunking.grammars import GRAMMARS, Grammar
from indexer.chunking.limits import ChunkingTimeout, Deadline
from indexer.chunking.pieces import Limits, Piece, line_ranges, merge, seal, trim

log = logging.getLogger(__name__)

ERROR_SHARE = 0.5  # above this share of rows inside ERROR nodes, use line chunks
MAX_DEPTH = 24  # deeper definitions are laid out as plain statements
SIGNATURE_CHARS = 200
INDENT = "    "
PACKAGE_STEMS = frozenset({"__init__", "index", "mod"})  # files named after their directory
READ_BYTES = 1 << 16  # tree-sitter reads the text through a callback in slices this big

Found = tuple[Node, str, "Node | None"]  # definition node, name, body

# Parsers are cheap to create but not safe to share between threads: one per language per thread.
_parsers = threading.local()


def thread_parser(name: str) -> Parser:
    cache = _parsers.__dict__.setdefault("by_language", {})
    if name not in cache:
        cache[name] = get_parser(name)  # type: ignore[arg-type]
    return cache[name]


def _last_row(node: Node) -> int:
    """The last row holding any of the node's text (a node ending in a newline ends at column 0)."""
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point.row else row


def module_name(path: str) -> str:
    """The module a file's symbols live in: `pkg/retry.py` → `retry`, `pkg/__init__.py` → `pkg`."""
    parts = path.replace("\\", "/").strip("/").split("/")
    stem = parts[-1].lstrip(".").split(".", 1)[0]
    if stem in PACKAGE_STEMS and len(parts) > 1:
        return parts[-2]
    return stem


@dataclass(frozen=True)
class _Scope:
    """Where a level of the layout sits: the enclosing symbol and the headers its pieces get."""

    symbol: str
    header: str  # path plus every enclosing signature
    outer_header: str  # for the piece holding this scope's own signature, which shows it anyway
    sig_row: int = -1
    depth: int = 0

    def header_for(self, start: int) -> str:
        return self.outer_header if start <= self.sig_row else self.header

    def child(self, name: str) -> str:
        return f"{self.symbol}.{name}" if self.symbol else name

    def enter(self, symbol: str, signature: str, sig_row: int) -> _Scope:
        header = f"{self.header}\n{INDENT * self.depth}{signature}"
        return _Scope(symbol, header, self.header, sig_row, self.depth + 1)


# Lines left out of signatures: annotations and attributes (`@Override`, `[Test]`, `#[inline]`) and comments.
_NOT_SIGNATURE = re.compile(r"^\s*(((@[\w.]+(\([^)]*\))?|#?\[[^\]]*\])\s*)+$|#|//|/\*|\*)")


class _Layout:
    """Lays out one parsed file as pieces."""

    def __init__(self, grammar: Grammar, data: bytes, lines: Sequence[str], limits: Limits, module: str,
                 deadline: Deadline):
        self.grammar = grammar
        self.data = data
        self.lines = lines
        self.limits = limits
        self.module = module
        self.deadline = deadline

    def run(self, root: Node, path: str) -> list[Piece]:
        return self._level(root.children, 0, len(self.lines) - 1, _Scope(self.module, path, path))

    def _level(self, nodes: Sequence[Node], lo: int, hi: int, scope: _Scope, body: Node | None = None) -> list[Piece]:
        pieces: list[Piece] = []
        for start, end, found in self._units(self._flatten(nodes, scope, body), lo, hi):
            opener = None
            first = start
            if end - start + 1 > self.limits.max_lines and pieces and self._loose(pieces[-1]):
                # A lone `class A:` or `"""` line opens what follows; cut them together.
                opener = pieces.pop()
                first = opener.start
            pieces.extend(self._unit(first, end, found, scope, opener))
        return merge(pieces, self.limits)

    def _loose(self, piece: Piece) -> bool:
        return not (piece.symbolic or piece.sealed) and piece.lines < self.limits.min_lines

    def _unit(self, start: int, end: int, found: Found | None, scope: _Scope, opener: Piece | None) -> list[Piece]:
        fits = end - start + 1 <= self.limits.max_lines
        if found is not None:
            node, name, body = found
            symbol = name if scope.depth == 0 and self.grammar.file_is_type else scope.child(name)
            if fits:
                return [Piece(start, end, symbol, scope.header_for(start), symbolic=True)]
            signature, sig_row = self._signature(node, body)
            inner = scope.enter(symbol, signature, sig_row)
            if opener is not None:  # the first piece shows the opener's lines, so it takes its header
                inner = replace(inner, outer_header=opener.header)
            return seal(self._level(node.children, start, end, inner, body))
        if fits:
            return [Piece(start, end, scope.symbol, scope.header_for(start), head=start <= scope.sig_row <= end)]
        return [Piece(s, e, scope.symbol, scope.header_for(s), head=s <= scope.sig_row <= e)
                for s, e in line_ranges(self.lines, start, end, self.limits)]

    def _flatten(self, nodes: Sequence[Node], scope: _Scope, body: Node | None) -> list[tuple[Node, Found | None]]:
        """Children in order, with every large non-definition (and the body of the definition being
        split, which alone may just fit) replaced by its own children."""
        out: list[tuple[Node, Found | None]] = []
        stack = list(reversed(nodes))
        visited = 0
        while stack:
            visited += 1
            if visited % 1024 == 0:
                self.deadline.check("symbol layout")
            node = stack.pop()
            found = self._definition(node) if scope.depth < MAX_DEPTH else None
            big = _last_row(node) - node.start_point.row >= self.limits.max_lines
            if found is None and (big or node == body) and node.child_count:
                stack.extend(reversed(node.children))
            else:
                out.append((node, found))
        return out

    def _definition(self, node: Node) -> Found | None:
        rule = self.grammar.definitions.get(node.type)
        if rule is not None:
            named = rule(node)
            if named is not None:
                return node, named[0], named[1]
        if node.type in self.grammar.wrappers:
            for child in node.named_children:
                found = self._definition(child)
                if found is not None:
                    return found
        return None

    def _leads(self, node: Node) -> bool:
        return node.type.endswith("comment") or node.type in self.grammar.leading

    def _units(self, pairs: list[tuple[Node, Found | None]], lo: int, hi: int) -> list[tuple[int, int, Found | None]]:
        """Tile rows lo..hi: one unit per child, comments directly above a definition joining it and
        a closing `}` or `end` joining the unit before it when that still fits."""
        units: list[tuple[int, int, Found | None]] = []  # first and last row of each unit's nodes
        pending: list[tuple[int, int]] = []  # comments waiting for the next definition
        for node, found in pairs:
            start, end = node.start_point.row, _last_row(node)
            if not node.is_named and units and not pending and end - units[-1][0] < self.limits.max_lines:
                units[-1] = (units[-1][0], max(end, units[-1][1]), units[-1][2])
                continue
            if found is None and self._leads(node):
                if pending and start > pending[-1][1] + 1:
                    units.extend((first, last, None) for first, last in pending)
                    pending = []
                pending.append((start, end))
                continue
            if found is not None and pending and start <= pending[-1][1] + 1:
                start = pending[0][0]
            else:
                units.extend((first, last, None) for first, last in pending)
            pending = []
            if found is not None and units and units[-1][1] >= start and units[-1][2] is None:
                # `<?php function f() {`: the definition takes back its first row from what precedes it.
                first, _, _ = units.pop()
                if first < start:
                    units.append((first, start - 1, None))
                else:
                    start = first
            units.append((start, end, found))
        units.extend((first, last, None) for first, last in pending)
        return self._tile(units, lo, hi)

    def _tile(self, units: list[tuple[int, int, Found | None]], lo: int, hi: int) -> list[tuple[int, int, Found | None]]:
        """Consecutive row ranges from lo to hi, each ending where its unit ends, blank edge rows left
        out (so sizes count real lines)."""
        out: list[tuple[int, int, Found | None]] = []
        cursor = lo
        for index, (_, unit_end, found) in enumerate(units):
            end = hi if index == len(units) - 1 else min(unit_end, hi)
            if end >= cursor:  # a unit that ends inside the previous one is already covered
                start, stop = trim(self.lines, cursor, end)
                if start <= stop:
                    out.append((start, stop, found))
                cursor = end + 1
        if cursor <= hi:
            start, stop = trim(self.lines, cursor, hi)
            if start <= stop:
                out.append((start, stop, None))
        return out

    def _signature(self, node: Node, body: Node | None) -> tuple[str, int]:
        """The definition's own lines up to its body, annotations and comments dropped, on one line."""
        start = node.start_byte
        if body is not None and body.start_byte > start:
            stop = body.start_byte
        else:
            newline = self.data.find(b"\n", start, node.end_byte)
            stop = newline if newline >= 0 else node.end_byte
        rows = self.data[start:stop].decode("utf-8", "replace").split("\n")
        kept = [i for i, row in enumerate(rows) if row.strip() and not _NOT_SIGNATURE.match(row)] or [0]
        text = " ".join(" ".join(rows[i] for i in kept).split()).rstrip(" {")
        if len(text) > SIGNATURE_CHARS:
            text = text[:SIGNATURE_CHARS].rstrip() + " ..."
        return text, node.start_point.row + kept[0]


def _broken(root: Node, rows: int) -> bool:
    """True when ERROR nodes span more than ERROR_SHARE of the file's rows."""
    if root.is_error:
        return True
    if not root.has_error:
        return False
    covered = 0
    stack = [root]
    while stack:
        for child in stack.pop().children:
            if child.is_error:
                covered += _last_row(child) - child.start_point.row + 1
            elif child.has_error:
                stack.append(child)
    return covered > rows * ERROR_SHARE


def package_name(root: Node, grammar: Grammar) -> str:
    for child in root.children:
        if child.type == grammar.package:
            names = [c for c in child.named_children if "identifier" in c.type]
            return names[0].text.decode("utf-8", "replace") if names and names[0].text else ""
    return ""


def _parse(parser: Parser, data: bytes, deadline: Deadline) -> Node:
    """Parse under the deadline: tree-sitter calls back as it goes, and stops when told to."""
    def read(offset: int, _point: object) -> bytes:
        return data[offset:offset + READ_BYTES]

    try:
        tree = parser.parse(read, progress_callback=lambda _offset, _errors: deadline.expired())
    except ValueError:  # what the binding raises when the callback halted the parse
        parser.reset()  # a halted parser would otherwise resume this parse on its next call
        deadline.check("tree-sitter parse")
        raise
    return tree.root_node


def symbol_pieces(content: str, lines: Sequence[str], language: str, path: str, limits: Limits,
                  deadline: Deadline | None = None) -> list[Piece] | None:
    """Pieces following the file's symbols, or None when the language has no grammar, the parse
    is not usable or the deadline passed (the caller then cuts line chunks)."""
    grammar = GRAMMARS.get(language)
    if grammar is None:
        return None
    deadline = deadline or Deadline(float("inf"))
    data = content.encode("utf-8", "surrogatepass")
    try:
        root = _parse(thread_parser(grammar.parser), data, deadline)
        if _broken(root, len(lines)):
            log.debug("syntax errors cover most of %s (%s); using line chunks", path, language)
            return None
        module = (grammar.package and package_name(root, grammar)) or module_name(path)
        return _Layout(grammar, data, lines, limits, module, deadline).run(root, path)
    except ChunkingTimeout as exc:
        log.warning("symbol chunking of %s (%s) stopped: %s; using line chunks", path, language, exc)
        return None
    except Exception:  # one unparseable file must not stop indexing; it gets line chunks
        log.warning("tree-sitter chunking failed for %s (%s); using line chunks", path, language, exc_info=True)
        return None
