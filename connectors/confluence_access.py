"""Who may read a Confluence page: space read permissions, narrowed by its own and its ancestors' restrictions."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from indexer.models import PUBLIC, Access

log = logging.getLogger(__name__)


def user_principal(user: Any) -> str:
    """`user:<accountId>` (Cloud) or `user:<username>` (Data Center)."""
    if not isinstance(user, Mapping):
        return ""
    ident = user.get("accountId") or user.get("username") or user.get("userKey")
    return f"user:{ident}" if ident else ""


def _subjects(block: Any) -> set[str]:
    """Principals of a `{"user": {"results": [...]}, "group": {"results": [...]}}` block."""
    if not isinstance(block, Mapping):
        return set()
    users = {user_principal(u) for u in (block.get("user") or {}).get("results") or []}
    groups = {f"group:{g['name']}" for g in (block.get("group") or {}).get("results") or [] if g.get("name")}
    return {p for p in users | groups if p}


def space_readers(space: Mapping[str, Any], org_principal: str) -> set[str] | None:
    """Who may read the space, from `expand=permissions` (Cloud); None when the API did not say."""
    permissions = space.get("permissions")
    if not isinstance(permissions, list) or not permissions:
        return None
    readers: set[str] = set()
    for permission in permissions:
        operation = permission.get("operation") or {}
        if operation.get("operation") != "read" or operation.get("targetType") != "space":
            continue
        if permission.get("anonymousAccess"):
            readers.add(PUBLIC)
        if permission.get("unlicensedAccess") and org_principal:
            readers.add(org_principal)
        readers |= _subjects(permission.get("subjects"))
    return readers


def read_restriction(restrictions: Any) -> set[str] | None:
    """The principals a view restriction names; None when the content has no view restriction.

    Accepts the `restrictions` expansion of content and the `/restriction/byOperation/read` answer."""
    if not isinstance(restrictions, Mapping):
        return None
    block = restrictions.get("read", restrictions)
    inner = block.get("restrictions") if isinstance(block, Mapping) else None
    named = _subjects(inner)
    return named or None


def effective_access(space: Iterable[str], levels: Iterable[set[str] | None]) -> Access:
    """View restrictions are inherited: a page is readable by those every restricted level (the page
    and each ancestor) names; principals are compared as written (group members are not expanded),
    so the result can only be narrower than the truth. No restriction anywhere: the space's readers."""
    restricted = [level for level in levels if level is not None]
    if not restricted:
        return Access(frozenset(space))
    allowed = set.intersection(*restricted)
    if PUBLIC in allowed:
        allowed.discard(PUBLIC)
    return Access(frozenset(allowed))
