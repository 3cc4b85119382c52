"""A whole embed worker AND the index node (`cairn serve`, the index owner) killed with SIGKILL at once, in a
real deployment (PostgreSQL, Redis) whose broker would redeliver unacked messages only after an hour
(CAIRN_CELERY_VISIBILITY_TIMEOUT=3600), while three git sources sync and batches are in flight. A platform's
supervisor restarts them: the index node at once on its data dir and catalog, a replacement embed worker
beside it. Every job must succeed within 3 minutes of the kills, and the final index must equal a clean
single-process run: nothing lost, nothing applied twice."""
from __future__ import annotations

import base64
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cluster import FINISHED, REDIS_HOST, REDIS_PORT, Cluster, fill_repo, services_up, wait_for

from api.tokens import TokenStore
from indexer.catalog.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.index_owner import IndexLease
from workers.jobs import run_sync_job
from workers.queue_state import QueueState

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

REPOS = ("river", "delta", "brook")
FILES = 6  # + README: 7 documents, 4 batches of 2 per source
STALL_SECONDS = 6
LEASE_SECONDS = 60  # longer than the recovery: the restarted node must not wait for its old lease
RECOVERY_LIMIT = 180
FAULTY = {"app": "faulty_worker", "pythonpath": str(Path(__file__).parent)}


class Run:
    """The deployment and what the scenario measured."""

    cluster: Cluster
    catalog: Catalog
    jobs: dict[str, str]
    killed_batch: dict[str, Any]  # in flight on the embed worker killed
    held_by_node: list[tuple[str, str]]  # (job, batch) the index node was applying, unacked, when killed
    applied_at_kill: int
    owner_seconds: float  # kill -9 → the restarted node owns the index and answers
    finished_seconds: float  # kill -9 → every job finished
    node_log: str
    stores: dict[str, dict[str, set[str]]]
    fulltext_total: int  # chunks in the restarted node's tantivy index (duplicates counted)


def snapshot(services: IndexServices, source: str) -> dict[str, set[str]]:
    return {"documents": set(services.catalog.document_versions(source)),
            "catalog_chunks": set(services.catalog.chunk_ids_of_source(source)),
            "tantivy": services.fulltext.ids(source), "qdrant": services.vectors.ids(source)}


def in_flight_on(state: QueueState, jobs: list[str], worker: str) -> dict[str, Any] | None:
    return next((row for job in jobs for row in state.batches(job)
                 if row["started_by"].startswith(f"{worker}@") and row["state"] == "sent"), None)


def held_by_index_node(broker: redis.Redis) -> list[tuple[str, str]]:
    """(job, batch) of the ready batches the index node took from the `index` queue and has not acked yet:
    those it is applying (kombu keeps a delivered, unacked message in the `unacked` hash)."""
    held = []
    for raw in broker.hvals("unacked"):
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == "index":
            args = json.loads(base64.b64decode(message["body"]))[0]
            held.append((args[0]["job_id"], args[0]["batch_id"]))
    return held


def applied(state: QueueState, jobs: list[str]) -> int:
    return sum(state.progress(job).applied for job in jobs)


