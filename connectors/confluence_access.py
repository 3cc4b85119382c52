"""Who may read a Confluence page: the space's view permission AND the read restriction of the page and of
every ancestor. Sets naming users on one side and groups on the other are intersected through group members
(connectors/principal_sets.py).

Principals are named in the source's identity realm: `<realm>:user:<accountId>` on Cloud,
`<realm>:user:<userKey>` on Data Center (a username can be renamed and then taken by someone else; a user key
cannot), `<realm>:group:<name>`."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.principal_sets import MembersUnreadable, intersect
from indexer.models import PUBLIC, Access, realm_principal

log = logging.getLogger(__name__)

__all__ = ["MembersUnreadable", "Names", "datacenter_space_readers", "effective_access", "read_restriction",
           "space_readers"]

# group name → its members as user principals; None when they could not be read
Members = Callable[[str], "frozenset[str] | None"]


@dataclass(frozen=True)
class Names:
    """How one source names people and groups: its realm, and accountId (Cloud) or userKey (Data Center)."""

    realm: str
    cloud: bool

    def account(self, user: Any) -> str:
        if not isinstance(user, Mapping):
            return ""
        return str(user.get("accountId") or "") if self.cloud else str(user.get("userKey") or "")

    def user(self, user: Any) -> str:
        account = self.account(user)
        return realm_principal(self.realm, "user", account) if account else ""

    def group(self, name: str) -> str:
        return realm_principal(self.realm, "group", name)


def _subjects(block: Any, names: Names) -> set[str]:
    """Principals of a `{"user": {"results": [...]}, "group": {"results": [...]}}` block."""
    if not isinstance(block, Mapping):
        return set()
    users = {names.user(u) for u in (block.get("user") or {}).get("results") or []}
    groups = {names.group(g["name"]) for g in (block.get("group") or {}).get("results") or [] if g.get("name")}
    return {p for p in users | groups if p}


def space_readers(space: Mapping[str, Any], org_principal: str, names: Names) -> set[str] | None:
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
        readers |= _subjects(permission.get("subjects"), names)
    return readers


def datacenter_space_readers(permissions: Any, names: Names, key_of: Callable[[str], str | None]) -> set[str] | None:
    """Who may read the space, from Data Center's `GET /rest/api/space/{key}/permissions` (a list of
    `{operation: {operationKey, targetType}, subject: {type, ...}}`); None when the answer is not that list.

    A user subject names its `userKey`; one naming only a username has `key_of` look the key up (None:
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
                readers.add(names.group(str(name)))
        elif kind == "user":
            key = subject.get("userKey")
            username = subject.get("userName") or subject.get("username")
            if not key and username:
                key = key_of(str(username))
            if key:
                readers.add(names.user({"userKey": key}))
    return readers


def read_restriction(restrictions: Any, names: Names) -> set[str] | None:
    """The principals a view restriction names; None when the content has no view restriction.

    Accepts the `restrictions` expansion of content and the `/restriction/byOperation/read` answer."""
    if not isinstance(restrictions, Mapping):
        return None
    block = restrictions.get("read", restrictions)
    inner = block.get("restrictions") if isinstance(block, Mapping) else None
    named = _subjects(inner, names)
    return named or None


def effective_access(space: Iterable[str], levels: Iterable[set[str] | None], members: Members, names: Names,
                     org_principal: str = "") -> Access:
    """A page is readable by who may view its space AND satisfies every read restriction on it and on
    each ancestor. No restriction anywhere: the space's readers. Raises MembersUnreadable (the caller
    fails closed: admins only, and says so)."""
    prefix = f"{names.realm}:group:"

    def members_of(principal: str) -> frozenset[str]:
        found = members(principal[len(prefix):]) if principal.startswith(prefix) else None
        if found is None:
            raise MembersUnreadable(principal)
        return found

    allowed: frozenset[str] = frozenset(space)
    for level in levels:
        if level is not None:
            allowed = intersect(allowed, level, org_principal, members_of)
    return Access(allowed)
