"""Who may read what in a GitLab project: visibility, feature access levels, members, shares, confidentiality."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from indexer.models import PUBLIC, Access

log = logging.getLogger(__name__)

GUEST, REPORTER = 10, 20
# The role a member needs to read each feature of a project that is not open to them anyway.
FEATURE_ROLE = {"repository": REPORTER, "issues": GUEST, "merge_requests": REPORTER}


@dataclass(frozen=True)
class Member:
    username: str
    level: int


@dataclass(frozen=True)
class Share:
    full_path: str
    level: int


@dataclass(frozen=True)
class ProjectAccess:
    """The access of each feature of one project (None: the feature is disabled)."""

    code: Access | None
    issues: Access | None
    merge_requests: Access | None
    reporters: frozenset[str]  # principals holding Reporter or more: who reads confidential issues

    def feature(self, name: str) -> Access | None:
        return {"repository": self.code, "code": self.code, "issues": self.issues,
                "merge_requests": self.merge_requests}[name]

    def for_issue(self, issue: Mapping[str, Any]) -> Access | None:
        """A confidential issue is readable by Reporter+ members, its author and its assignees only."""
        if self.issues is None:
            return None
        if not issue.get("confidential"):
            return self.issues
        people = [issue.get("author") or {}, *(issue.get("assignees") or [])]
        users = {f"user:{p['username']}" for p in people if isinstance(p, Mapping) and p.get("username")}
        return Access(frozenset(self.reporters | users))

    def digest(self) -> str:
        """Changes whenever any feature's access (or the reporters) changes."""
        parts = [a.digest() if a else "-" for a in (self.code, self.issues, self.merge_requests)]
        parts.append(Access(self.reporters).digest())
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def parse_members(rows: Iterable[Mapping[str, Any]]) -> list[Member]:
    """Active members (blocked, awaiting or deactivated accounts read nothing)."""
    out = []
    for row in rows:
        state = row.get("state", "active")
        if row.get("username") and state == "active":
            out.append(Member(str(row["username"]), int(row.get("access_level") or 0)))
    return out


def parse_shares(project: Mapping[str, Any]) -> list[Share]:
    return [Share(str(s["group_full_path"]), int(s.get("group_access_level") or 0))
            for s in project.get("shared_with_groups") or [] if s.get("group_full_path")]


def _holders(members: list[Member], shares: list[Share], role: int) -> frozenset[str]:
    return frozenset({f"user:{m.username}" for m in members if m.level >= role}
                     | {f"group:{s.full_path}" for s in shares if s.level >= role})


def _feature(project: Mapping[str, Any], feature: str, members: list[Member], shares: list[Share],
             internal_principal: str) -> Access | None:
    level = project.get(f"{feature}_access_level") or "enabled"
    if level == "disabled":
        return None
    visibility = project.get("visibility") or "private"
    holders = _holders(members, shares, FEATURE_ROLE[feature])
    if level in ("enabled", "public") and visibility == "public":
        return Access(frozenset({PUBLIC}))
    if level in ("enabled", "public") and visibility == "internal":
        if internal_principal:
            return Access(frozenset({internal_principal}) | holders)
        # Without a principal for "every signed-in user" we cannot express internal: members only.
        return Access(holders)
    return Access(holders)


def project_access(project: Mapping[str, Any], members: list[Member], internal_principal: str) -> ProjectAccess:
    """Public → `public`; internal → the org-wide principal (never `public`); private, or a feature
    limited to members → members with the feature's role as `user:<username>` plus the groups the
    project is shared with as `group:<full_path>`."""
    shares = parse_shares(project)
    if project.get("visibility") == "internal" and not internal_principal:
        log.warning("project %s is internal but no internal_principal is configured: members only",
                    project.get("id"))
    code = None if project.get("empty_repo") else _feature(project, "repository", members, shares, internal_principal)
    return ProjectAccess(code=code,
                         issues=_feature(project, "issues", members, shares, internal_principal),
                         merge_requests=_feature(project, "merge_requests", members, shares, internal_principal),
                         reporters=_holders(members, shares, REPORTER))
