"""The shared HTTP policy: retries with backoff and jitter, Retry-After, timeouts, rate limit, no retry storms."""
from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from fake_http import FakeServer
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.http_policy import HttpPolicy, PolicySession, RateLimiter, RetriesExhausted, retry_after_seconds


@pytest.fixture
def server():
    async def ok(request):
        return JSONResponse({"ok": True})

    fake = FakeServer(Starlette(routes=[Route("/ok", ok, methods=["GET", "POST"])])).start()
    yield fake
    fake.stop()


def session(sleeps=None, **policy):
    options = {"backoff_base": 0.01, "read_timeout": 1.0, **policy}
    return PolicySession(HttpPolicy(**options), sleep=(sleeps.append if sleeps is not None else time.sleep),
                         rng=random.Random(7))


@pytest.mark.parametrize("value, expected", [
    ("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("-4", 0.0), ("", None), (None, None), ("soon", None),
])
def test_retry_after_values(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_http_date():
    now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=20), usegmt=True), now=now.timestamp()) == 20


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy, rng = HttpPolicy(backoff_base=1.0, backoff_cap=8.0), random.Random(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling and max(delays) > ceiling / 2


def test_429_honours_retry_after_for_real(server):
    server.fail("/ok", 429, retry_after="1")
    started = time.monotonic()
    assert session().get(f"{server.url}/ok").json() == {"ok": True}
    assert time.monotonic() - started >= 1.0


def test_5xx_and_timeouts_are_retried_then_succeed(server):
    sleeps: list[float] = []
    server.fail("/ok", 500)
    server.fail("/ok", 503)
    server.fail("/ok", 0, delay=1.5)
    http = session(sleeps)
    assert http.get(f"{server.url}/ok").status_code == 200
    assert len(sleeps) == 3 and http.retries == 3 and len(server.requests("/ok")) == 4


def test_retries_are_bounded_and_raise_without_leaking_the_query(server):
    server.fail("/ok", 502, times=10)
    with pytest.raises(RetriesExhausted) as caught:
        session(max_attempts=3).get(f"{server.url}/ok", params={"token": "s3cret"})
    assert "502 after 3 attempts" in str(caught.value) and "s3cret" not in str(caught.value)
    assert len(server.requests("/ok")) == 3


def test_non_idempotent_requests_are_not_retried_on_server_errors(server):
    server.fail("/ok", 500, method="POST")
    assert session().post(f"{server.url}/ok").status_code == 500
    assert len(server.requests("/ok")) == 1


def test_client_errors_are_returned_as_they_are(server):
    assert session().get(f"{server.url}/missing").status_code == 404


def test_connection_errors_are_retried_then_raised():
    sleeps: list[float] = []
    with pytest.raises(requests.ConnectionError):
        session(sleeps, max_attempts=3).get("http://127.0.0.1:9/")  # the discard port: nothing listens
    assert len(sleeps) == 2


def test_every_request_gets_a_timeout(server, monkeypatch):
    seen = {}
    original = requests.Session.request

    def spy(self, method, url, *args, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    session(connect_timeout=3.0, read_timeout=7.0).get(f"{server.url}/ok")
    assert seen["timeout"] == (3.0, 7.0)


def test_rate_limiter_spaces_requests():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    assert RateLimiter(0.0).interval == 0.0


class _Truncating:
    """A loopback server whose first `cut` answers stop halfway: a short Content-Length body, or a chunked
    body that ends without its last chunk; then whole JSON answers."""

    def __init__(self, cut: int, chunked: bool) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        state = self
        self.cut, self.served = cut, 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                state.served += 1
                body = b'{"ok": true, "items": [' + b",".join(b'"x"' for _ in range(200)) + b"]}"
                short = state.cut > 0
                state.cut -= 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[:len(body) // 2] if short else body
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                    if not short:
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 2] if short else body)
                self.wfile.flush()
                if short:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/items"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_truncated_bodies_are_retried_like_dropped_connections(chunked):
    served = _Truncating(cut=2, chunked=chunked)
    try:
        sleeps: list[float] = []
        http = session(sleeps, max_attempts=5)
        assert http.get(served.url).json()["ok"] is True
        assert served.served == 3 and len(sleeps) == 2 and http.retries == 2
        served.cut = 10  # more truncations than the budget: the same error, after the same number of tries
        sleeps.clear()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session(sleeps, max_attempts=3).get(served.url)
        assert len(sleeps) == 2
    finally:
        served.stop()
