"""The API with the vector index in its own process (as `cairn serve` runs it): full answers normally,
BM25-only answers marked `partial` while the vector process cannot answer, full ones again after."""
from __future__ import annotations

import os
import signal

import pytest
from api_harness import auth, build_corpus, token
from fastapi.testclient import TestClient

from api.app import create_app
from indexer.services import IndexServices
from indexer.stores.edge_process import ProcessVectorStore


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    settings, services = build_corpus(tmp_path_factory.mktemp("vp"), embedder)
    services.close()
    settings = settings.model_copy(update={"vector_process": True, "vector_search_timeout_ms": 400})
    services = IndexServices.open(settings, embedder=embedder)
    assert isinstance(services.vectors, ProcessVectorStore)
    with TestClient(create_app(settings, services=services)) as client:
        yield client, services, token(services, "ada", ["eng"])
    services.close()


def search(client, tok, query):
    response = client.post("/v1/search", json={"query": query, "limit": 5}, headers=auth(tok))
    assert response.status_code == 200, response.text
    return response.json()


def test_searches_use_the_vector_process_and_answer_in_full(served):
    client, services, tok = served
    assert services.vectors.pid != os.getpid()
    body = search(client, tok, "exponential backoff with jitter between retries")
    assert body["partial"] == [] and "dense" in body["timings_ms"]
    assert body["hits"][0]["path"] == "pkg/retry.py"
    assert all(h["source"] in ("eng", "web") for h in body["hits"])  # ops is not ada's


def test_a_stalled_vector_process_leaves_bm25_answers_marked_partial(served, stop_process):
    client, services, tok = served
    stop_process(services.vectors.pid)
    try:
        body = search(client, tok, "retry_with_backoff gave up")
    finally:
        os.kill(services.vectors.pid, signal.SIGCONT)
    assert body["partial"] == ["dense"] and "dense" not in body["timings_ms"]
    assert body["hits"] and body["hits"][0]["path"] == "pkg/retry.py"
    assert all(h["source"] in ("eng", "web") for h in body["hits"])  # still filtered by the caller's ACL
    metrics = client.get("/metrics", headers=auth(tok)).text
    assert 'cairn_search_partial_total{engine="dense"} 1.0' in metrics
    again = search(client, tok, "retry_with_backoff gave up")
    assert again["partial"] == [] and "dense" in again["timings_ms"]


def test_partial_answers_are_logged_once_per_interval_with_a_count(caplog):
    from retrieval.search import _ThrottledWarning

    throttled = _ThrottledWarning("search answered from BM25 alone", every=60.0)
    with caplog.at_level("WARNING", logger="retrieval.search"):
        for _ in range(5):
            throttled.note(RuntimeError("busy"))
    expected = "search answered from BM25 alone (1 time(s) since the last warning): busy"
    assert [r.getMessage() for r in caplog.records] == [expected]
    throttled.every = 0.0
    with caplog.at_level("WARNING", logger="retrieval.search"):
        throttled.note(RuntimeError("still busy"))
    assert "(5 time(s) since the last warning): still busy" in caplog.records[-1].getMessage()
