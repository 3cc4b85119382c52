"""A fake Jira: Cloud (`/rest/api/3/search/jql`, ADF) or Data Center (`/rest/api/2/search`, wiki markup).

It applies Jira's rules the connector must mirror: permission schemes (BROWSE_PROJECTS to groups, project
roles and their actors, users, reporter/assignee, anyone, logged-in users), issue security schemes whose
levels have members (read through `/issuesecurityschemes/{id}/members` on Cloud; Data Center has no such
resource and answers 404), comment visibility by role or group, group members, deleted issues (404),
moved issues (the old key still resolves to the issue under its new key, as Jira does), issue links and
remote links.

Identity as Jira's: on Data Center a user has a username (`name`) and a user key that never changes
(`JIRAUSER<n>`, never the same as another user's); a permission scheme's user grant stores the key (the
user object comes with `expand=user`), a role actor names the username. On Cloud a user is an accountId.
`user/search` finds users by username, name or email (Data Center `?username=`, Cloud `?query=`) and shows
`emailAddress` unless the user's profile hides it (Cloud, `hidden_emails`)."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fake_http import FakeServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ZONE = ZoneInfo("Europe/Berlin")  # the API user's zone: JQL dates are read in it
EMBEDDED_COMMENTS = 2  # a search returns the first comments only, like Jira does


_KEYS: dict[str, str] = {}  # Data Center username → user key, stable for the process


def user_key(name: str) -> str:
    return _KEYS.setdefault(name, f"JIRAUSER{10100 + len(_KEYS)}")


def person(name: str, cloud: bool) -> dict[str, Any]:
    """A user as Jira shows one: Cloud's accountId (the test's `acc-<name>`), or Data Center's name and key."""
    if cloud:
        return {"accountId": name if name.startswith("acc-") else f"acc-{name}", "accountType": "atlassian",
                "displayName": name.removeprefix("acc-").title(), "active": True,
                "emailAddress": f"{name.removeprefix('acc-')}@example.com"}
    return {"name": name, "key": user_key(name), "displayName": name.title(), "active": True,
            "emailAddress": f"{name}@example.com"}


def to_adf(text: str) -> dict[str, Any]:
    """Enough ADF for the tests: `h2.` headings, {code} blocks and paragraphs."""
    content: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        heading = re.match(r"h([1-6])\.\s+(.*)", block)
        code = re.match(r"\{code(?::(\w+))?\}\n?(.*?)\{code\}", block, re.DOTALL)
        if heading:
            content.append({"type": "heading", "attrs": {"level": int(heading.group(1))},
                            "content": [{"type": "text", "text": heading.group(2)}]})
        elif code:
            content.append({"type": "codeBlock", "attrs": {"language": code.group(1) or ""},
                            "content": [{"type": "text", "text": code.group(2).strip()}]})
        elif block:
            content.append({"type": "paragraph", "content": [{"type": "text", "text": block}]})
    return {"type": "doc", "version": 1, "content": content}


@dataclass
class FakeIssue:
    key: str
    summary: str
    description: str  # wiki markup; served as ADF by the Cloud v3 search
    updated: datetime
    created: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    remote_links: list[dict[str, Any]] = field(default_factory=list)


