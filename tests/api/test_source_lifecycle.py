"""Sources changed and removed on a running server: PATCH (access rewritten within a job, nothing
re-embedded; ref/location start a sync; validation; 409 while syncing) and DELETE (every store and the
catalog emptied of the source, audited; the name can be added again)."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from api_harness import auth, build_corpus, git_repo, serve, token
from test_mcp import run

from api.app import create_app
from api.audit import AuditLog
from indexer.catalog.schema import queue_batches, source_schedules
from workers.queue_state import QueueState


@pytest.fixture
def server(tmp_path, embedder):
    _, services = build_corpus(tmp_path, embedder)
    with serve(create_app(services.settings, services=services)) as base:
        yield base, services
    services.close()


def wait_job(base: str, tok: str, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth(tok)).json()
        if job["state"] in ("succeeded", "partial", "failed", "cancelled", "interrupted") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def search_paths(base: str, tok: str, query: str) -> list[str]:
    body = httpx.post(f"{base}/v1/search", json={"query": query, "limit": 50}, headers=auth(tok)).json()
    return [f"{h['source']}:{h['path']}" for h in body["hits"]]


def mcp_dump(base: str, tok: str) -> str:
    async def calls(s):
        return [await s.call_tool("search", {"query": "retry backoff invoice", "limit": 20}),
                await s.call_tool("grep", {"pattern": "retry_with_backoff"}),
                await s.call_tool("grep", {"pattern": "render_invoice"})]
    results = run(base, tok, calls)
    return " ".join(json.dumps(r.structured_content) for r in results)


def test_an_access_change_moves_every_chunk_to_the_new_readers_without_embedding(server):
    base, services = server
    admin, old, new = token(services, admin=True), token(services, groups=["eng"]), token(services, groups=["new"])
    before = {p for p in search_paths(base, old, "retry backoff invoice") if p.startswith("eng:")}
    assert before == {"eng:pkg/retry.py", "eng:billing/invoice.py"} and "retry_with_backoff" in mcp_dump(base, old)
    resp = httpx.patch(f"{base}/v1/sources/eng", json={"access": ["group:new"]}, headers=auth(admin))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["changed"] == ["access"] and body["source"]["access"] == ["group:new"]
    assert [j["kind"] for j in body["jobs"]] == ["access"]
    job = wait_job(base, admin, body["jobs"][0]["id"])
    assert job["state"] == "succeeded" and job["chunks_embedded"] == 0 and job["files_changed"] == 2
    assert not any(p.startswith("eng:") for p in search_paths(base, old, "retry backoff invoice"))
    assert httpx.get(f"{base}/v1/documents/eng:pkg/retry.py", headers=auth(old)).status_code == 404
    dump = mcp_dump(base, old)
    assert "retry_with_backoff" not in dump and "render_invoice" not in dump
    assert set(search_paths(base, new, "retry backoff invoice")) == before
    assert httpx.get(f"{base}/v1/documents/eng:pkg/retry.py", headers=auth(new)).status_code == 200
    assert "retry_with_backoff" in mcp_dump(base, new)
    # the stores agree with the catalog: no chunk under the old ACL is left anywhere
    ids = set(services.catalog.chunk_ids_of_source("eng"))
    assert services.pipeline.fulltext.ids("eng") == ids == services.pipeline.vectors.ids("eng")
    assert [e.target for e in AuditLog(services.catalog.engine).entries(action="sources.update")] == ["eng"]
    # the next sync finds nothing to rewrite
    sync = httpx.post(f"{base}/v1/sources/eng/reindex", headers=auth(admin)).json()
    assert wait_job(base, admin, sync["id"])["files_changed"] == 0


def test_a_ref_or_location_change_syncs_and_the_schedule_is_kept(server, tmp_path):
    base, services = server
    admin = token(services, admin=True)
    other = git_repo(tmp_path / "ops2", {"deploy/rollback.py": "def rollback_release(service):\n    return 1\n"})
    resp = httpx.patch(f"{base}/v1/sources/ops", json={"location": str(other), "interval": "2h"}, headers=auth(admin))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["changed"] == ["interval", "location"] and body["source"]["interval_seconds"] == 7200
    assert [j["kind"] for j in body["jobs"]] == ["index"]
    job = wait_job(base, admin, body["jobs"][0]["id"])
    assert job["state"] == "succeeded" and job["files_deleted"] == 1
    assert set(services.catalog.document_versions("ops")) == {"ops:deploy/rollback.py"}
    again = httpx.patch(f"{base}/v1/sources/ops", json={"interval": None}, headers=auth(admin)).json()
    assert again["changed"] == ["interval"] and again["source"]["interval_seconds"] is None and again["jobs"] == []


@pytest.mark.parametrize("body, status, message", [
    ({"access": ["team:x"]}, 400, "team:x"),
    ({"token_env": "GITLAB_TOKEN"}, 400, "http(s) clone URLs only"),
    ({"interval": "soon"}, 400, "interval"),
    ({"location": ""}, 422, "location"),
])
def test_invalid_changes_are_refused_and_nothing_changes(server, body, status, message):
    base, services = server
    admin = token(services, admin=True)
    resp = httpx.patch(f"{base}/v1/sources/eng", json=body, headers=auth(admin))
    assert resp.status_code == status and message in resp.text
    assert services.catalog.get_source("eng").access == ("group:eng",)


def test_changes_need_an_admin_an_existing_source_and_no_running_sync(server):
    base, services = server
    admin, reader = token(services, admin=True), token(services, groups=["eng"])
    assert httpx.patch(f"{base}/v1/sources/eng", json={"access": []}, headers=auth(reader)).status_code == 403
    assert httpx.delete(f"{base}/v1/sources/eng", headers=auth(reader)).status_code == 403
    assert httpx.patch(f"{base}/v1/sources/nope", json={"access": []}, headers=auth(admin)).status_code == 404
    assert httpx.delete(f"{base}/v1/sources/nope", headers=auth(admin)).status_code == 404
    queued = services.catalog.create_job(None, "eng", "index")  # queued, as a sync waiting its turn
    resp = httpx.patch(f"{base}/v1/sources/eng", json={"access": ["public"]}, headers=auth(admin))
    assert resp.status_code == 409 and queued in resp.json()["detail"]
    assert services.catalog.get_source("eng").access == ("group:eng",)


def test_a_removed_source_leaves_every_store_and_the_catalog_and_can_come_back(server):
    base, services = server
    admin, ops = token(services, admin=True), token(services, groups=["ops"])
    catalog = services.catalog
    httpx.put(f"{base}/v1/sources/ops/schedule", json={"interval": "1h"}, headers=auth(admin)).raise_for_status()
    stale = catalog.create_job(None, "ops", "index")  # a sync that never got to run: cancelled first
    QueueState(catalog.engine).register_batch("job-x", "b1", "ops", "documents", 1)
    location = catalog.get_source("ops").config["location"]
    resp = httpx.delete(f"{base}/v1/sources/ops", headers=auth(admin))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["cancelled_jobs"] == [stale] and catalog.get_job(stale).state == "cancelled"
    removed = body["removed"]
    assert removed["documents"] == 1 and removed["chunks"] >= 1 and removed["fulltext_chunks"] == removed["chunks"]
    assert removed["vector_chunks"] == removed["chunks"] and removed["schedule"] == 1 and removed["checkpoint"] == 1
    assert removed["queue_batches"] == 1
    assert catalog.get_source("ops") is None and catalog.counts("ops") == dict.fromkeys(
        ("documents", "chunks", "skipped", "failures"), 0)
    assert services.pipeline.fulltext.ids("ops") == set() and services.pipeline.vectors.ids("ops") == set()
    with catalog.engine.connect() as conn:
        assert conn.execute(source_schedules.select().where(source_schedules.c.source == "ops")).first() is None
        assert conn.execute(queue_batches.select().where(queue_batches.c.source == "ops")).first() is None
    assert search_paths(base, ops, "rollout canary") == []
    assert [e.target for e in AuditLog(catalog.engine).entries(action="sources.remove")] == ["ops"]
    assert "ops" not in [s["name"] for s in httpx.get(f"{base}/v1/sources", headers=auth(admin)).json()]
    # the same name again
    again = {"name": "ops", "location": location, "access": ["group:ops"]}
    assert httpx.post(f"{base}/v1/sources", json=again, headers=auth(admin)).status_code == 201
    job = httpx.post(f"{base}/v1/sources/ops/reindex", headers=auth(admin)).json()
    assert wait_job(base, admin, job["id"])["state"] == "succeeded"
    assert search_paths(base, ops, "rollout canary") == ["ops:deploy/rollout.py"]


def test_a_remote_sources_change_is_validated_by_its_kind_and_never_holds_a_secret(server):
    base, services = server
    admin = token(services, admin=True)
    services.catalog.upsert_source("gl", "gitlab", {"url": "https://gitlab.example.com", "group": "g",
                                                    "token_env": "GITLAB_TOKEN"}, [])
    services.catalog.upsert_source("jira", "jira", {"url": "https://jira.example.com", "projects": ["A"],
                                                    "webhook_secret_sha256": "ab" * 32}, [])
    services.catalog.set_checkpoint("gl", {"cursor": "2024-01-01"})
    resp = httpx.patch(f"{base}/v1/sources/gl", json={"token_file": "/run/secrets/gl", "ref": "release"},
                       headers=auth(admin))
    assert resp.status_code == 200, resp.text
    assert resp.json()["changed"] == ["ref", "token_env", "token_file"]
    config = services.catalog.get_source("gl").config
    assert config["token_file"] == "/run/secrets/gl" and config["token_env"] == "" and config["ref"] == "release"
    assert services.catalog.get_checkpoint("gl") is None  # a cursor for another ref means nothing
    for job in resp.json()["jobs"]:  # the sync it started fails: no such server (not what is tested here)
        wait_job(base, admin, job["id"])
    assert httpx.patch(f"{base}/v1/sources/jira", json={"ref": "main"}, headers=auth(admin)).status_code == 400
    secret = httpx.patch(f"{base}/v1/sources/gl", json={"location": "https://bot:glpat-9@gitlab.example.com"},
                         headers=auth(admin))
    assert secret.status_code == 400 and "glpat-9" not in secret.text and "credentials" in secret.text
    access = httpx.patch(f"{base}/v1/sources/jira", json={"access": ["group:staff"]}, headers=auth(admin)).json()
    assert access["changed"] == ["access"] and [j["kind"] for j in access["jobs"]] == ["reindex"]
    assert services.catalog.get_source("jira").access == ("group:staff",)
    assert services.catalog.get_source("jira").config["webhook_secret_sha256"] == "ab" * 32  # its webhook still works
    wait_job(base, admin, access["jobs"][0]["id"])
