"""A fake GitLab speaking the v4 REST shapes python-gitlab calls, plus git smart HTTP for clones.

It keeps GitLab's state that decides who reads what (visibility, feature access levels, direct members, group
members inherited by projects, groups a project is shared with and the share's maximum role, blocked users,
confidential issues, internal notes), answers `members/all` the way GitLab does (members of a shared group
under their role in that group, not capped by the share; a direct project row preferred), and `can_read` is
GitLab's rule written from the user's side, an oracle for tests independent of the connector's code.

Identity: every user has a numeric id that never changes (`user_id`) and a primary email (`<name>@example.com`
unless `emails` says otherwise). `GET /users?search=` finds users by username, name or exact email, and shows
the primary email only to an admin token (`admin`), as GitLab does. Groups can be shared with groups
(`share_group`): `groups/:id/members/all` lists the invited group's members under their role in that group (not
capped), and `group_role` is GitLab's rule for a group's effective members (capped by the share)."""
from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
from fake_http import FakeServer, gitlab_paged
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FEATURES = ("issues", "merge_requests", "repository")
GUEST, PLANNER, REPORTER = 10, 15, 20
FEATURE_ROLE = {"issues": GUEST, "merge_requests": REPORTER, "repository": REPORTER}


_IDS: dict[str, int] = {}  # username → numeric id, stable for the process (ids are never reused)


def user_id(username: str) -> int:
    return _IDS.setdefault(username, 1000 + len(_IDS))


def _user(username: str) -> dict[str, Any]:
    return {"id": user_id(username), "username": username, "name": username.title(), "state": "active",
            "avatar_url": None, "web_url": f"https://gitlab.example/{username}"}


@dataclass
class FakeProject:
    id: int
    path: str  # full path: group/sub/name
    visibility: str = "private"
    repo: Path | None = None  # a git work tree served over smart HTTP
    members: dict[str, int] = field(default_factory=dict)  # username → access level
    shares: dict[str, int] = field(default_factory=dict)  # group full path → access level
    levels: dict[str, str] = field(default_factory=lambda: dict.fromkeys(FEATURES, "enabled"))
    items: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: {"issues": {}, "merge_requests": {}})
    notes: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