class FakeJira:
    def __init__(self, cloud: bool = True, token: str = "jira-fake-secret-token") -> None:
        self.cloud, self.token = cloud, token
        self.issues: dict[str, FakeIssue] = {}
        self.grants: dict[str, list[dict[str, Any]]] = {}  # project key → permission scheme grants
        self.roles: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (project, role id) → actors
        self.role_names: dict[str, str] = {"10002": "Developers", "10003": "Administrators"}
        self.groups: dict[str, list[str]] = {}  # group name → member user names
        self.hidden_emails: set[str] = set()  # Cloud: users whose profile hides their email (bare names)
        self.emails: dict[str, str] = {}  # user name → email, where not <name>@example.com
        self.security: dict[str, dict[str, Any]] = {}  # project → {"id", "levels": {level id: {name, members}}}
        self.moved: dict[str, str] = {}  # old key → new key
        self.link_count = 0
        self.now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        self.page_size = 2
        self.server = FakeServer(Starlette(routes=[
            Route("/rest/api/2/myself", self._myself),
            Route("/rest/api/3/search/jql", self._search_cloud),
            Route("/rest/api/2/search", self._search_dc),
            Route("/rest/api/2/issue/{key}/comment", self._comments),
            Route("/rest/api/2/issue/{key}/remotelink", self._remote_links),
            Route("/rest/api/2/issue/{key}", self._issue),
            Route("/rest/api/2/project/{key}/permissionscheme", self._scheme),
            Route("/rest/api/2/project/{key}/issuesecuritylevelscheme", self._security_scheme),
            Route("/rest/api/2/issuesecurityschemes/{sid}/members", self._level_members),
            Route("/rest/api/2/project/{key}/role/{rid}", self._role),
            Route("/rest/api/2/project/{key}/role", self._roles),
            Route("/rest/api/2/group/member", self._group_members),
            Route("/rest/api/2/user/search", self._user_search),
            Route("/rest/api/3/user/search", self._user_search),
            Route("/rest/api/2/user", self._user),
            Route("/rest/api/2/project/{key}", self._project),
        ]))

    # -- state changes --------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    def add_issue(self, key: str, summary: str, description: str = "", **fields: Any) -> FakeIssue:
        when = self.tick()
        base = {"status": {"name": "To Do"}, "issuetype": {"name": "Bug"}, "priority": {"name": "High"},
                "labels": [], "components": [], "assignee": None, "reporter": person("alice", self.cloud),
                "security": None}
        issue = FakeIssue(key, summary, description, when, when, {**base, **fields})
        self.issues[key] = issue
        return issue

    def update(self, key: str, **changes: Any) -> None:
        issue = self.issues[key]
        for name in ("summary", "description"):
            if name in changes:
                setattr(issue, name, changes.pop(name))
        issue.fields.update(changes)
        issue.updated = self.tick()

    def comment(self, key: str, body: str, author: str = "bob", visibility: dict[str, str] | None = None) -> str:
        """Add a comment (restricted to a role or group with `visibility`); returns its id."""
        issue = self.issues[key]
        when = self.tick()
        cid = str(10100 + sum(len(i.comments) for i in self.issues.values()))
        comment: dict[str, Any] = {"id": cid, "author": person(author, self.cloud), "body": body,
                                   "created": self.stamp(when), "updated": self.stamp(when)}
        if visibility:
            comment["visibility"] = self.visibility_json(visibility)
        issue.comments.append(comment)
        issue.updated = when
        return cid

    def visibility_json(self, visibility: dict[str, str]) -> dict[str, str]:
        out = dict(visibility)
        if self.cloud and out.get("type") == "group":
            out["identifier"] = f"gid-{out['value']}"  # Cloud names groups by id as well
        return out

    def edit_comment(self, key: str, cid: str, visibility: dict[str, str] | None = None, body: str | None = None,
                     delete: bool = False) -> None:
        """Edit (visibility None: unrestricted) or delete a comment; both bump the issue's update time."""
        issue = self.issues[key]
        when = self.tick()
        comment = next(c for c in issue.comments if c["id"] == cid)
        if delete:
            issue.comments.remove(comment)
        else:
            comment.pop("visibility", None)
            if visibility:
                comment["visibility"] = self.visibility_json(visibility)
            if body is not None:
                comment["body"] = body
            comment["updated"] = self.stamp(when)
        issue.updated = when

    def move(self, key: str, new_key: str) -> None:
        """Move an issue to another project: it gets a new key; the old one still resolves to it."""
        issue = self.issues.pop(key)
        issue.key = new_key
        issue.updated = self.tick()
        self.issues[new_key] = issue
        self.moved[key] = new_key

    def delete(self, key: str) -> None:
        del self.issues[key]

    def resolve(self, key: str) -> FakeIssue | None:
        """An issue by key, following moves (Jira keeps an issue's old keys)."""
        seen = set()
        while key in self.moved and key not in self.issues and key not in seen:
            seen.add(key)
            key = self.moved[key]
        return self.issues.get(key)

    def link(self, key: str, other: str, kind: str = "Blocks", outward: str = "blocks",
             inward: str = "is blocked by") -> None:
        """An issue link from `key` to `other` (both issues show it, each from its side)."""
        self.link_count += 1
        link_type = {"id": "10000", "name": kind, "inward": inward, "outward": outward}
        for this, that, side in ((key, other, "outwardIssue"), (other, key, "inwardIssue")):
            self.issues[this].fields.setdefault("issuelinks", []).append(
                {"id": str(self.link_count), "type": link_type, "_other": that, "_side": side})
        self.issues[key].updated = self.tick()

    def remote_link(self, key: str, title: str, url: str) -> None:
        issue = self.issues[key]
        issue.remote_links.append({"id": 20000 + len(issue.remote_links), "globalId": f"system={url}",
                                   "object": {"url": url, "title": title, "icon": {}}})
        issue.updated = self.tick()

    def security_level(self, project: str, level_id: str, name: str, members: list[dict[str, Any]]) -> None:
        """A level of the project's issue security scheme, with its members (holders)."""
        scheme = self.security.setdefault(project, {"id": str(10500 + len(self.security)), "levels": {}})
        scheme["levels"][level_id] = {"name": name, "members": members}

    def grant(self, project: str, holder: dict[str, Any]) -> None:
        self.grants.setdefault(project, []).append({"id": len(self.grants.get(project, [])) + 1, "holder": holder,
                                                    "permission": "BROWSE_PROJECTS"})

    # -- JSON -----------------------------------------------------------------------------------

    def user_json(self, name: str) -> dict[str, Any]:
        """`person`, with this instance's email (hidden on Cloud when the profile hides it)."""
        bare = name.removeprefix("acc-")
        user = {**person(name, self.cloud), "emailAddress": self.emails.get(bare, f"{bare}@example.com")}
        if self.cloud and bare in self.hidden_emails:
            user.pop("emailAddress")
        return user

    def known_users(self) -> list[str]:
        """Every user name the instance knows of (bare names: `alice`, also on Cloud)."""
        names = {m.removeprefix("acc-") for members in self.groups.values() for m in members} | set(self.emails)
        names |= {str(a.get("name")) for actors in self.roles.values() for a in actors
                  if a.get("type") == "atlassian-user-role-actor" and a.get("name")}
        return sorted(names)

    def holder_json(self, holder: dict[str, Any]) -> dict[str, Any]:
        """A grant's holder as Jira shows it: a Data Center user grant stores the user key, with the user."""
        if holder.get("type") == "user" and not self.cloud and holder.get("parameter"):
            name = str(holder["parameter"])
            return {**holder, "parameter": user_key(name), "user": person(name, False)}
        return holder

    @staticmethod
    def stamp(when: datetime) -> str:
        local = when.astimezone(ZONE)
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.strftime("%z")

    def links_json(self, issue: FakeIssue) -> list[dict[str, Any]]:
        out = []
        for link in issue.fields.get("issuelinks") or []:
            other = self.resolve(link["_other"])
            if other is None:
                continue  # a deleted issue's links go with it
            brief = {"id": str(10000 + abs(hash(other.key)) % 10000), "key": other.key,
                     "fields": {"summary": other.summary, "status": other.fields.get("status")}}
            out.append({"id": link["id"], "type": link["type"], link["_side"]: brief})
        return out

    def issue_json(self, issue: FakeIssue, fields: str, v3: bool) -> dict[str, Any]:
        comments = [{**c, "body": to_adf(c["body"]) if v3 else c["body"]} for c in issue.comments]
        project = issue.key.rsplit("-", 1)[0]
        level = issue.fields.get("security")
        data = {**issue.fields, "issuelinks": self.links_json(issue),
                "security": {"id": level["id"], "name": level["name"]} if level else None,
                "summary": issue.summary, "description": to_adf(issue.description) if v3 else issue.description,
                "updated": self.stamp(issue.updated), "created": self.stamp(issue.created),
                "project": {"key": project, "name": project.title()},
                "comment": {"comments": comments[:EMBEDDED_COMMENTS], "maxResults": EMBEDDED_COMMENTS,
                            "total": len(comments), "startAt": 0}}
        wanted = set(fields.split(",")) if fields and fields not in ("*all", "*navigable") else set(data)
        return {"id": str(10000 + abs(hash(issue.key)) % 10000), "key": issue.key,
                "self": f"{self.server.url}/rest/api/2/issue/{issue.key}",
                "fields": {k: v for k, v in data.items() if k in wanted}}

    def matching(self, jql: str) -> list[FakeIssue]:
        """The JQL subset the connector writes: project, labels, updated >= (user's zone), ORDER BY updated."""
        found = list(self.issues.values())
        project = re.search(r'project\s*=\s*"?(\w+)"?', jql)
        if project:
            found = [i for i in found if i.key.rsplit("-", 1)[0] == project.group(1)]
        key = re.search(r'\bkey\s*=\s*"?([\w-]+)"?', jql)
        if key:
            found = [i for i in found if i is self.resolve(key.group(1))]
        if re.search(r"\blevel\s+is\s+not\s+EMPTY", jql, re.IGNORECASE):
            found = [i for i in found if i.fields.get("security")]
        label = re.search(r"labels\s*=\s*\"?([\w-]+)\"?", jql)
        if label:
            found = [i for i in found if label.group(1) in i.fields.get("labels", [])]
        since = re.search(r'updated\s*>=\s*"([^"]+)"', jql)
        if since:
            floor = datetime.strptime(since.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=ZONE)
            found = [i for i in found if i.updated.replace(second=0, microsecond=0) >= floor]
        return sorted(found, key=lambda i: (i.updated, i.key))

    # -- the app --------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(f"bot@example.com:{self.token}".encode()).decode()
        return header in (f"Bearer {self.token}", basic)

    async def _myself(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        return JSONResponse({**person("cairn-bot", self.cloud), "timeZone": str(ZONE)})

    async def _search_cloud(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        q = request.query_params
        found = self.matching(q.get("jql", ""))
        start = int(base64.b64decode(q["nextPageToken"]).decode()) if q.get("nextPageToken") else 0
        size = min(int(q.get("maxResults", 50)), self.page_size)
        page = found[start:start + size]
        body: dict[str, Any] = {"issues": [self.issue_json(i, q.get("fields", ""), v3=True) for i in page],
                                "isLast": start + size >= len(found)}
        if not body["isLast"]:
            body["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
        return JSONResponse(body)

    async def _search_dc(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        q = request.query_params
        found = self.matching(q.get("jql", ""))
        start, size = int(q.get("startAt", 0)), min(int(q.get("maxResults", 50)), self.page_size)
        return JSONResponse({"startAt": start, "maxResults": size, "total": len(found),
                             "issues": [self.issue_json(i, q.get("fields", ""), v3=False)
                                        for i in found[start:start + size]]})

    async def _issue(self, request: Request) -> Response:
        issue = self.resolve(request.path_params["key"]) if self._authorised(request) else None
        if issue is None:
            return JSONResponse({"errorMessages": ["Issue does not exist or you do not have permission to see it."]},
                                404)
        return JSONResponse(self.issue_json(issue, request.query_params.get("fields", ""), v3=False))

    async def _comments(self, request: Request) -> Response:
        issue = self.resolve(request.path_params["key"]) if self._authorised(request) else None
        if issue is None:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        start = int(request.query_params.get("startAt", 0))
        size = min(int(request.query_params.get("maxResults", 50)), 3)
        return JSONResponse({"startAt": start, "maxResults": size, "total": len(issue.comments),
                             "comments": issue.comments[start:start + size]})

    async def _scheme(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        if key not in self.grants:
            return JSONResponse({"errorMessages": ["You cannot view the permission scheme"]}, 403)
        return JSONResponse({"id": 10000, "name": f"{key} scheme", "permissions": [
            {**grant, "holder": self.holder_json(grant["holder"])} for grant in self.grants[key]]})

    async def _remote_links(self, request: Request) -> Response:
        issue = self.resolve(request.path_params["key"]) if self._authorised(request) else None
        if issue is None:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        return JSONResponse(issue.remote_links)

    async def _role(self, request: Request) -> Response:
        rid = request.path_params["rid"]
        actors = self.roles.get((request.path_params["key"], rid))
        if actors is None or not self._authorised(request):
            return JSONResponse({"errorMessages": ["No role"]}, 404)
        return JSONResponse({"id": int(rid), "name": self.role_names.get(rid, rid), "actors": actors})

    async def _roles(self, request: Request) -> Response:
        """Role name → the role's URL in this project (GET /project/{key}/role)."""
        key = request.path_params["key"]
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        return JSONResponse({name: f"{self.server.url}/rest/api/2/project/{key}/role/{rid}"
                             for rid, name in self.role_names.items()})

    async def _group_members(self, request: Request) -> Response:
        q = request.query_params
        name = q.get("groupname", "")
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        if name not in self.groups:
            return JSONResponse({"errorMessages": [f"Group {name!r} does not exist."]}, 404)
        members = [self.user_json(n) for n in self.groups[name]]
        start, size = int(q.get("startAt", 0)), min(int(q.get("maxResults", 50)), 2)
        return JSONResponse({"self": str(request.url), "maxResults": size, "startAt": start, "total": len(members),
                             "isLast": start + size >= len(members), "values": members[start:start + size]})

    async def _user(self, request: Request) -> Response:
        """Data Center `GET /rest/api/2/user?username=` (or `key=`)."""
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        q = request.query_params
        name = q.get("username") or next((n for n, k in _KEYS.items() if k == q.get("key")), "")
        if self.cloud or not name or name not in self.known_users():
            return JSONResponse({"errorMessages": ["The user does not exist"]}, 404)
        return JSONResponse(self.user_json(name))

    async def _user_search(self, request: Request) -> Response:
        """`user/search`: users whose username, display name or email starts with the term (Data Center
        `?username=`, Cloud `?query=`), active only; Cloud answers with Atlassian accounts (its v3 path)."""
        if not self._authorised(request):
            return JSONResponse({"errorMessages": ["Unauthorized"]}, 401)
        cloud_path = request.url.path.startswith("/rest/api/3/")
        if cloud_path != self.cloud:
            return JSONResponse({"errorMessages": ["Not found"]}, 404)
        term = (request.query_params.get("query" if self.cloud else "username") or "").strip().lower()
        found = []
        for bare in self.known_users():
            name = f"acc-{bare}" if self.cloud else bare
            email = self.emails.get(bare, f"{bare}@example.com").lower()
            if term and (bare.startswith(term) or email.startswith(term)):
                found.append(self.user_json(name))
        return JSONResponse(found)

    async def _security_scheme(self, request: Request) -> Response:
        key = request.path_params["key"]
        scheme = self.security.get(key) if self._authorised(request) else None
        if scheme is None:
            return JSONResponse({"errorMessages": ["No issue security scheme"]}, 404)
        return JSONResponse({"id": int(scheme["id"]), "name": f"{key} security", "defaultSecurityLevelId": -1,
                             "levels": [{"id": lid, "name": lvl["name"], "description": ""}
                                        for lid, lvl in scheme["levels"].items()]})

    async def _level_members(self, request: Request) -> Response:
        """Cloud only: Data Center's REST API has no resource for a level's members."""
        if not self.cloud or not self._authorised(request):
            return JSONResponse({"errorMessages": ["Not found"]}, 404)
        scheme = next((s for s in self.security.values() if s["id"] == request.path_params["sid"]), None)
        if scheme is None:
            return JSONResponse({"errorMessages": ["Not found"]}, 404)
        wanted = set(request.query_params.getlist("issueSecurityLevelId"))
        values = [{"id": 30000 + n, "issueSecurityLevelId": int(lid), "holder": holder}
                  for lid, lvl in scheme["levels"].items() if not wanted or lid in wanted
                  for n, holder in enumerate(lvl["members"])]
        q = request.query_params
        start, size = int(q.get("startAt", 0)), min(int(q.get("maxResults", 50)), 2)
        return JSONResponse({"maxResults": size, "startAt": start, "total": len(values),
                             "isLast": start + size >= len(values), "values": values[start:start + size]})

    async def _project(self, request: Request) -> Response:
        key = request.path_params["key"]
        return JSONResponse({"key": key, "name": key.title(), "lead": person("lena", self.cloud)})
