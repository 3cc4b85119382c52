"""SCIM 2.0 protocol pieces that hold no state (RFC 7643/7644): the error message, filters (`userName eq
"x"`, `and`/`or`/`not`, `pr`, `members[value eq "id"]`), PATCH operations applied to a resource's JSON
(the path forms Okta and Entra ID send), list responses, and the discovery documents IdPs probe."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_RESULTS = 200
# Compared exactly (RFC 7643 caseExact true); every other string attribute Cairn filters on is not.
CASE_EXACT = frozenset({"id", "externalid", "value"})


class ScimError(Exception):
    """An answer in SCIM's error schema (RFC 7644 §3.12): status, optional scimType, detail."""

    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status), "detail": self.detail}
        return out | ({"scimType": self.scim_type} if self.scim_type else {})


def list_response(resources: list[dict[str, Any]], start: int, count: int) -> dict[str, Any]:
    """One page (1-based `start`, at most `count`) of already filtered resources."""
    page = resources[start - 1:start - 1 + count]
    return {"schemas": [LIST], "totalResults": len(resources), "itemsPerPage": len(page), "startIndex": start,
            "Resources": page}


def paging(params: dict[str, str]) -> tuple[int, int]:
    """startIndex (1-based; less than 1 counts as 1) and count (0..MAX_RESULTS) of a list request."""
    try:
        start = int(params.get("startIndex", "1"))
        count = int(params.get("count", str(MAX_RESULTS)))
    except ValueError as exc:
        raise ScimError(400, "startIndex and count must be integers", "invalidValue") from exc
    return max(start, 1), min(max(count, 0), MAX_RESULTS)


# -- filters (RFC 7644 §3.4.2.2) ------------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[()\[\]])|(?P<word>[^\s()\[\]"]+))')
OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


@dataclass(frozen=True)
class Compare:
    path: str  # attribute or attribute.sub, lower case, schema URN removed
    op: str  # an OPERATORS member, or "pr"
    value: Any = None


@dataclass(frozen=True)
class Logical:
    op: str  # and | or
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    inner: Any


@dataclass(frozen=True)
class ValuePath:
    attr: str  # a multi-valued attribute: emails, members
    inner: Any  # a filter on its elements


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ScimError(400, f"cannot parse the filter at {text[pos:pos + 20]!r}", "invalidFilter")
        kind = m.lastgroup or "word"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def attr_name(path: str) -> str:
    """An attribute path without its schema URN (`urn:...:User:userName` → `username`), lower case."""
    if path.lower().startswith("urn:"):
        for schema in (USER, GROUP):
            if path.lower().startswith(schema.lower() + ":"):
                return path[len(schema) + 1:].lower()
    return path.lower()


class _Parser:
    """filter := or; or := and ("or" and)*; and := unary ("and" unary)*; unary := "not" "(" filter ")" |
    "(" filter ")" | attr "[" filter "]" | attr "pr" | attr op value."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ScimError(400, "the filter ends too early", "invalidFilter")
        self.at += 1
        return token

    def expect(self, punct: str) -> None:
        if self.take() != ("punct", punct):
            raise ScimError(400, f"the filter misses {punct!r}", "invalidFilter")

    def parse(self) -> Any:
        node = self.logical("or")
        if self.peek() is not None:
            raise ScimError(400, f"unexpected {self.peek()[1]!r} in the filter", "invalidFilter")  # type: ignore[index]
        return node

    def logical(self, op: str) -> Any:
        node = self.logical("and") if op == "or" else self.unary()
        while (token := self.peek()) is not None and token[0] == "word" and token[1].lower() == op:
            self.take()
            node = Logical(op, node, self.logical("and") if op == "or" else self.unary())
        return node

    def unary(self) -> Any:
        kind, text = self.take()
        if kind == "punct" and text == "(":
            node = self.logical("or")
            self.expect(")")
            return node
        if kind != "word":
            raise ScimError(400, f"unexpected {text!r} in the filter", "invalidFilter")
        if text.lower() == "not":
            self.expect("(")
            node = self.logical("or")
            self.expect(")")
            return Not(node)
        if self.peek() == ("punct", "["):
            self.take()
            inner = self.logical("or")
            self.expect("]")
            return ValuePath(attr_name(text), inner)
        op = self.take()[1].lower()
        if op == "pr":
            return Compare(attr_name(text), "pr")
        if op not in OPERATORS:
            raise ScimError(400, f"unknown filter operator {op!r}", "invalidFilter")
        return Compare(attr_name(text), op, _literal(self.take()))


def _literal(token: tuple[str, str]) -> Any:
    kind, text = token
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    try:
        return float(text) if "." in text else int(text)
    except ValueError as exc:
        raise ScimError(400, f"bad value {text!r} in the filter", "invalidFilter") from exc


def parse_filter(text: str) -> Any:
    return _Parser(text).parse()


def simple_equality(node: Any) -> tuple[str, Any] | None:
    """(attribute, value) when the filter is one `attr eq "value"` (answered by an index, not a scan)."""
    if isinstance(node, Compare) and node.op == "eq" and isinstance(node.value, str):
        return node.path, node.value
    return None


def _get(obj: Any, key: str) -> Any:
    if not isinstance(obj, dict):
        return None
    return next((v for k, v in obj.items() if k.lower() == key), None)


def _values(resource: dict[str, Any], path: str) -> list[Any]:
    """Every value at `path` (`attr` or `attr.sub`); a multi-valued complex attribute without a sub-attribute
    stands for its elements' `value`s."""
    head, _, sub = path.partition(".")
    found = _get(resource, head)
    items = found if isinstance(found, list) else [found]
    if sub:
        return [_get(i, sub) for i in items if _get(i, sub) is not None]
    return [_get(i, "value") if isinstance(i, dict) else i for i in items if i is not None]


def _compare(have: Any, op: str, want: Any, exact: bool) -> bool:
    if isinstance(have, str) and isinstance(want, str) and not exact:
        have, want = have.lower(), want.lower()
    if op == "eq":
        return bool(have == want)
    if op == "ne":
        return bool(have != want)
    if not isinstance(have, type(want)) or want is None:
        return False
    if op in ("co", "sw", "ew"):
        if not isinstance(have, str):
            return False
        return want in have if op == "co" else have.startswith(want) if op == "sw" else have.endswith(want)
    return {"gt": have > want, "ge": have >= want, "lt": have < want, "le": have <= want}[op]


def matches(node: Any, resource: dict[str, Any]) -> bool:
    if isinstance(node, Logical):
        left = matches(node.left, resource)
        return (left and matches(node.right, resource)) if node.op == "and" else (left or matches(node.right, resource))
    if isinstance(node, Not):
        return not matches(node.inner, resource)
    if isinstance(node, ValuePath):
        items = _get(resource, node.attr)
        return any(matches(node.inner, i) for i in items if isinstance(i, dict)) if isinstance(items, list) else False
    values = _values(resource, node.path)
    if node.op == "pr":
        return any(v not in ("", [], {}) for v in values)
    exact = node.path.rsplit(".", 1)[-1] in CASE_EXACT
    if node.op == "ne":
        return all(_compare(v, "ne", node.value, exact) for v in values)
    return any(_compare(v, node.op, node.value, exact) for v in values)