class FakeGitLab:
    """State plus the Starlette app. Every change advances a fake clock by a minute (updated_at)."""

    def __init__(self, token: str = "glpat-fake-secret-token") -> None:
        self.token = token
        self.projects: dict[int, FakeProject] = {}
        self.groups: dict[str, int] = {}
        self.group_members: dict[str, dict[str, int]] = {}  # group full path → username → access level
        self.blocked: set[str] = set()  # usernames whose account is blocked
        self.group_shares: dict[str, dict[str, int]] = {}  # group → invited group → the share's maximum role
        self.emails: dict[str, str] = {}  # username → primary email (default <username>@example.com)
        self.admin = True  # the token is an admin's: user search matches and shows primary emails
        self.now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        self.max_per_page = 100  # GitLab's cap; tests lower it to page through few items
        self.server = FakeServer(Starlette(routes=self._routes()))

    # -- state changes used by tests ----------------------------------------------------------

    def tick(self) -> str:
        self.now += timedelta(minutes=1)
        return self.now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def add_group(self, path: str, members: dict[str, int] | None = None) -> None:
        self.groups[path] = len(self.groups) + 1
        self.group_members[path] = dict(members or {})

    def share_group(self, group: str, invited: str, level: int) -> None:
        """Share `group` with `invited`: the invited group's members get up to `level` in it."""
        self.group_shares.setdefault(group, {})[invited] = level

    def email(self, username: str) -> str:
        return self.emails.get(username, f"{username}@example.com")

    def add_project(self, path: str, visibility: str = "private", repo: Path | None = None,
                    members: dict[str, int] | None = None, shares: dict[str, int] | None = None) -> FakeProject:
        project = FakeProject(len(self.projects) + 100, path, visibility, repo, dict(members or {}), dict(shares or {}))
        self.projects[project.id] = project
        return project

    def add_item(self, project: FakeProject, kind: str, title: str, description: str = "", **extra: Any) -> dict:
        iid = max(project.items[kind], default=0) + 1
        stamp = self.tick()
        item = {"id": project.id * 1000 + iid, "iid": iid, "project_id": project.id, "title": title,
                "description": description, "state": "opened", "created_at": stamp, "updated_at": stamp,
                "labels": [], "milestone": None, "author": _user(extra.pop("author", "alice")), "assignees": [],
                "confidential": False, "web_url": f"{self.server.url}/{project.path}/-/{kind}/{iid}",
                "user_notes_count": 0}
        if kind == "merge_requests":
            item.update({"source_branch": "fix", "target_branch": "main", "draft": False, "reviewers": [],
                         "merge_status": "can_be_merged"})
        assignees = extra.pop("assignees", [])
        item["assignees"] = [_user(a) for a in assignees]
        item.update(extra)
        project.items[kind][iid] = item
        project.notes[(kind, iid)] = []
        return item

    def update_item(self, project: FakeProject, kind: str, iid: int, **changes: Any) -> None:
        project.items[kind][iid].update(changes, updated_at=self.tick())

    def add_note(self, project: FakeProject, kind: str, iid: int, body: str, author: str = "bob",
                 **extra: Any) -> None:
        stamp = self.tick()
        notes = project.notes[(kind, iid)]
        notes.append({"id": len(notes) + 1, "body": body, "author": _user(author), "created_at": stamp,
                      "updated_at": stamp, "system": False, "internal": False, "confidential": False,
                      "noteable_iid": iid, "noteable_type": "Issue" if kind == "issues" else "MergeRequest", **extra})
        project.items[kind][iid]["updated_at"] = stamp

    def delete_item(self, project: FakeProject, kind: str, iid: int) -> None:
        del project.items[kind][iid]

    def delete_note(self, project: FakeProject, kind: str, iid: int, note_id: int) -> None:
        """GitLab touches the noteable when one of its notes goes."""
        project.notes[(kind, iid)] = [n for n in project.notes[(kind, iid)] if n["id"] != note_id]
        project.items[kind][iid]["updated_at"] = self.tick()

    # -- GitLab's rules, from the user's side (the tests' oracle) -----------------------------

    def _ancestors(self, path: str) -> list[str]:
        """`a/b/c` → [`a/b/c`, `a/b`, `a`] that are groups."""
        parts = path.split("/")
        return [g for g in ("/".join(parts[:n]) for n in range(len(parts), 0, -1)) if g in self.groups]

    def _group_level(self, group: str, user: str) -> int:
        return max((self.group_members.get(g, {}).get(user, 0) for g in self._ancestors(group)), default=0)

    def group_role(self, group: str, user: str) -> int:
        """The user's effective role in a group: inherited from its ancestors, and through each group any of
        them is shared with, capped by the share (an invited group's own shares are not followed)."""
        if user in self.blocked:
            return 0
        levels = [self._group_level(group, user)]
        levels += [min(self._group_level(invited, user), cap) for g in self._ancestors(group)
                   for invited, cap in self.group_shares.get(g, {}).items()]
        return max(levels)

    def role(self, project: FakeProject, user: str) -> int:
        """The user's role in the project: the highest of direct, inherited, and shared (capped by the share)."""
        if user in self.blocked:
            return 0
        levels = [project.members.get(user, 0), self._group_level(project.path.rpartition("/")[0], user)]
        levels += [min(self._group_level(group, user), cap) for group, cap in project.shares.items()]
        return max(levels)

    def can_read(self, user: str, signed_in: bool, project: FakeProject, kind: str = "repository",
                 iid: int | None = None, note_id: int | None = None) -> bool:
        """Whether GitLab lets `user` (an internal, signed-in account when `signed_in`) read the code, an item or
        one of its notes."""
        signed_in = signed_in and user not in self.blocked  # a blocked account reads as an anonymous visitor
        role = self.role(project, user)

        def feature(name: str) -> bool:
            level = project.levels[name]
            if level == "disabled":
                return False
            everyone = project.visibility == "public" or (project.visibility == "internal" and signed_in)
            return (level == "enabled" and everyone) or role >= FEATURE_ROLE[name]

        if kind == "repository":
            return project.repo is not None and feature("repository")
        if not feature(kind) or (kind == "merge_requests" and not feature("repository")):
            return False
        item = project.items[kind].get(iid or 0)
        if item is None:
            return False
        if item.get("confidential"):
            people = {item["author"]["username"], *(a["username"] for a in item["assignees"])}
            if role < PLANNER and user not in people:
                return False
        if note_id is not None:
            note = next((n for n in project.notes[(kind, iid or 0)] if n["id"] == note_id), None)
            return note is not None and (not note.get("internal") or role >= REPORTER)
        return True

    # -- JSON shapes --------------------------------------------------------------------------

    def project_json(self, p: FakeProject) -> dict[str, Any]:
        namespace, _, name = p.path.rpartition("/")
        return {"id": p.id, "name": name, "path": name, "path_with_namespace": p.path,
                "name_with_namespace": p.path.replace("/", " / "), "visibility": p.visibility,
                "namespace": {"id": 1, "full_path": namespace, "kind": "group"},
                "default_branch": "main" if p.repo else None, "empty_repo": p.repo is None, "archived": False,
                "http_url_to_repo": f"{self.server.url}/{p.path}.git", "ssh_url_to_repo": f"git@fake:{p.path}.git",
                "web_url": f"{self.server.url}/{p.path}",
                **{f"{f}_access_level": p.levels[f] for f in FEATURES},
                "shared_with_groups": [{"group_id": self.groups[g], "group_name": g.rsplit("/", 1)[-1],
                                        "group_full_path": g, "group_access_level": level}
                                       for g, level in p.shares.items()]}

    def member_rows(self, levels: dict[str, int]) -> list[dict[str, Any]]:
        return [{**_user(u), "access_level": level, "state": "blocked" if u in self.blocked else "active"}
                for u, level in sorted(levels.items()) if level > 0]

    # -- the app ------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api = "/api/v4"
        return [
            Route(api + "/groups/{gid:path}/projects", self._group_projects),
            Route(api + "/groups/{gid:path}/members/all", self._group_members),
            Route(api + "/groups/{gid:path}", self._group),
            Route(api + "/users", self._users),
            Route(api + "/projects/{pid:path}/members/all", self._members),
            Route(api + "/projects/{pid:path}/{kind:str}/{iid:int}/notes", self._notes),
            Route(api + "/projects/{pid:path}/{kind:str}/{iid:int}", self._item),
            Route(api + "/projects/{pid:path}/{kind:str}", self._items),
            Route(api + "/projects/{pid:path}", self._project),
            Route("/{repo:path}.git/info/refs", self._git),
            Route("/{repo:path}.git/git-upload-pack", self._git, methods=["POST"]),
        ]

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("private-token") == self.token

    def _find(self, pid: str) -> FakeProject | None:
        for p in self.projects.values():
            if str(p.id) == pid or p.path == pid:
                return p
        return None

    async def _group_projects(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"message": "401 Unauthorized"}, 401)
        gid = request.path_params["gid"]
        if gid not in self.groups:
            return JSONResponse({"message": "404 Group Not Found"}, 404)
        nested = request.query_params.get("include_subgroups", "").lower() == "true"  # python-gitlab sends True
        found = [p for p in sorted(self.projects.values(), key=lambda p: p.id)
                 if p.path.rpartition("/")[0] == gid or (nested and p.path.startswith(gid + "/"))]
        return gitlab_paged([self.project_json(p) for p in found], request, self.max_per_page)

    async def _project(self, request: Request) -> Response:
        project = self._find(request.path_params["pid"]) if self._authorised(request) else None
        if project is None:
            return JSONResponse({"message": "404 Project Not Found"}, 404)
        return JSONResponse(self.project_json(project))

    async def _members(self, request: Request) -> Response:
        """GitLab's MembersFinder: direct members first, else the highest group row, where rows of groups the
        project is shared with (and their ancestors) carry the role in that group, not capped by the share."""
        project = self._find(request.path_params["pid"]) if self._authorised(request) else None
        if project is None:
            return JSONResponse({"message": "404 Project Not Found"}, 404)
        groups = self._ancestors(project.path.rpartition("/")[0])
        groups += [g for shared in project.shares for g in self._ancestors(shared)]
        levels: dict[str, int] = {}
        for group in groups:
            for user, level in self.group_members.get(group, {}).items():
                levels[user] = max(level, levels.get(user, 0))
        levels.update(project.members)
        return gitlab_paged(self.member_rows(levels), request)

    def _group_path(self, request: Request) -> str | None:
        gid = request.path_params["gid"]
        path = next((p for p, i in self.groups.items() if gid in (p, str(i))), None)
        return path if self._authorised(request) else None

    async def _group(self, request: Request) -> Response:
        """`GET /groups/:id`: the group with the groups it is shared with."""
        path = self._group_path(request)
        if path is None:
            return JSONResponse({"message": "404 Group Not Found"}, 404)
        shares = [{"group_id": self.groups[g], "group_name": g.rsplit("/", 1)[-1], "group_full_path": g,
                   "group_access_level": level} for g, level in self.group_shares.get(path, {}).items()]
        return JSONResponse({"id": self.groups[path], "full_path": path, "path": path.rsplit("/", 1)[-1],
                             "name": path.rsplit("/", 1)[-1], "visibility": "private", "shared_with_groups": shares})

    async def _group_members(self, request: Request) -> Response:
        """Members of the group and its ancestors, and of the groups they are shared with under their role
        in that group (not capped by the share); the highest row per user."""
        path = self._group_path(request)
        if path is None:
            return JSONResponse({"message": "404 Group Not Found"}, 404)
        groups = self._ancestors(path)
        groups += [g for a in self._ancestors(path) for invited in self.group_shares.get(a, {})
                   for g in self._ancestors(invited)]
        levels: dict[str, int] = {}
        for group in groups:
            for user, level in self.group_members.get(group, {}).items():
                levels[user] = max(level, levels.get(user, 0))
        return gitlab_paged(self.member_rows(levels), request)

    async def _users(self, request: Request) -> Response:
        """`GET /users?search=`: username or name containing the term, or the exact primary email (an admin's
        search; others match public emails only, and no user here has one). `email` is shown to admins."""
        if not self._authorised(request):
            return JSONResponse({"message": "401 Unauthorized"}, 401)
        term = request.query_params.get("search", "").strip().lower()
        names = sorted({u for p in self.projects.values() for u in p.members}
                       | {u for members in self.group_members.values() for u in members} | set(self.emails))
        found = [u for u in names if term and (term in u.lower() or (self.admin and self.email(u).lower() == term))]
        rows = [{**_user(u), "state": "blocked" if u in self.blocked else "active",
                 **({"email": self.email(u)} if self.admin else {})} for u in found]
        return gitlab_paged(rows, request)

    async def _items(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in ("issues", "merge_requests"):  # `group/project` itself (the path was %2F-decoded)
            request.path_params["pid"] = f"{request.path_params['pid']}/{kind}"
            return await self._project(request)
        project = self._find(request.path_params["pid"]) if self._authorised(request) else None
        if project is None or kind not in project.items:
            return JSONResponse({"message": "404 Not Found"}, 404)
        items = list(project.items[kind].values())
        after = request.query_params.get("updated_after")
        if after:
            since = datetime.fromisoformat(after)
            items = [i for i in items if datetime.fromisoformat(i["updated_at"]) >= since]
        key = request.query_params.get("order_by", "created_at")
        items.sort(key=lambda i: (i[key], i["id"]), reverse=request.query_params.get("sort", "desc") == "desc")
        return gitlab_paged(items, request, self.max_per_page)

    async def _item(self, request: Request) -> Response:
        project = self._find(request.path_params["pid"]) if self._authorised(request) else None
        kind, iid = request.path_params["kind"], request.path_params["iid"]
        if project is None or iid not in project.items.get(kind, {}):
            return JSONResponse({"message": "404 Not found"}, 404)
        return JSONResponse(project.items[kind][iid])

    async def _notes(self, request: Request) -> Response:
        project = self._find(request.path_params["pid"]) if self._authorised(request) else None
        kind, iid = request.path_params["kind"], request.path_params["iid"]
        if project is None or (kind, iid) not in project.notes or iid not in project.items[kind]:
            return JSONResponse({"message": "404 Not found"}, 404)
        notes = sorted(project.notes[(kind, iid)], key=lambda n: n["created_at"],
                       reverse=request.query_params.get("sort", "desc") == "desc")
        return gitlab_paged(notes, request, self.max_per_page)

    async def _git(self, request: Request) -> Response:
        """git smart HTTP through `git http-backend`, behind HTTP basic auth (oauth2:<token>)."""
        expected = "Basic " + base64.b64encode(f"oauth2:{self.token}".encode()).decode()
        project = self._find(request.path_params["repo"])
        if project is None or project.repo is None:
            return Response("not found", 404)
        if request.headers.get("authorization") != expected:
            return Response("HTTP Basic: Access denied", 401, headers={"WWW-Authenticate": 'Basic realm="GitLab"'})
        service = request.url.path.rsplit("/", 1)[-1] if request.method == "POST" else "info/refs"
        env = {"GIT_PROJECT_ROOT": str(project.repo / ".git"), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": f"/{service}", "REQUEST_METHOD": request.method,
               "QUERY_STRING": request.url.query, "CONTENT_TYPE": request.headers.get("content-type", ""),
               "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
               "GIT_PROTOCOL": request.headers.get("git-protocol", ""), "PATH": os.environ.get("PATH", "")}
        body = await request.body()
        proc = await anyio.to_thread.run_sync(lambda: subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False))
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        return Response(payload, status, headers=headers)
