"""/metrics in the Prometheus text format, request logs without query text, and the audit log."""
from __future__ import annotations

import logging
import time

import pytest
from api_harness import auth, token
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app

SECRET_QUERY = "zanzibar-quokka retry backoff"


@pytest.fixture(scope="module")
def client(corpus):
    with TestClient(create_app(corpus.settings, services=corpus)) as c:
        yield c


def scrape(client, tok) -> dict[str, list]:
    resp = client.get("/metrics", headers=auth(tok))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(resp.text)}


def value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_need_a_token_and_parse(client, corpus):
    assert client.get("/metrics").status_code == 401
    tok = token(corpus, groups=["eng"])
    assert client.post("/v1/search", json={"query": "backoff"}, headers=auth(tok)).status_code == 200
    families = scrape(client, tok)
    requests = families["cairn_http_request_duration_seconds"]
    assert value(requests, "cairn_http_request_duration_seconds_count", route="/v1/search", method="POST",
                 status="200") >= 1
    assert value(requests, "cairn_http_request_duration_seconds_count", route="/metrics", status="401") >= 1
    stages = {s.labels["stage"] for s in families["cairn_search_stage_seconds"]}
    assert {"lexical", "embed", "dense", "rerank", "total"} <= stages
    counts = corpus.catalog.counts()
    assert value(families["cairn_documents"], "cairn_documents") == counts["documents"] == 4
    assert value(families["cairn_chunks"], "cairn_chunks") == counts["chunks"]
    assert value(families["cairn_sources"], "cairn_sources") == 3
    assert "cairn_oldest_sync_age_seconds" in families


def test_job_outcomes_are_counted(services, make_repo, tmp_path):
    repo = make_repo("small")
    repo.write("a.py", "def a():\n    return 1\n")
    repo.commit()
    services.catalog.upsert_source("small", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    services.catalog.upsert_source("gone", "git", {"location": str(tmp_path / "missing"), "ref": ""}, ["public"])
    admin = auth(token(services, admin=True))
    with TestClient(create_app(services.settings, services=services)) as client:
        jobs = [client.post(f"/v1/sources/{name}/reindex", json={}, headers=admin).json() for name in ("small", "gone")]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = {client.get(f"/v1/jobs/{j['id']}", headers=admin).json()["state"] for j in jobs}
            if states <= {"succeeded", "failed"}:
                break
            time.sleep(0.2)
        finished = scrape(client, token(services))["cairn_jobs_finished"]
    assert value(finished, "cairn_jobs_finished_total", kind="index", outcome="succeeded") == 1
    assert value(finished, "cairn_jobs_finished_total", kind="index", outcome="failed") == 1


def test_mcp_and_rate_limit_counters_exist(client, corpus):
    families = scrape(client, token(corpus))
    assert "cairn_rate_limited" in families and "cairn_mcp_tool_calls" in families


def test_request_logs_carry_route_status_and_user_but_no_query(client, corpus, caplog):
    tok = token(corpus, user="alice", groups=["eng"])
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/search", json={"query": SECRET_QUERY}, headers=auth(tok))
        client.post("/v1/context", json={"query": "", "fullInput": SECRET_QUERY}, headers=auth(tok))
    lines = [r for r in caplog.records if r.name == "api.observability"]
    assert [(r.route, r.status, r.user) for r in lines] == [("/v1/search", 200, "alice"), ("/v1/context", 200, "alice")]
    assert all(r.duration_ms >= 0 for r in lines)
    assert "zanzibar" not in caplog.text and tok not in caplog.text


def test_searches_and_admin_actions_are_audited(client, corpus):
    tok = token(corpus, user="bob", groups=["eng"])
    body = client.post("/v1/search", json={"query": SECRET_QUERY, "sources": ["eng"], "limit": 3},
                       headers=auth(tok)).json()
    entry = client.app.state.audit.query(body["query_id"])
    assert (entry.user, entry.action, entry.scope, entry.result_count) == ("bob", "search", {"sources": ["eng"]},
                                                                          len(body["hits"]))
    assert entry.query_text is None
    admin = auth(token(corpus, user="root", admin=True))
    client.post("/v1/sources/eng/reindex", json={}, headers=admin)
    rows = client.get("/v1/audit", params={"action": "sources.reindex"}, headers=admin).json()
    assert rows[0]["user"] == "root" and rows[0]["target"] == "eng"
    assert client.get("/v1/audit", headers=auth(tok)).status_code == 403


def test_query_text_is_audited_only_when_configured(corpus):
    settings = corpus.settings.model_copy(update={"audit_query_text": True})
    with TestClient(create_app(settings, services=corpus)) as c:
        body = c.post("/v1/search", json={"query": SECRET_QUERY}, headers=auth(token(corpus, groups=["eng"]))).json()
        assert c.app.state.audit.query(body["query_id"]).query_text == SECRET_QUERY
