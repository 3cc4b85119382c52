"""A fake Confluence speaking the v1 REST shapes: CQL content search, content, spaces, view restrictions."""
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
class FakePage:
    id: str
    space: str
    title: str
    body: str  # storage format
    parent: str | None = None
    type: str = "page"
    version: int = 1
    when: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    labels: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)  # view restriction: account ids
    groups: list[str] = field(default_factory=list)  # view restriction: group names


def _subjects(users: list[str], groups: list[str]) -> dict[str, Any]:
    return {"user": {"results": [{"type": "known", "accountId": u, "displayName": u.title()} for u in users],
                     "size": len(users), "start": 0, "limit": 200},
            "group": {"results": [{"type": "group", "name": g} for g in groups], "size": len(groups),
                      "start": 0, "limit": 200}}


class FakeConfluence:
    def __init__(self, token: str = "confluence-fake-secret-token") -> None:
        self.token = token
        self.pages: dict[str, FakePage] = {}
        self.spaces: dict[str, dict[str, Any]] = {}  # key → {"id", "readers": {"users", "groups", "anonymous"}}
        self.now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        self.page_size = 2
        self.server = FakeServer(Starlette(routes=[
            Route("/wiki/rest/api/space/{key}", self._space),
            Route("/wiki/rest/api/content/search", self._search),
            Route("/wiki/rest/api/content/{id}/restriction/byOperation/read", self._restriction),
            Route("/wiki/rest/api/content/{id}", self._content),
        ]))

    @property
    def url(self) -> str:
        return f"{self.server.url}/wiki"

    # -- state changes --------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    def add_space(self, key: str, users: list[str] = (), groups: list[str] = (), anonymous: bool = False) -> None:
        self.spaces[key] = {"id": 1000 + len(self.spaces), "users": list(users), "groups": list(groups),
                            "anonymous": anonymous}

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

    # -- JSON -----------------------------------------------------------------------------------

    def ancestors(self, page: FakePage) -> list[FakePage]:
        chain, parent = [], page.parent
        while parent:
            chain.insert(0, self.pages[parent])
            parent = self.pages[parent].parent
        return chain

    def content_json(self, page: FakePage, expand: str) -> dict[str, Any]:
        stamp = page.when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        webui = f"/spaces/{page.space}/pages/{page.id}/{page.title.replace(' ', '+')}"
        data: dict[str, Any] = {"id": page.id, "type": page.type, "status": "current", "title": page.title,
                                "_links": {"webui": webui, "self": f"{self.url}/rest/api/content/{page.id}"},
                                "_expandable": {}}
        if "space" in expand:
            data["space"] = {"key": page.space, "name": page.space.title(), "id": self.spaces[page.space]["id"]}
        if "version" in expand:
            data["version"] = {"number": page.version, "when": stamp, "by": {"displayName": "Alice",
                                                                             "accountId": "acc-alice"}}
        if "ancestors" in expand:
            data["ancestors"] = [{"id": a.id, "type": "page", "title": a.title} for a in self.ancestors(page)]
        if "body.storage" in expand:
            data["body"] = {"storage": {"value": page.body, "representation": "storage"}}
        if "metadata.labels" in expand:
            data["metadata"] = {"labels": {"results": [{"prefix": "global", "name": n, "id": str(i)}
                                                       for i, n in enumerate(page.labels)], "size": len(page.labels)}}
        if "restrictions.read" in expand:
            data["restrictions"] = {"read": {"operation": "read", "restrictions": _subjects(page.users, page.groups)}}
        return data

    def matching(self, cql: str) -> list[FakePage]:
        found = list(self.pages.values())
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

    async def _space(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        if key not in self.spaces:
            return JSONResponse({"statusCode": 404, "message": f"No space with key : {key}"}, 404)
        space = self.spaces[key]
        body: dict[str, Any] = {"id": space["id"], "key": key, "name": key.title(), "type": "global"}
        if "permissions" in request.query_params.get("expand", ""):
            read = {"operation": "read", "targetType": "space"}
            body["permissions"] = [
                {"id": 1, "subjects": _subjects(space["users"], space["groups"]), "operation": read,
                 "anonymousAccess": False, "unlicensedAccess": False},
                {"id": 2, "subjects": _subjects(["acc-admin"], []), "anonymousAccess": False,
                 "operation": {"operation": "administer", "targetType": "space"}, "unlicensedAccess": False},
                {"id": 3, "operation": read, "anonymousAccess": space["anonymous"], "unlicensedAccess": False}]
        return JSONResponse(body)

    async def _search(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"message": "Unauthorized"}, 401)
        q = request.query_params
        found = self.matching(q.get("cql", ""))
        start = int(base64.b64decode(q["cursor"]).decode()) if q.get("cursor") else int(q.get("start", 0))
        size = min(int(q.get("limit", 25)), self.page_size)
        page = found[start:start + size]
        links: dict[str, Any] = {"base": self.url, "context": "/wiki"}
        if start + size < len(found):
            cursor = base64.b64encode(str(start + size).encode()).decode()
            params = {"cql": q.get("cql", ""), "expand": q.get("expand", ""), "limit": size, "cursor": cursor}
            links["next"] = f"/rest/api/content/search?{urlencode(params)}"
        return JSONResponse({"results": [self.content_json(p, q.get("expand", "")) for p in page], "start": start,
                             "limit": size, "size": len(page), "_links": links})

    async def _content(self, request: Request) -> Response:
        page = self.pages.get(request.path_params["id"]) if self._authorised(request) else None
        if page is None:
            return JSONResponse({"statusCode": 404, "message": "No content found"}, 404)
        return JSONResponse(self.content_json(page, request.query_params.get("expand", "")))

    async def _restriction(self, request: Request) -> Response:
        page = self.pages.get(request.path_params["id"]) if self._authorised(request) else None
        if page is None:
            return JSONResponse({"statusCode": 404, "message": "No content found"}, 404)
        return JSONResponse({"operation": "read", "restrictions": _subjects(page.users, page.groups),
                             "_links": {"base": self.url}})
