"""Per-language tables: which tree-sitter nodes are symbols, how to name them, and which wrap them."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tree_sitter import Node

_NOT_A_NAME = re.compile(r"[\s/\"'`]")

# A rule returns the symbol's name and the node holding its body (None when it has none), or None
# when this node is not a symbol after all (a forward declaration, a variable holding a number).
NameRule = Callable[[Node], "tuple[str, Node | None] | None"]


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _dotted(text: str) -> str:
    """`a::b`, `A<T>` and `'quoted'` tidied into a dotted name part; "" for what is no name at all
    (a bundler's `"./src/x.js"(exports) {...}` key)."""
    text = text.split("<", 1)[0].strip("\"'`").replace("::", ".").replace("\\", ".")
    if _NOT_A_NAME.search(text):
        return ""
    return ".".join(part.strip() for part in text.split(".") if part.strip())


def by_name(node: Node) -> tuple[str, Node | None] | None:
    name = _dotted(_text(node.child_by_field_name("name")))
    return (name, node.child_by_field_name("body")) if name else None


def by_name_with_body(node: Node) -> tuple[str, Node | None] | None:
    """Only definitions with a body count: `struct foo;` or `namespace App;` are plain statements."""
    body = node.child_by_field_name("body")
    return by_name(node) if body is not None else None


def by_declarator(node: Node) -> tuple[str, Node | None] | None:
    """C and C++: the name sits at the end of a declarator chain (pointer → function → identifier)."""
    current = node.child_by_field_name("declarator")
    while current is not None and current.child_by_field_name("declarator") is not None:
        current = current.child_by_field_name("declarator")
    if current is None or current.type in ("parameter_list", "abstract_function_declarator"):
        return None
    name = _dotted(_text(current))
    return (name, node.child_by_field_name("body")) if name else None


def by_typedef(node: Node) -> tuple[str, Node | None] | None:
    """C `typedef struct { ... } name;` counts; a plain `typedef int id;` does not."""
    inner = node.child_by_field_name("type")
    if inner is None or inner.child_by_field_name("body") is None:
        return None
    name = _dotted(_text(node.child_by_field_name("declarator")))
    return (name, inner.child_by_field_name("body")) if name else None


def by_impl(node: Node) -> tuple[str, Node | None] | None:
    """Rust `impl Trait for Type`: methods belong to the type."""
    name = _dotted(_text(node.child_by_field_name("type")))
    return (name, node.child_by_field_name("body")) if name else None


def by_type_spec(node: Node) -> tuple[str, Node | None] | None:
    """Go `type X struct {...}`: the name is on the first type_spec (or alias) inside."""
    for child in node.named_children:
        if child.type in ("type_spec", "type_alias"):
            name = _text(child.child_by_field_name("name"))
            return (name, None) if name else None
    return None


def by_receiver(node: Node) -> tuple[str, Node | None] | None:
    """Go methods are named after their receiver's type: `func (r *Retry) Do()` is `Retry.Do`."""
    named = by_name(node)
    receiver = node.child_by_field_name("receiver")
    if named is None or receiver is None:
        return named
    types = [n for n in _descendants(receiver) if n.type == "type_identifier"]
    return (f"{_text(types[0])}.{named[0]}", named[1]) if types else named


def _descendants(node: Node) -> list[Node]:
    out: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current.named_children))
    return out


FUNCTION_VALUES = frozenset({
    "arrow_function", "function_expression", "function", "generator_function", "class", "class_expression",
})


def by_binding(node: Node) -> tuple[str, Node | None] | None:
    """JS/TS `const f = () => {...}`: a variable holding a function or class is a symbol."""
    for child in node.named_children:
        if child.type != "variable_declarator":
            continue
        value = child.child_by_field_name("value")
        if value is not None and value.type in FUNCTION_VALUES:
            name = _text(child.child_by_field_name("name"))
            return (name, value.child_by_field_name("body")) if name else None
    return None


KOTLIN_BODIES = frozenset({"class_body", "function_body", "enum_class_body"})


