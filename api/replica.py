"""An API replica: a `cairn serve` node that is not the index owner forwards every request to the owner.

The owner authenticates the caller itself (the request goes through with its own credentials and cookies)
and answers from the one index, so an answer through a replica is the owner's answer: no second copy of
the index is ever read or written here. Only `/healthz` is answered locally (with this node's role)."""
from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from api.limits import BodySizeLimit
from indexer.settings import Settings
from workers.index_owner import IndexLease, LeaseRecord

log = logging.getLogger(__name__)

# Host is kept: the owner sees the address the caller used (the web UI's same-origin check, webhook URLs).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade"})
# A forwarded request may be a long MCP or SSE stream: reading is bounded generously, connecting tightly.
FORWARD_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=10.0)


def _kept(items: list[tuple[str, str]], drop: frozenset[str] = HOP_BY_HOP) -> list[tuple[str, str]]:
    """Headers that pass through a proxy: every one but the hop-by-hop ones (repeated ones stay repeated)."""
    return [(k, v) for k, v in items if k.lower() not in drop]


def unavailable(message: str) -> JSONResponse:
    return JSONResponse({"error": "ServiceUnavailable", "detail": message}, status_code=503,
                        headers={"Retry-After": "5"})


def create_replica_app(settings: Settings, lease: IndexLease, watch: Callable[[], None] | None = None) -> FastAPI:
    """The replica's app: `/healthz` here, everything else forwarded to the owner the lease names.
    `watch` runs in a thread for the app's lifetime (the node's takeover watch)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = httpx.AsyncClient(timeout=FORWARD_TIMEOUT, follow_redirects=False)
        if watch is not None:
            threading.Thread(target=watch, name="cairn-takeover-watch", daemon=True).start()
        try:
            yield
        finally:
            await app.state.http.aclose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings

    @app.get("/healthz")
    def healthz() -> dict:
        owner = lease.current()
        return {"status": "ok", "role": "replica", "owner": owner.holder if owner else None,
                "owner_url": owner.url if owner else None, "owner_live": bool(owner and owner.live())}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    async def forward(path: str, request: Request) -> Response:
        owner = lease.current()
        if owner is None or not owner.live():
            return unavailable(_no_owner(owner))
        return await _forward(request, owner)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _no_owner(owner: LeaseRecord | None) -> str:
    if owner is None:
        return "no index owner: no `cairn serve` node owns the index yet"
    return (f"the index owner {owner.holder} stopped renewing its lease at {owner.renewed_at.isoformat()}; "
            "a node sharing its data dir takes over, or restart it")


async def _forward(request: Request, owner: LeaseRecord) -> Response:
    client: httpx.AsyncClient = request.app.state.http
    headers = _kept(request.headers.items())
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for")
    headers.append(("x-forwarded-for", f"{forwarded}, {peer}" if forwarded else peer))
    outgoing = client.build_request(request.method, owner.url + request.url.path, params=request.url.query,
                                    headers=headers, content=await request.body())
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.TransportError as exc:
        log.warning("the index owner %s at %s did not answer: %s", owner.holder, owner.url, type(exc).__name__)
        return unavailable(f"the index owner {owner.holder} at {owner.url} did not answer ({type(exc).__name__}); "
                           "try again shortly")
    response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                 background=BackgroundTask(answer.aclose))
    kept = _kept(answer.headers.multi_items(), HOP_BY_HOP | {"content-length"})  # streamed: sent chunked
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in kept]
    return response
