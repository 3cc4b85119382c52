"""Who may read Jira issues and comments: permission schemes, issue security levels, comment visibility.

Principals are named in the source's identity realm: `<realm>:user:<accountId>` on Cloud (one Atlassian
account everywhere), `<realm>:user:<user key>` on Data Center (a key never changes and is never given to
someone else; a username can be renamed and then taken), `<realm>:group:<name>`."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.config import JiraSource
from connectors.principal_sets import MembersUnreadable, intersect
from connectors.scoped import REMOTE_ERRORS
from indexer.models import PUBLIC, Access, realm_principal

log = logging.getLogger(__name__)

BROWSE = "BROWSE_PROJECTS"
NOT_READABLE = (401, 403, 404)  # the API user may not read it (or the resource does not exist): fall back
PAGE = 50


MembershipUnknown = MembersUnreadable  # a group's members could not be read: what needed them is admins only


def account_of(user: Any, cloud: bool) -> str:
    """The account id principals use: the accountId on Cloud, the user key on Data Center; "" for none."""
    if not isinstance(user, Mapping):
        return ""
    return str(user.get("accountId") or "") if cloud else str(user.get("key") or "")


@dataclass(frozen=True)
class IssueAccess:
    """Holders of a permission (browse a project, or be a member of a security level): fixed principals,
    plus the issue's reporter/assignee when granted so."""

    principals: frozenset[str]
    per_issue: frozenset[str] = frozenset()  # "reporter", "assignee"

    def resolve(self, fields: Mapping[str, Any], name: Callable[[Any], str]) -> frozenset[str]:
        """The principals, with the issue's reporter/assignee named by `name` (a user object → principal)."""
        people = {name(fields.get(role)) for role in self.per_issue}
        return frozenset(self.principals | {p for p in people if p})

    def digest(self) -> str:
        text = "\n".join(sorted(self.principals)) + "|" + ",".join(sorted(self.per_issue))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


