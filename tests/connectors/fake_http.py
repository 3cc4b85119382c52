"""A local HTTP server for fake GitLab/Jira/Confluence apps: a thread running uvicorn, a request log, faults."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class Seen:
    """One request the fake server received."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


TRUNCATIONS = ("length", "chunked")


@dataclass
class Fault:
    """Applied to the next requests matching `pattern`: an HTTP status, a delay before answering, or the
    real answer cut short (`truncate`: "length", a body shorter than its Content-Length; "chunked", a
    chunked body whose last chunk never comes), the connection then closed."""

    pattern: str
    status: int = 0
    delay: float = 0.0
    retry_after: str | None = None
    times: int = 1
    method: str = "GET"
    truncate: str = ""


@dataclass
class FakeServer:
    """Runs a Starlette app on 127.0.0.1:<free port> in a background thread."""

    app: Starlette
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _server: Any = None
    _thread: threading.Thread | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.app.add_middleware(_Recorder, fake=self)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        # IPPROTO_TCP (not 0) so asyncio sets TCP_NODELAY on accepted connections: no 40 ms delayed-ACK stalls.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def fail(self, pattern: str, status: int = 0, *, times: int = 1, delay: float = 0.0,
             retry_after: str | None = None, method: str = "GET", truncate: str = "") -> None:
        """The next `times` requests whose path matches `pattern` answer `status` (after `delay`), or
        their real answer truncated (`truncate`: "length" or "chunked")."""
        if truncate not in ("", *TRUNCATIONS):
            raise ValueError(f"truncate must be one of {TRUNCATIONS}")
        self.faults.append(Fault(pattern, status, delay, retry_after, times, method, truncate))

    def requests(self, pattern: str = "", method: str = "") -> list[Seen]:
        return [s for s in self.seen if re.search(pattern, s.path) and (not method or s.method == method)]

    def clear_log(self) -> None:
        self.seen.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.search(fault.pattern, path):
                fault.times -= 1
                return fault
        return None


class _Recorder:
    """ASGI middleware: logs every request and applies pending faults before the app answers."""

    def __init__(self, app: Any, fake: FakeServer) -> None:
        self.app, self.fake = app, fake

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        self.fake.seen.append(Seen(request.method, request.url.path, dict(request.query_params),
                                   {k.lower(): v for k, v in request.headers.items()}))
        fault = self.fake.take_fault(request.method, request.url.path)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            await Response(f'{{"message": "fault {fault.status}"}}', status_code=fault.status, headers=headers,
                           media_type="application/json")(scope, receive, send)
            return
        if fault and fault.truncate:
            await _truncated(self.app, fault.truncate, scope, receive, send)
            return
        await self.app(scope, receive, send)


class CutShort(Exception):
    """Raised after half an answer is sent: uvicorn closes the connection without finishing it."""


async def _truncated(app: Any, how: str, scope: dict, receive: Any, send: Any) -> None:
    """The app's real answer, its body cut in half: with its full Content-Length ("length"), or chunked
    without the last chunk ("chunked"); then the connection closes, as a proxy or server dying mid-answer."""
    start: dict = {}
    body = bytearray()

    async def keep(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            body.extend(message.get("body", b""))

    await app(scope, receive, keep)
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    if how == "length":
        headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(body[:len(body) // 2]), "more_body": True})
    raise CutShort(f"answer to {scope['path']} cut short ({how})")


def page_of(items: list[Any], request: Request, default_per_page: int = 20,
            max_per_page: int = 100) -> tuple[list[Any], int, int, int]:
    """GitLab-style page/per_page slicing: (items on the page, page, per_page, total pages)."""
    per_page = min(int(request.query_params.get("per_page", default_per_page)), max_per_page)
    page = max(1, int(request.query_params.get("page", 1)))
    pages = max(1, -(-len(items) // per_page))
    return items[(page - 1) * per_page: page * per_page], page, per_page, pages


def gitlab_paged(items: list[Any], request: Request, max_per_page: int = 100) -> JSONResponse:
    """A JSON list with GitLab's pagination headers (X-Page, X-Next-Page, X-Total, ..., Link)."""
    chunk, page, per_page, pages = page_of(items, request, max_per_page=max_per_page)
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
               "X-Total-Pages": str(pages), "X-Next-Page": str(page + 1) if page < pages else "",
               "X-Prev-Page": str(page - 1) if page > 1 else ""}
    base = str(request.url).split("?")[0]
    params = dict(request.query_params)

    def link(n: int) -> str:
        return f"{base}?{urlencode({**params, 'page': n, 'per_page': per_page})}"

    links = [f'<{link(page + 1)}>; rel="next"'] if page < pages else []
    links += [f'<{link(1)}>; rel="first"', f'<{link(pages)}>; rel="last"']
    headers["Link"] = ", ".join(links)
    return JSONResponse(chunk, headers=headers)
