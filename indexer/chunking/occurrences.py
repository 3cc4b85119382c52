"""Where a name occurs in a file's syntax tree: its definitions and its uses, never text in strings or comments.

`find_symbol` and `find_references` confirm lexical candidates here. Occurrences are identifier nodes of
the tree-sitter parse, so a `def fake(` inside a docstring or `render()` in a comment is no occurrence:
string and comment nodes have no identifier children (interpolations such as f-string `{render()}` are
code, and do count). A definition is a node of the language's symbol table (`grammars.GRAMMARS`, the
nodes chunking names) or a module-level variable binding; every other identifier is a reference, named
after the innermost definition around it, the way chunks name their symbols (`module.Class.method`)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node

from indexer.chunking.grammars import GRAMMARS, Grammar
from indexer.chunking.symbols import module_name, package_name, thread_parser

MAX_CONTEXT_CHARS = 200
MAX_FILE_BYTES = 2_000_000  # larger files are not parsed for occurrences (chunking cuts them into lines anyway)


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of the name (its uses on one line are one occurrence). `symbol`: the defined symbol
    for a definition, else the innermost definition holding the use (the module name at top level).
    Lines are 1-based; `start_line`..`end_line` span the definition (a use spans its own line)."""

    line: int
    symbol: str
    definition: bool
    context: str
    start_line: int
    end_line: int


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _is_identifier(node: Node) -> bool:
    """Leaf names in every bundled grammar: identifier, property_identifier, field_identifier,
    type_identifier, simple_identifier (Kotlin), constant (Ruby), name (PHP)."""
    return node.child_count == 0 and (node.type.endswith("identifier") or node.type in ("constant", "name"))


def _bound_names(node: Node) -> Iterator[Node]:
    """The identifiers a variable declaration binds: `x = 1`, `a, b = f()`, `const k = 1`, Go `var`/`const`."""
    if node.type == "expression_statement":  # older Python grammars wrap an assignment
        for child in node.named_children:
            yield from _bound_names(child)
    elif node.type == "assignment":
        left = node.child_by_field_name("left")
        if left is not None and left.type == "identifier":
            yield left
        elif left is not None and left.type in ("pattern_list", "tuple_pattern"):
            yield from (c for c in left.named_children if c.type == "identifier")
    elif node.type in ("lexical_declaration", "variable_declaration"):
        for child in node.named_children:
            name = child.child_by_field_name("name") if child.type == "variable_declarator" else None
            if name is not None and name.type == "identifier":
                yield name
    elif node.type in ("var_declaration", "const_declaration", "var_spec_list"):  # Go
        for child in node.named_children:
            yield from _bound_names(child)
    elif node.type in ("var_spec", "const_spec") or node.type in ("const_item", "static_item"):
        yield from (c for c in node.children_by_field_name("name") if c.type == "identifier")


class _Locate:
    """Classifies the identifier leaves spelled like `name`: walking up from each (never over the whole
    tree) finds the definitions around it, so a file costs its parse plus a few steps per match."""

    def __init__(self, grammar: Grammar, lines: list[str], name: str, module: str):
        self.grammar = grammar
        self.lines = lines
        self.name = name
        self.module = module

    def occurrence(self, leaf: Node) -> Occurrence:
        definitions = []  # (node, name) from the innermost out
        current: Node | None = leaf
        top = leaf
        while current is not None and current.parent is not None:
            named = self._named(current)
            if named is not None:
                definitions.append((current, named))
            top = current
            current = current.parent
        names = [name for _, name in reversed(definitions)]
        if names and not self.grammar.file_is_type:
            names.insert(0, self.module)
        symbol = ".".join(names) or self.module
        if definitions and definitions[0][1].rsplit(".", 1)[-1] == self.name:
            node, _ = definitions[0]
            body = self.grammar.definitions[node.type](node)
            naming = _naming_identifier(node, self.name, body[1] if body else None)
            if naming is not None and naming.id == leaf.id:
                return self._make(leaf, symbol, node)
        if any(bound.id == leaf.id for bound in _bound_names(self._unwrapped(top))):
            return self._make(leaf, ".".join(n for n in (self._module_prefix(), self.name) if n), top)
        return self._make(leaf, symbol, None)

    def _named(self, node: Node) -> str | None:
        rule = self.grammar.definitions.get(node.type)
        named = rule(node) if rule is not None else None
        return named[0] if named is not None else None

    def _unwrapped(self, node: Node) -> Node:
        while node.type in self.grammar.wrappers and node.named_children:
            node = node.child_by_field_name("declaration") or node.named_children[-1]
        return node

    def _module_prefix(self) -> str:
        return "" if self.grammar.file_is_type else self.module

    def _make(self, node: Node, symbol: str, definition: Node | None) -> Occurrence:
        row = node.start_point.row
        line = self.lines[row] if row < len(self.lines) else ""
        start, end = (definition.start_point.row, _last_row(definition)) if definition is not None else (row, row)
        return Occurrence(line=row + 1, symbol=symbol, definition=definition is not None,
                          context=line.rstrip()[:MAX_CONTEXT_CHARS], start_line=start + 1, end_line=end + 1)


def _last_row(node: Node) -> int:
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point.row else row


def _naming_identifier(node: Node, name: str, body: Node | None) -> Node | None:
    """The identifier that names a definition: its `name` field, else the first identifier outside its
    body spelled like the name (a C declarator, a Kotlin class, a Go receiver method)."""
    field = node.child_by_field_name("name")
    if field is not None and _text(field) == name:
        return field
    stack = list(reversed(node.children))
    while stack:
        current = stack.pop()
        if body is not None and current.id == body.id:
            continue
        if _is_identifier(current) and _text(current) == name:
            return current
        stack.extend(reversed(current.children))
    return None


def _spelled(name: str) -> re.Pattern[bytes]:
    """The name as a whole word (`$` counts as a word character, as in JavaScript and PHP)."""
    return re.compile(rb"(?<![\w$])" + re.escape(name.encode("utf-8", "surrogatepass")) + rb"(?![\w$])")


def mentions(text: str, name: str) -> bool:
    """Whether `name` occurs in `text` as a whole word: what a file needs before it is worth parsing."""
    return _spelled(name).search(text.encode("utf-8", "surrogatepass")) is not None


def occurrences(content: str, language: str, path: str, name: str) -> list[Occurrence] | None:
    """Every occurrence of the identifier `name` in the file, in order; None when the language has no
    grammar or the file is too large to parse here (the caller cannot tell code from text then)."""
    grammar = GRAMMARS.get(language)
    data = content.encode("utf-8", "surrogatepass")
    if grammar is None or len(data) > MAX_FILE_BYTES:
        return None
    matches = [m.span() for m in _spelled(name).finditer(data)]
    if not matches:
        return []
    root = thread_parser(grammar.parser).parse(data).root_node
    module = (grammar.package and package_name(root, grammar)) or module_name(path)
    locate = _Locate(grammar, content.split("\n"), name, module)
    leaves = (root.descendant_for_byte_range(start, end) for start, end in matches)
    # A match inside a string or a comment lands on that node, not on an identifier.
    found = [locate.occurrence(leaf) for leaf in leaves
             if leaf is not None and _is_identifier(leaf) and _text(leaf) == name]
    # One use per line: `render(render(x))` is one line to read, and the context shows both.
    return sorted(set(found), key=lambda o: (o.line, not o.definition, o.symbol))

