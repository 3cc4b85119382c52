"""Who may browse Jira issues: the project's permission scheme (groups, roles, users), issue security levels."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.config import JiraSource
from connectors.scoped import REMOTE_ERRORS
from indexer.models import PUBLIC, Access

log = logging.getLogger(__name__)

BROWSE = "BROWSE_PROJECTS"
NOT_READABLE = (401, 403, 404)  # the API user may not read the permission scheme: use configuration


def user_principal(user: Any) -> str:
    """`user:<accountId>` on Cloud, `user:<name>` on Data Center; "" for no user."""
    if not isinstance(user, Mapping):
        return ""
    ident = user.get("accountId") or user.get("name") or user.get("key")
    return f"user:{ident}" if ident else ""


@dataclass(frozen=True)
class IssueAccess:
    """A project's browse grants: fixed principals, plus the issue's reporter/assignee when granted so."""

    principals: frozenset[str]
    per_issue: frozenset[str] = frozenset()  # "reporter", "assignee"

    def for_issue(self, fields: Mapping[str, Any], security_levels: Mapping[str, list[str]]) -> Access:
        """An issue under a security level is readable only by the principals configured for that
        level (Jira's level members cannot be read through the REST API): otherwise admins only."""
        security = fields.get("security")
        if isinstance(security, Mapping) and security.get("name") is not None:
            return Access.of(*security_levels.get(str(security["name"]), []))
        people = {user_principal(fields.get(role)) for role in self.per_issue}
        return Access(frozenset(self.principals | {p for p in people if p}))

    def digest(self) -> str:
        text = "\n".join(sorted(self.principals)) + "|" + ",".join(sorted(self.per_issue))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _role_actors(client: Any, key: str, role_id: Any) -> set[str]:
    actors = client.get(f"rest/api/2/project/{key}/role/{role_id}") or {}
    out = set()
    for actor in actors.get("actors") or []:
        if actor.get("type") == "atlassian-group-role-actor":
            name = (actor.get("actorGroup") or {}).get("name") or actor.get("name")
            out.add(f"group:{name}" if name else "")
        else:
            out.add(user_principal(actor.get("actorUser") or actor))
    return {p for p in out if p}


def _holder(client: Any, key: str, holder: Mapping[str, Any], config: JiraSource) -> tuple[set[str], set[str]]:
    """(principals, per-issue roles) one permission holder grants."""
    kind, param = holder.get("type"), holder.get("parameter") or holder.get("value")
    if kind == "group":
        name = (holder.get("group") or {}).get("name") or param
        return ({f"group:{name}"} if name else set()), set()
    if kind == "user":
        principal = user_principal(holder.get("user") or {"accountId": param})
        return ({principal} if principal else set()), set()
    if kind == "projectRole" and param:
        return _role_actors(client, key, param), set()
    if kind == "anyone":
        return {PUBLIC}, set()
    if kind in ("applicationRole", "loggedin") and config.org_principal:
        return {config.org_principal}, set()
    if kind == "projectLead":
        lead = user_principal((client.project(key) or {}).get("lead"))
        return ({lead} if lead else set()), set()
    if kind in ("reporter", "assignee"):
        return set(), {kind}
    return set(), set()  # holders we cannot express (custom fields, ...) grant nothing: fail closed


def project_grants(client: Any, key: str, config: JiraSource, clean: Callable[[object], str]) -> IssueAccess:
    """Browse grants of a project from its permission scheme (plus principals configured for it), or
    from configuration when the scheme is not readable. Transient failures raise."""
    configured = frozenset(config.configured_access(key))
    if config.permissions == "config":
        return IssueAccess(configured)
    try:
        scheme = client.get_project_permission_scheme(key, expand="permissions,user,group,projectRole") or {}
    except REMOTE_ERRORS as exc:
        if _status(exc) not in NOT_READABLE:
            raise
        log.info("jira project %s: permission scheme not readable (%s); using configured access", key, _status(exc))
        return IssueAccess(configured)
    principals: set[str] = set(config.access.get(key, []))
    per_issue: set[str] = set()
    for grant in scheme.get("permissions") or []:
        if grant.get("permission") == BROWSE:
            found, roles = _holder(client, key, grant.get("holder") or {}, config)
            principals |= found
            per_issue |= roles
    return IssueAccess(frozenset(principals), frozenset(per_issue))
