"""Set algebra on principals, shared by every source's access rules: who is in both of two sets of readers.

One rule for all sources (Jira security levels and comment visibility, Confluence restrictions, GitLab merge
requests): `public` (anyone) ⊇ the source's org-wide principal (every signed-in user: GitLab's
`internal_principal`, Atlassian's `org_principal`) ⊇ any named user, group or role. Equal principals meet in
themselves; a user meets a group (or role) when the user is a member; two different groups meet in their
common members. Anything else meets nothing, so a result can be narrower than the product's, never wider."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from indexer.models import PUBLIC, REALM_KINDS

SETS = ("group", "role")  # principals standing for several users, resolved through `Members`


class MembersUnreadable(Exception):
    """The members of a group (or role) were needed to intersect two sets and could not be read."""

    def __init__(self, principal: str) -> None:
        super().__init__(principal)
        self.principal = principal


# group or role principal → its members as user principals; raises MembersUnreadable when unknown
Members = Callable[[str], frozenset[str]]


def kind(principal: str) -> str:
    """`public`, `user`, `group` or `role` (Cairn's own `user:x`/`group:y` and namespaced `realm:kind:x`)."""
    if principal == PUBLIC:
        return PUBLIC
    head, _, rest = principal.partition(":")
    if head in ("user", "group"):
        return head
    sub = rest.partition(":")[0]
    return sub if sub in REALM_KINDS else ""


def intersect(a: Iterable[str], b: Iterable[str], org: str, members: Members) -> frozenset[str]:
    """The principals standing for exactly those who are in both `a` and `b` (see the module's rule).
    `org` is the source's org-wide principal ("" when it has none). Raises MembersUnreadable."""
    a, b = frozenset(a), frozenset(b)
    for wide in (PUBLIC, org):
        if wide and wide in a and wide not in b:
            return b
        if wide and wide in b and wide not in a:
            return a
    out = set(a & b)
    for p in sorted(a - out):  # in a fixed order: the same group is named when several cannot be read
        for q in sorted(b - out):
            kp, kq = kind(p), kind(q)
            if kp == "user" and kq in SETS:
                if p in members(q):
                    out.add(p)
            elif kp in SETS and kq == "user":
                if q in members(p):
                    out.add(q)
            elif kp in SETS and kq in SETS:
                out |= members(p) & members(q)
    return frozenset(out)


def realm_sets(principals: Iterable[str], realm: str) -> list[str]:
    """The group and role principals of `realm` among `principals`, sorted (what membership sync reads)."""
    return sorted({p for p in principals if p.startswith(f"{realm}:") and kind(p) in SETS})
