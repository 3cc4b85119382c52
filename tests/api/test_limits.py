"""Request limits: body size (413 with a message) and the per-token rate limit (429 + Retry-After)."""
from __future__ import annotations

import httpx
import pytest
from api_harness import auth, serve, token
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import TokenBuckets


@pytest.fixture(scope="module")
def strict(corpus):
    """An app allowing 3 requests a minute per token and 2 KiB bodies."""
    settings = corpus.settings.model_copy(update={"rate_limit_per_minute": 3, "max_body_bytes": 2048})
    return create_app(settings, services=corpus)


def test_oversized_bodies_get_413_with_a_message(strict, corpus):
    with TestClient(strict) as client:
        resp = client.post("/v1/search", content=b'{"query": "' + b"x" * 4000 + b'"}',
                           headers={**auth(token(corpus, groups=["eng"])), "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json() == {"error": "PayloadTooLarge",
                                                       "detail": "request body larger than 2048 bytes"}


def test_streamed_bodies_without_length_are_cut_off_too(strict, corpus):
    def chunks():
        yield b'{"query": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    with serve(strict) as url:
        resp = httpx.post(url + "/v1/search", content=chunks(), timeout=30,
                          headers={**auth(token(corpus, groups=["eng"])), "Content-Type": "application/json"})
    assert resp.status_code == 413 and "2048 bytes" in resp.json()["detail"]


def test_rate_limit_is_per_token_with_retry_after(strict, corpus):
    first, second = token(corpus, groups=["eng"]), token(corpus, groups=["eng"])
    with TestClient(strict) as client:
        codes = [client.get("/v1/sources", headers=auth(first)).status_code for _ in range(4)]
        refused = client.post("/v1/context", json={"query": "", "fullInput": "x"}, headers=auth(first))
        other = client.get("/v1/sources", headers=auth(second))
        health = [client.get("/healthz").status_code for _ in range(5)]
        mcp = client.post("/mcp", json={}, headers=auth(first))
    assert codes == [200, 200, 200, 429]
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.json()["error"] == "RateLimited" and "3 requests per minute" in refused.json()["detail"]
    assert other.status_code == 200 and health == [200] * 5 and mcp.status_code == 429


def test_buckets_refill_over_time():
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, clock=lambda: now[0])
    assert all(buckets.take("k") == 0.0 for _ in range(60))
    assert buckets.take("k") == pytest.approx(1.0)
    now[0] += 0.5
    assert buckets.take("k") == pytest.approx(0.5)
    now[0] += 2.0
    assert buckets.take("k") == 0.0 and buckets.take("other") == 0.0


def test_limits_can_be_turned_off(corpus):
    settings = corpus.settings.model_copy(update={"rate_limit_per_minute": 0})
    with TestClient(create_app(settings, services=corpus)) as client:
        tok = auth(token(corpus, groups=["eng"]))
        assert {client.get("/v1/sources", headers=tok).status_code for _ in range(20)} == {200}


@pytest.mark.parametrize("path, body", [
    ("/v1/search", {"query": "x", "limit": 101}),
    ("/v1/search", {"query": "x" * 20_001}),
    ("/v1/context", {"query": "", "fullInput": "x", "options": {"limit": 51}}),
    ("/v1/context", {"query": "", "fullInput": "x" * 200_001}),
    ("/v1/feedback", {"query_id": "q", "hit_id": "h", "useful": True, "comment": "c" * 2001}),
])
def test_max_limits_and_lengths_are_enforced(corpus, path, body):
    settings = corpus.settings.model_copy(update={"max_body_bytes": 1_000_000})
    with TestClient(create_app(settings, services=corpus)) as client:
        resp = client.post(path, json=body, headers=auth(token(corpus, groups=["eng"])))
    assert resp.status_code == 422 and resp.json()["detail"]