class JiraPermissions:
    """Jira's rules for one sync or permissions pass, with what it read cached (schemes, roles, groups).

    An issue is readable by the holders of Browse Projects in its project, narrowed to the members of
    its security level when it has one; a comment with a visibility, by those of the issue's readers
    who hold the role or group. Sets naming different groups or users are intersected through group
    members read from Jira; when they cannot be read the result is admins only (`problems` says why)."""

    def __init__(self, client: Any, config: JiraSource, clean: Callable[[object], str]) -> None:
        self.client, self.config, self.clean = client, config, clean
        self.realm, self.cloud = config.identity_realm, config.cloud
        self._keys: dict[str, str] = {}  # Data Center username → user key
        self._projects: dict[str, IssueAccess] = {}
        self._roles: dict[str, dict[str, str]] = {}
        self._actors: dict[tuple[str, str], frozenset[str]] = {}
        self._levels: dict[tuple[str, str], IssueAccess | None] = {}
        self._schemes: dict[str, Mapping[str, Any] | None] = {}
        self._members: dict[str, frozenset[str] | None] = {}
        self.problems: list[str] = []  # why an access came out admins only, since the caller last took them

    def take_problems(self) -> list[str]:
        out, self.problems = self.problems, []
        return out

    # -- names ---------------------------------------------------------------------------------

    def user_principal(self, user: Any) -> str:
        """`<realm>:user:<accountId | user key>`; "" for no user. A Data Center user object without its
        key (a role actor names the username) has the key looked up (`GET user?username=`)."""
        account = account_of(user, self.cloud)
        if not account and not self.cloud and isinstance(user, Mapping) and user.get("name"):
            account = self.key_of(str(user["name"]))
        return realm_principal(self.realm, "user", account) if account else ""

    def group_principal(self, name: str) -> str:
        return realm_principal(self.realm, "group", name)

    def key_of(self, username: str) -> str:
        """A Data Center username's user key (cached); "" when Jira does not know it. Transient errors raise."""
        if username not in self._keys:
            try:
                found = self.client.get("rest/api/2/user", params={"username": username}) or {}
            except REMOTE_ERRORS as exc:
                if _status(exc) not in NOT_READABLE:
                    raise
                found = {}
            self._keys[username] = str(found.get("key") or "")
        return self._keys[username]

    # -- browse grants -------------------------------------------------------------------------

    def project(self, key: str) -> IssueAccess:
        """Who may browse a project's issues (cached). Transient failures raise."""
        if key not in self._projects:
            self._projects[key] = self._project_grants(key)
        return self._projects[key]

    def _project_grants(self, key: str) -> IssueAccess:
        configured = frozenset(self.config.configured_access(key))
        if self.config.permissions == "config":
            return IssueAccess(configured)
        try:
            scheme = self.client.get_project_permission_scheme(key, expand="permissions,user,group,projectRole") or {}
        except REMOTE_ERRORS as exc:
            if _status(exc) not in NOT_READABLE:
                raise
            log.info("jira project %s: permission scheme not readable (%s); using configured access", key,
                     _status(exc))
            return IssueAccess(configured)
        principals: set[str] = set(self.config.access.get(key, []))
        per_issue: set[str] = set()
        for grant in scheme.get("permissions") or []:
            if grant.get("permission") == BROWSE:
                found, roles = self._holder(key, grant.get("holder") or {})
                principals |= found
                per_issue |= roles
        return IssueAccess(frozenset(principals), frozenset(per_issue))

    def _holder(self, key: str, holder: Mapping[str, Any]) -> tuple[set[str], set[str]]:
        """(principals, per-issue roles) one permission holder (scheme grant or level member) stands for."""
        kind, param = holder.get("type"), holder.get("parameter") or holder.get("value")
        if kind == "group":
            name = (holder.get("group") or {}).get("name") or holder.get("parameter")
            return ({self.group_principal(str(name))} if name else set()), set()
        if kind == "user":
            # Data Center stores a user grant's key in `parameter`; `expand=user` adds the user itself
            fallback = {"accountId": param} if self.cloud else {"key": param}
            principal = self.user_principal(holder.get("user") or fallback)
            return ({principal} if principal else set()), set()
        if kind == "projectRole" and param:
            return set(self.role_actors(key, str(param))), set()
        if kind == "anyone":
            return {PUBLIC}, set()
        if kind in ("applicationRole", "loggedin") and self.config.org_principal:
            return {self.config.org_principal}, set()
        if kind == "projectLead":
            lead = self.user_principal((self.client.project(key) or {}).get("lead"))
            return ({lead} if lead else set()), set()
        if kind in ("reporter", "assignee"):
            return set(), {kind}
        return set(), set()  # holders we cannot express (custom fields, ...) grant nothing: fail closed

    # -- roles ---------------------------------------------------------------------------------

    def role_actors(self, key: str, role_id: str) -> frozenset[str]:
        """The users and groups in a project role (cached); a role that does not exist has none."""
        if (key, role_id) not in self._actors:
            try:
                actors = self.client.get(f"rest/api/2/project/{key}/role/{role_id}") or {}
            except REMOTE_ERRORS as exc:
                if _status(exc) != 404:
                    raise
                actors = {}
            out = set()
            for actor in actors.get("actors") or []:
                if actor.get("type") == "atlassian-group-role-actor":
                    name = (actor.get("actorGroup") or {}).get("name") or actor.get("name")
                    out.add(self.group_principal(str(name)) if name else "")
                else:
                    out.add(self.user_principal(actor.get("actorUser") or actor))
            self._actors[(key, role_id)] = frozenset(p for p in out if p)
        return self._actors[(key, role_id)]

    def role_by_name(self, key: str, name: str) -> frozenset[str] | None:
        """A project role's actors by the role's name (comment visibility names roles); None: no such role."""
        if key not in self._roles:
            listed = self.client.get(f"rest/api/2/project/{key}/role") or {}
            self._roles[key] = {str(n): str(url).rstrip("/").rsplit("/", 1)[-1] for n, url in listed.items()}
        role_id = self._roles[key].get(name)
        return None if role_id is None else self.role_actors(key, role_id)

    # -- security levels -----------------------------------------------------------------------

    def level(self, project: str, level: Mapping[str, Any]) -> IssueAccess | None:
        """Members of an issue security level: the configured principals for its name (an override),
        else the members read from the project's security scheme; None when unknown (admins only)."""
        name, level_id = str(level.get("name") or ""), str(level.get("id") or "")
        if name in self.config.security_levels:
            return IssueAccess(frozenset(self.config.security_levels[name]))
        if (project, level_id) not in self._levels:
            self._levels[(project, level_id)] = self._level_members(project, level_id, name)
        return self._levels[(project, level_id)]

    def _level_members(self, project: str, level_id: str, name: str) -> IssueAccess | None:
        scheme = self._scheme(project)
        if scheme is None or not any(str(lvl.get("id")) == level_id for lvl in scheme.get("levels") or []):
            log.warning("jira project %s: security level %r not found in its scheme: admins only", project, name)
            return None
        principals: set[str] = set()
        per_issue: set[str] = set()
        start = 0
        while True:
            try:
                page = self.client.get(f"rest/api/2/issuesecurityschemes/{scheme['id']}/members",
                                       params={"issueSecurityLevelId": level_id, "startAt": start,
                                               "maxResults": PAGE, "expand": "all"}) or {}
            except REMOTE_ERRORS as exc:
                if _status(exc) not in NOT_READABLE:
                    raise
                log.warning("jira project %s: members of security level %r not readable (%s; Data Center has no "
                            "API for them): admins only unless `security_levels` names it", project, name,
                            _status(exc))
                return None
            values = page.get("values") or []
            for member in values:
                if str(member.get("issueSecurityLevelId")) == level_id:
                    found, roles = self._holder(project, member.get("holder") or {})
                    principals |= found
                    per_issue |= roles
            start += len(values)
            if not values or page.get("isLast") is True or start >= int(page.get("total") or 0):
                return IssueAccess(frozenset(principals), frozenset(per_issue))

    def _scheme(self, project: str) -> Mapping[str, Any] | None:
        if project not in self._schemes:
            try:
                self._schemes[project] = self.client.get(f"rest/api/2/project/{project}/issuesecuritylevelscheme")
            except REMOTE_ERRORS as exc:
                if _status(exc) not in NOT_READABLE:
                    raise
                self._schemes[project] = None
        return self._schemes[project]

    # -- group members and intersections -------------------------------------------------------

    def members(self, group: str) -> frozenset[str]:
        """A group's members as user principals (cached); MembershipUnknown when they cannot be read."""
        if group not in self._members:
            self._members[group] = self._read_members(group)
        found = self._members[group]
        if found is None:
            raise MembershipUnknown(self.group_principal(group))
        return found

    def members_of(self, principal: str) -> frozenset[str]:
        """The members of a group principal of this source's realm; any other set principal (another
        realm's group, Cairn's own `group:`) cannot be resolved here: MembershipUnknown."""
        prefix = f"{self.realm}:group:"
        if not principal.startswith(prefix):
            raise MembershipUnknown(principal)
        return self.members(principal[len(prefix):])

    def member_accounts(self, group: str) -> Iterator[str]:
        """The accounts of a group's active members (for membership sync); MembershipUnknown when unreadable."""
        prefix = f"{self.realm}:user:"
        yield from sorted(p[len(prefix):] for p in self.members(group) if p.startswith(prefix))

    def _read_members(self, group: str) -> frozenset[str] | None:
        out: set[str] = set()
        start = 0
        while True:
            try:
                page = self.client.get("rest/api/2/group/member", params={
                    "groupname": group, "includeInactiveUsers": "false", "startAt": start, "maxResults": PAGE}) or {}
            except REMOTE_ERRORS as exc:
                if _status(exc) == 404:
                    log.info("jira group %r does not exist: no members", group)
                    return frozenset()
                log.warning("jira group %r: members not readable: %s", group, self.clean(exc))
                return None
            values = page.get("values") or []
            out |= {self.user_principal(u) for u in values if u.get("active", True)}
            start += len(values)
            if not values or page.get("isLast") is True:
                return frozenset(p for p in out if p)

    def intersect(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        """Principals readable under both sets (connectors/principal_sets.py: `public` ⊇ the org principal
        ⊇ any named user or group; users and groups meet through group members read from Jira).
        MembershipUnknown when a needed group cannot be read."""
        return intersect(a, b, self.config.org_principal, self.members_of)

    def narrowed(self, a: frozenset[str], b: frozenset[str], what: str) -> frozenset[str]:
        """`intersect`, failing closed: nobody but admins (and a problem recorded) when it cannot be told."""
        try:
            return self.intersect(a, b)
        except MembershipUnknown as exc:
            self.problems.append(f"{what}: members of {exc.principal} could not be read; admins only until "
                                 "they can be read")
            return frozenset()

    # -- issues and comments -------------------------------------------------------------------

    def issue_access(self, fields: Mapping[str, Any], key: str) -> Access:
        project = str((fields.get("project") or {}).get("key") or key.rsplit("-", 1)[0])
        readers = self.project(project).resolve(fields, self.user_principal)
        security = fields.get("security")
        if not isinstance(security, Mapping) or (security.get("id") is None and security.get("name") is None):
            return Access(readers)
        members = self.level(project, security)
        if members is None:
            return Access()
        return Access(self.narrowed(readers, members.resolve(fields, self.user_principal), f"issue {key}"))

    def comment_access(self, issue: Access, visibility: Mapping[str, Any], project: str, where: str) -> Access:
        """A restricted comment: the issue's readers who hold the role or are in the group it names."""
        kind, value = visibility.get("type"), str(visibility.get("value") or "")
        if kind == "group" and value:
            allowed: frozenset[str] | None = frozenset({self.group_principal(value)})
        elif kind == "role" and value:
            allowed = self.role_by_name(project, value)
        else:
            allowed = None
        if not allowed:
            return Access()  # an unknown role or kind, or a role without actors: nobody but admins
        return Access(self.narrowed(issue.principals, allowed, where))
