"""Request limits as ASGI middleware: a body-size cap (413) and a per-token rate limit (429 + Retry-After)."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/healthz"})
MAX_BUCKETS = 100_000  # idle, refilled buckets are dropped beyond this many


async def send_error(send: Send, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error in the same shape as api.errors produces."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with 413: by Content-Length up front, or while a chunked body
    streams in (then the app sees a disconnect and its own answer is dropped)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, "PayloadTooLarge", self._message())
            return
        state = {"seen": 0, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes and not state["started"]:
                    state["refused"] = True
                    await send_error(send, 413, "PayloadTooLarge", self._message())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """In-memory token buckets (per process): `capacity` requests at once, refilled at `per_second`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            self._prune(now)
            bucket = self.buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second

    def _prune(self, now: float) -> None:
        if len(self.buckets) < MAX_BUCKETS:
            return
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.updated) * self.per_second >= self.capacity]
        for key in full:
            del self.buckets[key]


class RateLimit:
    """Per-token rate limit (keyed by the token's hash, or the client address without a token)."""

    def __init__(self, app: ASGIApp, per_minute: int, on_refuse: Callable[[], None] | None = None) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute) if per_minute > 0 else None
        self.per_minute = per_minute
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self._key(scope))
        if wait > 0:
            if self.on_refuse:
                self.on_refuse()
            retry = max(1, math.ceil(wait))
            await send_error(send, 429, "RateLimited",
                             f"more than {self.per_minute} requests per minute; retry in {retry} s",
                             headers={"Retry-After": str(retry)})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _key(scope: Scope) -> str:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()
        client = scope.get("client")
        return "addr:" + (client[0] if client else "unknown")
