"""Who may read what in a GitLab project: visibility, feature access levels, members, shares, confidentiality,
internal notes.

GitLab's rules, as applied here (each narrower or equal to GitLab, never wider):
- every user is named by their numeric id in the source's identity realm, `<realm>:user:<id>` (`gitlab:user:42`):
  ids are never reused, usernames can be renamed and taken by someone else;
- a member's role in a project is the highest of their direct role, their role in an ancestor group, and, for
  each group the project is shared with, the lower of their role in that group and the share's maximum role;
- a feature (`repository`, `issues`, `merge_requests`) set to `enabled` reads like the project: public → everyone,
  internal → every signed-in user (`internal_principal`), private → members; `private` ("only project members")
  → members; `disabled` → nothing. Members need the feature's role: Guest for issues, Reporter for the
  repository and merge requests. Merge requests never read wider than the repository;
- a confidential issue: members with Planner (15, GitLab 17.7+) or more, plus its author and assignees when they
  may read the project's issues at all;
- an internal note (`internal: true`): members with Reporter or more only (not authors, assignees or guests), and
  never wider than the issue or merge request it is on."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.principal_sets import MembersUnreadable, intersect
from indexer.models import PUBLIC, Access, realm_principal

log = logging.getLogger(__name__)

GUEST, PLANNER, REPORTER = 10, 15, 20
# The role a member needs to read each feature of a project that is not open to them anyway.
FEATURE_ROLE = {"repository": REPORTER, "issues": GUEST, "merge_requests": REPORTER}
CONFIDENTIAL_ROLE = PLANNER  # reads confidential issues (below 17.7 no role has 15: Reporter+)
INTERNAL_NOTE_ROLE = REPORTER  # reads internal notes


@dataclass(frozen=True)
class Member:
    id: int  # the user's numeric id: what principals name
    username: str
    level: int


@dataclass(frozen=True)
class Share:
    group_id: int
    full_path: str
    level: int  # the share's maximum role


@dataclass(frozen=True)
class ProjectAccess:
    """The access of each feature of one project (None: the feature is disabled)."""

    code: Access | None
    issues: Access | None
    merge_requests: Access | None
    confidential: frozenset[str]  # principals reading confidential issues (Planner+)
    note_readers: frozenset[str]  # principals reading internal notes (Reporter+)
    realm: str = "gitlab"  # the identity realm user principals are named in

    def feature(self, name: str) -> Access | None:
        return {"repository": self.code, "code": self.code, "issues": self.issues,
                "merge_requests": self.merge_requests}[name]

    def for_issue(self, issue: Mapping[str, Any]) -> Access | None:
        """A confidential issue is readable by Planner+ members, and by its author and assignees when they
        may read the project's issues at all (a removed author of a private project reads nothing)."""
        if self.issues is None:
            return None
        if not issue.get("confidential"):
            return self.issues
        people = [issue.get("author") or {}, *(issue.get("assignees") or [])]
        users = {realm_principal(self.realm, "user", str(p["id"])) for p in people
                 if isinstance(p, Mapping) and p.get("id") is not None}
        return Access(frozenset(self.confidential | {u for u in users if covers(self.issues, u)}))

    def for_ticket(self, kind: str, item: Mapping[str, Any]) -> Access | None:
        return self.for_issue(item) if kind == "issues" else self.merge_requests

    def for_internal_note(self, ticket: Access) -> Access:
        """Reporter+ members who may also read the ticket the note is on."""
        return Access(frozenset(p for p in self.note_readers if covers(ticket, p)))

    def digest(self) -> str:
        """Changes whenever any feature's access (or the confidential or note readers) changes."""
        parts = [a.digest() if a else "-" for a in (self.code, self.issues, self.merge_requests)]
        parts += [Access(self.confidential).digest(), Access(self.note_readers).digest()]
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def covers(access: Access, principal: str) -> bool:
    """Whether everyone `principal` stands for may read under `access` (judged by name only, so never wider)."""
    return PUBLIC in access.principals or principal in access.principals


def parse_members(rows: Iterable[Mapping[str, Any]]) -> list[Member]:
    """Active members (blocked, awaiting or deactivated accounts read nothing); one row per user, highest role."""
    best: dict[int, Member] = {}
    for row in rows:
        state = row.get("state", "active")
        if row.get("id") is not None and state == "active":
            member = Member(int(row["id"]), str(row.get("username") or ""), int(row.get("access_level") or 0))
            if member.id not in best or member.level > best[member.id].level:
                best[member.id] = member
    return [best[uid] for uid in sorted(best)]


