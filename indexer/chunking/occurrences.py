"""Where a name occurs in a file's syntax tree: its definitions and its uses, never text in strings or comments.

`find_symbol` and `find_references` confirm lexical candidates here. Occurrences are identifier nodes of
the tree-sitter parse, so a `def fake(` inside a docstring or `render()` in a comment is no occurrence:
string and comment nodes have no identifier children (interpolations such as f-string `{render()}` are
code, and do count). A definition is a node of the language's symbol table (`grammars.GRAMMARS`, the
nodes chunking names) or a module-level variable binding; every other identifier is a reference, named
after the innermost definition around it, the way chunks name their symbols (`module.Class.method`)."""
from __future__ import annotations

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


class _Walk:
    """One pass over a parsed file collecting the occurrences of `name`."""

    def __init__(self, grammar: Grammar, lines: list[str], name: str, module: str):
        self.grammar = grammar
        self.lines = lines
        self.name = name
        self.module = module
        self.found: list[Occurrence] = []

    def run(self, root: Node) -> list[Occurrence]:
        for node in root.children:
            self._top(node)
        return self.found

    def _top(self, node: Node) -> None:
        """A module-level statement: a variable binding defines its names; anything else is walked."""
        inner = node
        while inner.type in self.grammar.wrappers and inner.named_children:
            inner = inner.child_by_field_name("declaration") or inner.named_children[-1]
        bound = [n for n in _bound_names(inner) if _text(n) == self.name]
        for name_node in bound:
            self._add(name_node, self._symbol(self.module, self.name), True, inner)
        self._visit(node, self.module, frozenset(n.id for n in bound), top=True)

    def _visit(self, node: Node, scope: str, skip: frozenset[int], top: bool) -> None:
        """Depth first, keeping the innermost definition's symbol; `skip`: identifiers already counted."""
        stack: list[tuple[Node, str, bool]] = [(node, scope, top)]
        while stack:
            current, where, at_top = stack.pop()
            named = self._definition(current)
            if named is not None:
                symbol = named[0] if at_top and self.grammar.file_is_type else f"{where}.{named[0]}"
                name_node = named[1]
                if name_node is not None and named[0].rsplit(".", 1)[-1] == self.name:
                    self._add(name_node, symbol, True, current)
                    skip = skip | {name_node.id}
                where, at_top = symbol, False
            elif _is_identifier(current) and current.id not in skip and _text(current) == self.name:
                self._add(current, where, False, current)
            stack.extend((child, where, at_top) for child in reversed(current.children))

    def _definition(self, node: Node) -> tuple[str, Node | None] | None:
        """(name, the identifier naming it) when the node is a definition of the grammar's table."""
        rule = self.grammar.definitions.get(node.type)
        named = rule(node) if rule is not None else None
        if named is None:
            return None
        last = named[0].rsplit(".", 1)[-1]
        return named[0], _naming_identifier(node, last, named[1])

    def _symbol(self, module: str, name: str) -> str:
        return name if self.grammar.file_is_type else f"{module}.{name}"

    def _add(self, node: Node, symbol: str, definition: bool, span: Node) -> None:
        row = node.start_point.row
        line = self.lines[row] if row < len(self.lines) else ""
        start, end = (span.start_point.row, _last_row(span)) if definition else (row, row)
        self.found.append(Occurrence(line=row + 1, symbol=symbol, definition=definition,
                                     context=line.rstrip()[:MAX_CONTEXT_CHARS], start_line=start + 1,
                                     end_line=end + 1))


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


def occurrences(content: str, language: str, path: str, name: str) -> list[Occurrence] | None:
    """Every occurrence of the identifier `name` in the file, in order; None when the language has no
    grammar or the file is too large to parse here (the caller cannot tell code from text then)."""
    grammar = GRAMMARS.get(language)
    data = content.encode("utf-8", "surrogatepass")
    if grammar is None or len(data) > MAX_FILE_BYTES:
        return None
    if name.encode("utf-8", "surrogatepass") not in data:
        return []
    root = thread_parser(grammar.parser).parse(data).root_node
    module = (grammar.package and package_name(root, grammar)) or module_name(path)
    found = _Walk(grammar, content.split("\n"), name, module).run(root)
    # One use per line: `render(render(x))` is one line to read, and the context shows both.
    return sorted(set(found), key=lambda o: (o.line, not o.definition, o.symbol))