def healthz(url: str) -> dict:
    try:
        answer = httpx.get(f"{url}/healthz", timeout=2)
        return answer.json() if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, embedder):
    reason = services_up()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("killnode")
    cluster = Cluster(root / "cluster", redis_db=10, settings={
        "CAIRN_CELERY_VISIBILITY_TIMEOUT": "3600", "CAIRN_TASK_STALL_SECONDS": str(STALL_SECONDS),
        "CAIRN_INDEX_LEASE_SECONDS": str(LEASE_SECONDS), "CAIRN_QUEUE_BATCH_DOCS": "2",
        "CAIRN_EMBED_THREADS": "1", "CAIRN_SYNC_RETRY_SECONDS": "2"}).create()
    out = Run()
    out.cluster = cluster
    try:
        started = [cluster.start_node("api", cluster.port, cluster.root / "api", wait=False),
                   cluster.start_worker("s", "sync", wait=False),
                   cluster.start_worker("a", "embed", CAIRN_TEST_CHUNK_DELAY="0.3", wait=False, **FAULTY),
                   cluster.start_worker("b", "embed", CAIRN_TEST_CHUNK_DELAY="1.0", wait=False, **FAULTY)]
        for proc in started:
            cluster.wait_ready(proc)
        node, slow = started[0], started[3]
        out.catalog = catalog = Catalog(make_engine(cluster.database_url))
        state = QueueState(catalog.engine)
        token, _ = TokenStore(catalog.engine).create("admin", [], admin=True)
        for name in REPOS:
            location = fill_repo(root / "repos" / name, name, files=FILES)
            catalog.upsert_source(name, "git", {"location": str(location), "ref": ""}, ["group:eng"])
        with cluster.client(token) as client:
            out.jobs = {name: client.post(f"/v1/sources/{name}/reindex", json={}).json()["id"] for name in REPOS}
        jobs = list(out.jobs.values())
        # In flight at once: a batch on b, and a ready batch the node is applying (after it applied some).
        broker = redis.Redis(REDIS_HOST, REDIS_PORT, db=cluster.redis_db)

        def in_flight() -> bool:
            if not held_by_index_node(broker) or not applied(state, jobs):
                return False
            out.killed_batch = in_flight_on(state, jobs, "b") or {}
            if not out.killed_batch:
                return False
            os.killpg(node.popen.pid, signal.SIGSTOP)  # frozen: what it holds now is what it dies holding
            out.held_by_node = held_by_index_node(broker)
            if not out.held_by_node:
                os.killpg(node.popen.pid, signal.SIGCONT)  # it acked meanwhile: look again
            return bool(out.held_by_node)
        wait_for(in_flight, 120, "a batch in flight on b while the node applies one", every=0.02)
        node.kill9()
        slow.kill9()
        killed = time.monotonic()
        out.applied_at_kill = applied(state, jobs)
        assert not all(catalog.job_state(j) in FINISHED for j in jobs)  # the kills hit jobs in progress
        # The supervisor restarts both: the node on the same port, data dir and catalog.
        node = cluster.start_node("api", cluster.port, cluster.root / "api", wait=False)
        spare = cluster.start_worker("b2", "embed", wait=False)
        wait_for(lambda: healthz(cluster.url).get("role") == "owner" or cluster._dead(node), RECOVERY_LIMIT,
                 "the restarted node to own the index")
        out.owner_seconds = time.monotonic() - killed
        cluster.wait_ready(spare)
        wait_for(lambda: all(catalog.job_state(j) in FINISHED for j in jobs) or cluster._dead(node),
                 RECOVERY_LIMIT - (time.monotonic() - killed), "every job to finish after the kills", every=0.5)
        out.finished_seconds = time.monotonic() - killed
        log.warning("measured: index node and embed worker killed with %d batches applied; the restarted node "
                    "answered %.1f s and every job finished %.1f s after the kill -9 (stall %d s, lease %d s, "
                    "visibility timeout 3600 s)", out.applied_at_kill, out.owner_seconds, out.finished_seconds,
                    STALL_SECONDS, LEASE_SECONDS)
        node.stop()  # closes the stores cleanly, so this process can read them
        out.node_log = node.log.read_text(errors="replace")
        services = IndexServices.open(Settings(data_dir=cluster.root / "api", database_url=cluster.database_url),
                                      embedder=embedder)
        try:
            out.stores = {name: snapshot(services, name) for name in REPOS}
            out.fulltext_total = services.fulltext.term_statistics([])[0]
        finally:
            services.close()
            services.catalog.engine.dispose()
        yield out
    finally:
        cluster.destroy()


def test_every_job_succeeds_within_three_minutes_of_the_kills(run):
    for name, job_id in run.jobs.items():
        job = run.catalog.get_job(job_id)
        assert job.state == "succeeded", (name, job.error, job.counts)
        assert job.counts["files_changed"] == job.counts["files_seen"] == FILES + 1, (name, job.counts)
        assert "stalled" not in job.counts
    assert run.finished_seconds < RECOVERY_LIMIT, run.finished_seconds


def test_the_killed_workers_batch_was_applied_once_by_another_worker(run):
    killed = run.killed_batch
    rows = {r["batch_id"]: r for r in QueueState(run.catalog.engine).batches(killed["job_id"])}
    assert rows[killed["batch_id"]]["state"] == "applied"
    assert not rows[killed["batch_id"]]["started_by"].startswith("b@")
    for job_id in run.jobs.values():
        states = [r["state"] for r in QueueState(run.catalog.engine).batches(job_id)]
        assert states and set(states) == {"applied"}, (job_id, states)


def test_the_batch_the_node_was_applying_is_put_back_and_applied_once(run):
    assert run.held_by_node
    assert "put back 1 index-queue messages the previous index owner held" in run.node_log
    state = QueueState(run.catalog.engine)
    for job_id, batch_id in run.held_by_node:
        assert state.batch_state(job_id, batch_id) == "applied"


def test_the_restarted_node_owns_the_index_again(run):
    lease = IndexLease(run.catalog.engine, "", "", LEASE_SECONDS).current()
    assert lease is not None and lease.url == run.cluster.url
    assert "a previous process of this node that stopped without releasing it" in run.node_log
    assert run.owner_seconds < LEASE_SECONDS, run.owner_seconds  # it did not wait for the lease to expire
    assert "consuming the index queue" in run.node_log
    assert "Traceback" not in run.node_log, run.node_log[-3000:]


def test_final_index_equals_a_clean_single_process_run(run, services):
    for name in REPOS:
        location = run.cluster.root.parent / "repos" / name
        services.catalog.upsert_source(name, "git", {"location": str(location), "ref": ""}, ["group:eng"])
        run_sync_job(services, name)
    total = 0
    for name in REPOS:
        clean = snapshot(services, name)
        assert clean["catalog_chunks"] == clean["tantivy"] == clean["qdrant"] and clean["documents"]
        assert run.stores[name] == clean, name
        total += len(clean["tantivy"])
    assert run.fulltext_total == total  # no chunk written twice into tantivy
