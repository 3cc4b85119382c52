"""A fake Confluence speaking the v1 REST shapes, Cloud or Data Center: CQL content search, content,
spaces and their view permissions, view restrictions, page comments, labels, groups and their members.

Its rule for who may read a page is Confluence's (`can_read`): view permission on the space (a user,
one of their groups, or anonymous access) AND, for the page and every ancestor that has a read
restriction, being named by it (as a user or through a group)."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fake_http import FakeServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeComment:
    id: str
    author: str
    body: str  # storage format
    when: datetime
    version: int = 1


@dataclass
class FakePage:
    id: str
    space: str
    title: str
    body: str  # storage format
    parent: str | None = None
    type: str = "page"
    version: int = 1
    when: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    labels: list[str] = field(default_factory=list)  # a label change bumps neither version nor lastmodified
    users: list[str] = field(default_factory=list)  # view restriction: user ids (account ids / usernames)
    groups: list[str] = field(default_factory=list)  # view restriction: group names
    status: str = "current"  # or "trashed"
    comments: list[FakeComment] = field(default_factory=list)


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeConfluence:
    def __init__(self, token: str = "confluence-fake-secret-token", cloud: bool = True) -> None:
        self.token = token
        self.cloud = cloud
        self.context = "/wiki" if cloud else "/confluence"
        self.pages: dict[str, FakePage] = {}
        self.spaces: dict[str, dict[str, Any]] = {}  # key → {"id", "users", "groups", "anonymous"}
        self.groups: dict[str, list[str]] = {}  # group name → member user ids
        self.now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        self.page_size = 2
        self.member_page_size = 2
        api = f"{self.context}/rest/api"
        routes = [
            Route(f"{api}/space/{{key}}", self._space),
            Route(f"{api}/content/search", self._search),
            Route(f"{api}/content/{{id}}/restriction/byOperation/read", self._restriction),
            Route(f"{api}/content/{{id}}/child/comment", self._comments),
            Route(f"{api}/content/{{id}}", self._content),
            Route(f"{api}/group/{{name}}/member", self._members),
        ]
        if not cloud:  # Data Center: space permissions have their own resource, users are looked up by key
            routes += [Route(f"{api}/space/{{key}}/permissions", self._space_permissions),
                       Route(f"{api}/user", self._user)]
        self.server = FakeServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.context}"

    # -- state changes --------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    def add_space(self, key: str, users: list[str] = (), groups: list[str] = (), anonymous: bool = False) -> None:
        self.spaces[key] = {"id": 1000 + len(self.spaces), "users": list(users), "groups": list(groups),
                            "anonymous": anonymous}

    def add_group(self, name: str, members: list[str]) -> None:
        self.groups[name] = list(members)

    def add_page(self, space: str, title: str, body: str, parent: str | None = None, **extra: Any) -> FakePage:
        page = FakePage(str(5000 + len(self.pages)), space, title, body, parent, when=self.tick(), **extra)
        self.pages[page.id] = page
        return page

    def edit(self, page_id: str, **changes: Any) -> None:
        page = self.pages[page_id]
        for name, value in changes.items():
            setattr(page, name, value)
        page.version += 1
        page.when = self.tick()

    def comment(self, page_id: str, author: str, body: str) -> FakeComment:
        """A new comment: the page's own version and lastmodified do not change."""
        comment = FakeComment(str(9000 + sum(len(p.comments) for p in self.pages.values())), author, body,
                              self.tick())
        self.pages[page_id].comments.append(comment)
        return comment

    # -- Confluence's rule ----------------------------------------------------------------------

    def member_of(self, user: str) -> set[str]:
        return {name for name, members in self.groups.items() if user in members}

    def named(self, user: str, users: list[str], groups: list[str]) -> bool:
        return user in users or bool(self.member_of(user) & set(groups))

    def can_read(self, user: str | None, page: FakePage) -> bool:
        """Whether `user` (None: anonymous) may view the page: space permission and every restriction."""
        if page.status != "current":
            return False
        space = self.spaces[page.space]
        if not (space["anonymous"] or (user is not None and self.named(user, space["users"], space["groups"]))):
            return False
        for level in [*self.ancestors(page), page]:
            if (level.users or level.groups) and (user is None or not self.named(user, level.users, level.groups)):
                return False
        return True

    # -- JSON -----------------------------------------------------------------------------------

    def user_json(self, user: str) -> dict[str, Any]:
        if self.cloud:
            return {"type": "known", "accountId": user, "accountType": "atlassian", "displayName": user.title()}
        return {"type": "known", "username": user, "userKey": f"key-{user}", "displayName": user.title()}

    def subjects(self, users: list[str], groups: list[str]) -> dict[str, Any]:
        return {"user": {"results": [self.user_json(u) for u in users], "size": len(users), "start": 0,
                         "limit": 200},
                "group": {"results": [{"type": "group", "name": g} for g in groups], "size": len(groups),
                          "start": 0, "limit": 200}}

    def ancestors(self, page: FakePage) -> list[FakePage]:
        chain, parent = [], page.parent
        while parent:
            chain.insert(0, self.pages[parent])
            parent = self.pages[parent].parent
        return chain

    def content_json(self, page: FakePage, expand: str) -> dict[str, Any]:
        webui = f"/spaces/{page.space}/pages/{page.id}/{page.title.replace(' ', '+')}"
        data: dict[str, Any] = {"id": page.id, "type": page.type, "status": page.status, "title": page.title,
                                "_links": {"webui": webui, "self": f"{self.url}/rest/api/content/{page.id}"},
                                "_expandable": {}}
        if "space" in expand:
            data["space"] = {"key": page.space, "name": page.space.title(), "id": self.spaces[page.space]["id"]}
        if "version" in expand:
            data["version"] = {"number": page.version, "when": _stamp(page.when), "by": self.user_json("alice")}
        if "ancestors" in expand:
            data["ancestors"] = [{"id": a.id, "type": "page", "title": a.title} for a in self.ancestors(page)]
        if "body.storage" in expand:
            data["body"] = {"storage": {"value": page.body, "representation": "storage"}}
        if "metadata.labels" in expand:
            data["metadata"] = {"labels": {"results": [{"prefix": "global", "name": n, "id": str(i)}
                                                       for i, n in enumerate(page.labels)], "size": len(page.labels)}}
        if "restrictions.read" in expand:
            data["restrictions"] = {"read": {"operation": "read",
                                             "restrictions": self.subjects(page.users, page.groups)}}
        return data

    def matching(self, cql: str) -> list[FakePage]:
        found = [p for p in self.pages.values() if p.status == "current"]  # CQL finds no trashed content
        space = re.search(r'space\s*=\s*"?(\w+)"?', cql)
        if space:
            found = [p for p in found if p.space == space.group(1)]
        types = re.search(r"type\s+in\s*\(([^)]*)\)", cql)
        if types:
            allowed = {t.strip() for t in types.group(1).split(",")}
            found = [p for p in found if p.type in allowed]
        since = re.search(r'lastmodified\s*>=\s*"([^"]+)"', cql)
        if since:
            floor = datetime.strptime(since.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            found = [p for p in found if p.when.replace(second=0, microsecond=0) >= floor]
        return sorted(found, key=lambda p: (p.when, p.id))

    # -- the app --------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        basic = "Basic " + base64.b64encode(f"bot@example.com:{self.token}".encode()).decode()
        return request.headers.get("authorization", "") in (f"Bearer {self.token}", basic)

    def _paged(self, items: list[Any], request: Request, size: int) -> JSONResponse:
        """start/limit paging with `_links.next` (relative to the context path), as v1 list resources do."""
        q = request.query_params
        start = int(q.get("start", 0))
        limit = min(int(q.get("limit", 25)), size)
        chunk = items[start:start + limit]
        links: dict[str, Any] = {"base": self.url, "context": self.context}
        if start + limit < len(items):
            rest = request.url.path[len(self.context):]
            links["next"] = f"{rest}?{urlencode({**dict(q), 'start': start + limit, 'limit': limit})}"
        return JSONResponse({"results": chunk, "start": start, "limit": limit, "size": len(chunk), "_links": links})

    async def _space(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        if key not in self.spaces:
            return JSONResponse({"statusCode": 404, "message": f"No space with key : {key}"}, 404)
        space = self.spaces[key]
        body: dict[str, Any] = {"id": space["id"], "key": key, "name": key.title(), "type": "global"}
        if self.cloud and "permissions" in request.query_params.get("expand", "") and not space.get("hidden"):
            read = {"operation": "read", "targetType": "space"}
            body["permissions"] = [
                {"id": 1, "subjects": self.subjects(space["users"], space["groups"]), "operation": read,
                 "anonymousAccess": False, "unlicensedAccess": False},
                {"id": 2, "subjects": self.subjects(["admin"], []), "anonymousAccess": False,
                 "operation": {"operation": "administer", "targetType": "space"}, "unlicensedAccess": False},
                {"id": 3, "operation": read, "anonymousAccess": space["anonymous"], "unlicensedAccess": False}]
        return JSONResponse(body)

    async def _space_permissions(self, request: Request) -> Response:
        """Data Center: `GET /rest/api/space/{key}/permissions`, every permission granted in the space."""
        key = request.path_params["key"]
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        if key not in self.spaces:
            return JSONResponse({"statusCode": 404, "message": f"No space with key : {key}"}, 404)
        space = self.spaces[key]
        if space.get("hidden"):
            return JSONResponse({"statusCode": 403, "message": "Not permitted to view space permissions"}, 403)
        subjects = ([{"type": "user", "userKey": f"key-{u}", "displayName": u.title()} for u in space["users"]]
                    + [{"type": "group", "groupName": g, "displayName": g} for g in space["groups"]]
                    + ([{"type": "anonymous", "displayName": "Anonymous"}] if space["anonymous"] else []))
        out = [{"operation": {"targetType": "space", "operationKey": "read"}, "subject": s, "spaceKey": key,
                "spaceId": space["id"]} for s in subjects]
        out.append({"operation": {"targetType": "space", "operationKey": "administer"}, "spaceKey": key,
                    "subject": {"type": "user", "userKey": "key-admin", "displayName": "Admin"},
                    "spaceId": space["id"]})
        return JSONResponse(out)

    async def _user(self, request: Request) -> Response:
        """Data Center: `GET /rest/api/user?key=...` (or `username=`)."""
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        key = request.query_params.get("key") or ""
        name = key.removeprefix("key-") if key.startswith("key-") else request.query_params.get("username", "")
        if not name:
            return JSONResponse({"statusCode": 404, "message": "No user found"}, 404)
        return JSONResponse(self.user_json(name))

    async def _members(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        if name not in self.groups:
            return JSONResponse({"statusCode": 404, "message": f"No group found with name : {name}"}, 404)
        return self._paged([self.user_json(u) for u in self.groups[name]], request, self.member_page_size)

    async def _search(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        q = request.query_params
        found = self.matching(q.get("cql", ""))
        start = int(base64.b64decode(q["cursor"]).decode()) if q.get("cursor") else int(q.get("start", 0))
        size = min(int(q.get("limit", 25)), self.page_size)
        page = found[start:start + size]
        links: dict[str, Any] = {"base": self.url, "context": self.context}
        if start + size < len(found):
            cursor = base64.b64encode(str(start + size).encode()).decode()
            params = {"cql": q.get("cql", ""), "expand": q.get("expand", ""), "limit": size, "cursor": cursor}
            links["next"] = f"/rest/api/content/search?{urlencode(params)}"
        return JSONResponse({"results": [self.content_json(p, q.get("expand", "")) for p in page], "start": start,
                             "limit": size, "size": len(page), "_links": links})

    def _visible(self, request: Request) -> FakePage | None:
        """The content the path names, when it exists in a status the request asks for (default current)."""
        page = self.pages.get(request.path_params["id"]) if self._authorised(request) else None
        wanted = request.query_params.get("status", "current").split(",")
        return page if page is not None and page.status in wanted else None

    async def _content(self, request: Request) -> Response:
        page = self._visible(request)
        if page is None:
            return JSONResponse({"statusCode": 404, "message": "No content found"}, 404)
        return JSONResponse(self.content_json(page, request.query_params.get("expand", "")))

    async def _restriction(self, request: Request) -> Response:
        page = self._visible(request)
        if page is None:
            return JSONResponse({"statusCode": 404, "message": "No content found"}, 404)
        return JSONResponse({"operation": "read", "restrictions": self.subjects(page.users, page.groups),
                             "_links": {"base": self.url}})

    async def _comments(self, request: Request) -> Response:
        page = self._visible(request)
        if page is None:
            return JSONResponse({"statusCode": 404, "message": "No content found"}, 404)
        expand = request.query_params.get("expand", "")
        items = []
        for c in page.comments:
            item: dict[str, Any] = {"id": c.id, "type": "comment", "status": "current", "title": f"Re: {page.title}",
                                    "_links": {"webui": f"/spaces/{page.space}/pages/{page.id}?focusedCommentId={c.id}"}}
            if "body.storage" in expand:
                item["body"] = {"storage": {"value": c.body, "representation": "storage"}}
            if "version" in expand:
                item["version"] = {"number": c.version, "when": _stamp(c.when), "by": self.user_json(c.author)}
            items.append(item)
        return self._paged(items, request, self.page_size)
