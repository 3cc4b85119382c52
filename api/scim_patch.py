"""SCIM PATCH (RFC 7644 §3.5.2) applied to a resource's JSON, in the forms IdPs send: with no path (`{"op":
"replace", "value": {"active": false}}`, Okta), with a path (`active`, `name.givenName`, an extension's
`urn:...:User:department`), with a value filter (`emails[type eq "work"].value`, `members[value eq "id"]`),
and `remove` of `members` with a list of values (Entra ID). The result is validated as a whole by the caller,
exactly as a PUT would be."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from api.scim_protocol import (
    ENTERPRISE,
    GROUP,
    PATCH_OP,
    USER,
    Compare,
    Logical,
    ScimError,
    ValuePath,
    matches,
    parse_filter,
)

OPS = frozenset({"add", "replace", "remove"})


@dataclass(frozen=True)
class Path:
    """Where an operation applies: inside `extension` (a schema URN) or at the top, `attr`, elements of a
    multi-valued `attr` that match `where`, and their `sub` attribute."""

    extension: str | None
    attr: str
    where: Any = None
    sub: str | None = None


def parse_path(text: str) -> Path:
    text = text.strip()
    extension = None
    lowered = text.lower()
    if lowered == ENTERPRISE.lower():  # the whole extension object, as a no-path value's key
        return Path(None, ENTERPRISE)
    if lowered.startswith("urn:"):
        core = next((s for s in (USER, GROUP) if lowered.startswith(s.lower() + ":")), None)
        if core is not None:
            text = text[len(core) + 1:]
        else:  # an extension schema's attribute: the URN is everything before the last colon
            extension, _, text = text.rpartition(":")
            if not extension.lower().startswith("urn:") or not text:
                raise ScimError(400, f"cannot parse the path {text!r}", "invalidPath")
    if "[" in text:
        head, _, rest = text.partition("[")
        inner, _, tail = rest.rpartition("]")
        if not head or not inner or (tail and not tail.startswith(".")):
            raise ScimError(400, f"cannot parse the path {text!r}", "invalidPath")
        node = ValuePath(head, parse_filter(inner))
        return Path(extension, head, node.inner, tail[1:] or None)
    head, _, sub = text.partition(".")
    if not head:
        raise ScimError(400, "an empty path", "invalidPath")
    return Path(extension, head, None, sub or None)


def _key(obj: dict[str, Any], name: str) -> str:
    """The existing key spelled as stored (attribute names are case-insensitive), else `name`."""
    return next((k for k in obj if k.lower() == name.lower()), name)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict) and "value" in a and "value" in b:
        return bool(a["value"] == b["value"])
    return bool(a == b)


def _seeded(where: Any) -> dict[str, Any]:
    """A new element for `emails[type eq "work"].value` when none matches: the filter's equalities."""
    if isinstance(where, Compare) and where.op == "eq":
        return {where.path: where.value}
    if isinstance(where, Logical) and where.op == "and":
        return _seeded(where.left) | _seeded(where.right)
    return {}


def _plain(container: dict[str, Any], op: str, path: Path, value: Any) -> None:
    key = _key(container, path.attr)
    current = container.get(key)
    if path.sub is not None:
        if op == "remove":
            if isinstance(current, dict):
                current.pop(_key(current, path.sub), None)
            return
        target = current if isinstance(current, dict) else {}
        target[_key(target, path.sub)] = value
        container[key] = target
    elif op == "remove":
        if isinstance(current, list) and isinstance(value, list):  # remove these members (Entra ID)
            container[key] = [c for c in current if not any(_same(c, v) for v in value)]
        else:
            container.pop(key, None)
    elif isinstance(current, dict) and isinstance(value, dict):  # a complex attribute: its sub-attributes merged
        current.update(value)
    elif op == "add" and isinstance(current, list):
        for item in value if isinstance(value, list) else [value]:
            if not any(_same(c, item) for c in current):
                current.append(item)
    else:
        container[key] = value


def _filtered(container: dict[str, Any], op: str, path: Path, value: Any) -> None:
    key = _key(container, path.attr)
    items = container.get(key)
    items = items if isinstance(items, list) else []
    hit = [i for i in items if isinstance(i, dict) and matches(path.where, {k.lower(): v for k, v in i.items()})]
    if op == "remove":
        if path.sub is None:
            container[key] = [i for i in items if not any(i is h for h in hit)]
            return
        for item in hit:
            item.pop(_key(item, path.sub), None)
        return
    if not hit:
        if op == "replace" and path.sub is None:
            raise ScimError(400, f"no {path.attr} element matches the filter", "noTarget")
        items.append(_seeded(path.where) | ({path.sub: value} if path.sub else value if isinstance(value, dict) else {}))
        container[key] = items
        return
    for item in hit:
        if path.sub is not None:
            item[_key(item, path.sub)] = value
        elif isinstance(value, dict):
            item.update(value)


def _apply(resource: dict[str, Any], op: str, path: Path, value: Any) -> None:
    container = resource
    if path.extension is not None:
        ext_key = _key(resource, path.extension)
        if not isinstance(resource.get(ext_key), dict):
            resource[ext_key] = {}
        container = resource[ext_key]
    if path.where is None:
        _plain(container, op, path, value)
    else:
        _filtered(container, op, path, value)


def apply_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """`resource` (not changed) with the PatchOp message's operations applied, in order."""
    if not isinstance(body, dict) or not isinstance(body.get("schemas"), list) or PATCH_OP not in body["schemas"]:
        raise ScimError(400, f"a PATCH body is a {PATCH_OP} message", "invalidSyntax")
    ops = body.get("Operations")
    if not isinstance(ops, list) or not ops:
        raise ScimError(400, "a PATCH needs Operations", "invalidSyntax")
    out = copy.deepcopy(resource)
    for item in ops:
        op = str(item.get("op", "")).lower() if isinstance(item, dict) else ""
        if op not in OPS:
            raise ScimError(400, "each operation's op is add, replace or remove", "invalidSyntax")
        path, value = item.get("path"), item.get("value")
        if path:
            if not isinstance(path, str):
                raise ScimError(400, "a path is a string", "invalidPath")
            _apply(out, op, parse_path(path), value)
        elif op == "remove":
            raise ScimError(400, "remove needs a path", "noTarget")
        elif isinstance(value, dict):  # attributes (or paths, as Entra ID sends them) with their values
            for name, each in value.items():
                _apply(out, op, parse_path(name), each)
        else:
            raise ScimError(400, "an operation without a path needs an object value", "invalidValue")
    return out