def parse_shares(project: Mapping[str, Any]) -> list[Share]:
    return [Share(int(s.get("group_id") or 0), str(s["group_full_path"]), int(s.get("group_access_level") or 0))
            for s in project.get("shared_with_groups") or [] if s.get("group_full_path")]


def effective_members(all_members: list[Member], shared: Mapping[Share, list[Member]]) -> list[Member]:
    """Each member's role in the project, capped by the shares they come through.

    `all_members` is the project's `members/all`: it lists members of groups the project is shared with under
    their role *in that group*, not capped by the share (GitLab's MembersFinder), and prefers a direct project
    row over a higher group row. `shared` holds each shared group's own members (`groups/:id/members/all`).
    A user listed in no shared group keeps their row; one listed in a shared group keeps their row only when it
    is above every role they hold in those groups (so it came from elsewhere), else gets the best capped role.
    Users not in `members/all` are never added."""
    out = []
    for member in all_members:
        through = [(m.level, share.level) for share, rows in shared.items() for m in rows if m.id == member.id]
        if not through or member.level > max(group_level for group_level, _ in through):
            out.append(member)
            continue
        level = max(min(group_level, cap) for group_level, cap in through)
        if level > 0:
            out.append(Member(member.id, member.username, level))
    return out


def _holders(members: list[Member], role: int, realm: str) -> frozenset[str]:
    return frozenset(realm_principal(realm, "user", str(m.id)) for m in members if m.level >= role)


def _level(project: Mapping[str, Any], feature: str) -> str:
    return str(project.get(f"{feature}_access_level") or "enabled")


def _feature(project: Mapping[str, Any], feature: str, members: list[Member], internal_principal: str,
             realm: str, role: int | None = None) -> Access | None:
    level = _level(project, feature)
    if level == "disabled":
        return None
    visibility = project.get("visibility") or "private"
    holders = _holders(members, FEATURE_ROLE[feature] if role is None else role, realm)
    if level in ("enabled", "public") and visibility == "public":
        return Access(frozenset({PUBLIC}))
    if level in ("enabled", "public") and visibility == "internal":
        if internal_principal:
            return Access(frozenset({internal_principal}) | holders)
        # Without a principal for "every signed-in user" we cannot express internal: members only.
        return Access(holders)
    return Access(holders)


def _no_groups(principal: str) -> frozenset[str]:
    raise MembersUnreadable(principal)  # GitLab project access names users, `public` and the org principal


def _merge_requests(project: Mapping[str, Any], members: list[Member], internal_principal: str,
                    realm: str) -> Access | None:
    """Merge requests show the repository's code: never wider than the repository feature (the shared
    intersection: `public` ⊇ the internal principal ⊇ members)."""
    own = _feature(project, "merge_requests", members, internal_principal, realm)
    repository = _feature(project, "repository", members, internal_principal, realm,
                          role=FEATURE_ROLE["merge_requests"])
    if own is None or repository is None:
        return None
    try:
        return Access(intersect(own.principals, repository.principals, internal_principal, _no_groups))
    except MembersUnreadable:
        return Access()


def project_access(project: Mapping[str, Any], members: list[Member], internal_principal: str,
                   realm: str = "gitlab") -> ProjectAccess:
    """Public → `public`; internal → the org-wide principal (never `public`); private, or a feature
    limited to members → members with the feature's role as `<realm>:user:<id>`. `members` are the
    project's effective members (see `effective_members`)."""
    if project.get("visibility") == "internal" and not internal_principal:
        log.warning("project %s is internal but no internal_principal is configured: members only",
                    project.get("id"))
    code = None if project.get("empty_repo") else _feature(project, "repository", members, internal_principal,
                                                           realm)
    return ProjectAccess(code=code,
                         issues=_feature(project, "issues", members, internal_principal, realm),
                         merge_requests=_merge_requests(project, members, internal_principal, realm),
                         confidential=_holders(members, CONFIDENTIAL_ROLE, realm),
                         note_readers=_holders(members, INTERNAL_NOTE_ROLE, realm), realm=realm)
