"""Who may read a Confluence page: the space's view permission AND the read restriction of the page and of
every ancestor. Sets naming users on one side and groups on the other are intersected through group members."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from indexer.models import PUBLIC, Access

log = logging.getLogger(__name__)

# group name → its members as `user:` principals; None when they could not be read
Members = Callable[[str], "frozenset[str] | None"]


class MembersUnreadable(Exception):
    """The members of a group were needed to intersect two sets of principals and could not be read."""

    def __init__(self, group: str) -> None:
        super().__init__(group)
        self.group = group


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


def datacenter_space_readers(permissions: Any, username_of: Callable[[str], str | None]) -> set[str] | None:
    """Who may read the space, from Data Center's `GET /rest/api/space/{key}/permissions` (a list of
    `{operation: {operationKey, targetType}, subject: {type, ...}}`); None when the answer is not that list.

    A user subject names its `userKey`; `username_of` turns it into the username principals use (None:
    unknown, and that user is left out: narrower, never wider)."""
    if not isinstance(permissions, list):
        return None
    readers: set[str] = set()
    for permission in permissions:
        if not isinstance(permission, Mapping):
            continue
        operation = permission.get("operation") or {}
        if operation.get("operationKey") != "read" or operation.get("targetType") != "space":
            continue
        subject = permission.get("subject") or {}
        kind = subject.get("type")
        if kind == "anonymous":
            readers.add(PUBLIC)
        elif kind == "group":
            name = subject.get("groupName") or subject.get("name")
            if name:
                readers.add(f"group:{name}")
        elif kind == "user":
            name = subject.get("userName") or subject.get("username")
            if not name and subject.get("userKey"):
                name = username_of(str(subject["userKey"]))
            if name:
                readers.add(f"user:{name}")
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


def _kind(principal: str) -> str:
    return principal.split(":", 1)[0] if ":" in principal else principal


def _members(group: str, members: Members) -> frozenset[str]:
    found = members(group.split(":", 1)[1])
    if found is None:
        raise MembersUnreadable(group.split(":", 1)[1])
    return found


def intersect(a: set[str], b: set[str], members: Members) -> set[str]:
    """The principals standing for exactly those who are in both `a` and `b`.

    `public` on one side is everyone: the other side. Equal principals are kept. A user on one side and a
    group on the other: the user when the group has them as a member. Two different groups: the users
    in both. Anything else (e.g. the organisation principal against a user) matches only itself: the
    result can be narrower than the truth, never wider. Raises MembersUnreadable when a group's members
    were needed and could not be read."""
    if PUBLIC in a:
        return set(b)
    if PUBLIC in b:
        return set(a)
    out = a & b
    for p in a - out:
        for q in b - out:
            kp, kq = _kind(p), _kind(q)
            if kp == "user" and kq == "group":
                if p in _members(q, members):
                    out.add(p)
            elif kp == "group" and kq == "user":
                if q in _members(p, members):
                    out.add(q)
            elif kp == "group" and kq == "group":
                out |= _members(p, members) & _members(q, members)
    return out


def effective_access(space: Iterable[str], levels: Iterable[set[str] | None], members: Members) -> Access:
    """A page is readable by who may view its space AND satisfies every read restriction on it and on
    each ancestor. No restriction anywhere: the space's readers. Raises MembersUnreadable (the caller
    fails closed: admins only, and says so)."""
    allowed = set(space)
    for level in levels:
        if level is not None:
            allowed = intersect(allowed, level, members)
    return Access(frozenset(allowed))