def by_first_identifier(node: Node) -> tuple[str, Node | None] | None:
    """Kotlin's grammar has no fields: the first identifier child is the name."""
    name = ""
    body = None
    for child in node.named_children:
        if not name and child.type in ("type_identifier", "simple_identifier", "identifier"):
            name = _text(child)
        elif child.type in KOTLIN_BODIES:
            body = child
    return (name, body) if name else None


@dataclass(frozen=True)
class Grammar:
    """How one language's syntax tree maps to symbols."""

    parser: str  # tree-sitter-language-pack name
    definitions: Mapping[str, NameRule]
    wrappers: frozenset[str] = frozenset()  # nodes that hold a definition: decorators, export, template
    leading: frozenset[str] = frozenset()  # besides comments: nodes that belong to the next definition
    # Types are named by the language, not the file (Java's `Retry.java`): top-level definitions get no
    # module prefix, so `Retry.backoff` rather than `Retry.Retry.backoff`.
    file_is_type: bool = False
    package: str = ""  # node naming the module instead of the file stem (Go's package clause)


def _rules(rule: NameRule, *types: str) -> dict[str, NameRule]:
    return dict.fromkeys(types, rule)


_JS = {
    **_rules(by_name, "function_declaration", "generator_function_declaration", "class_declaration",
             "method_definition", "abstract_class_declaration", "interface_declaration", "enum_declaration",
             "internal_module", "module"),
    **_rules(by_binding, "lexical_declaration", "variable_declaration"),
}
_JS_WRAPPERS = frozenset({"export_statement", "ambient_declaration", "expression_statement"})
_C = {
    "function_definition": by_declarator, "type_definition": by_typedef,
    **_rules(by_name_with_body, "struct_specifier", "union_specifier", "enum_specifier"),
}
_CPP = {**_C, **_rules(by_name_with_body, "class_specifier", "namespace_definition")}

GRAMMARS: dict[str, Grammar] = {
    "python": Grammar("python", _rules(by_name, "function_definition", "class_definition"),
                      wrappers=frozenset({"decorated_definition"})),
    "javascript": Grammar("javascript", _JS, wrappers=_JS_WRAPPERS),
    "typescript": Grammar("typescript", _JS, wrappers=_JS_WRAPPERS),
    "tsx": Grammar("tsx", _JS, wrappers=_JS_WRAPPERS),
    "go": Grammar("go", {"function_declaration": by_name, "method_declaration": by_receiver,
                         "type_declaration": by_type_spec}, package="package_clause"),
    "java": Grammar("java", _rules(by_name, "class_declaration", "interface_declaration", "enum_declaration",
                                   "record_declaration", "annotation_type_declaration", "method_declaration",
                                   "constructor_declaration"), file_is_type=True),
    "rust": Grammar("rust", {**_rules(by_name, "function_item", "struct_item", "enum_item", "union_item",
                                      "trait_item", "mod_item", "macro_definition"), "impl_item": by_impl},
                    leading=frozenset({"attribute_item"})),
    "c": Grammar("c", _C),
    "cpp": Grammar("cpp", _CPP, wrappers=frozenset({"template_declaration"})),
    "csharp": Grammar("csharp", _rules(by_name, "namespace_declaration", "class_declaration", "struct_declaration",
                                       "interface_declaration", "enum_declaration", "record_declaration",
                                       "method_declaration", "constructor_declaration", "destructor_declaration"),
                      file_is_type=True),
    "ruby": Grammar("ruby", _rules(by_name, "module", "class", "method", "singleton_method")),
    "php": Grammar("php", {**_rules(by_name, "class_declaration", "interface_declaration", "trait_declaration",
                                    "enum_declaration", "function_definition", "method_declaration"),
                           "namespace_definition": by_name_with_body}, file_is_type=True),
    "kotlin": Grammar("kotlin", _rules(by_first_identifier, "class_declaration", "object_declaration",
                                       "function_declaration"), file_is_type=True),
    "scala": Grammar("scala", _rules(by_name, "class_definition", "object_definition", "trait_definition",
                                     "function_definition", "enum_definition"), file_is_type=True),
    "swift": Grammar("swift", _rules(by_name, "class_declaration", "protocol_declaration", "function_declaration"),
                     file_is_type=True),
    "shell": Grammar("bash", _rules(by_name, "function_definition")),
}
