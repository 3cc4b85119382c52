"""Two `cairn serve` nodes on one catalog and broker (Qdrant Edge, PostgreSQL, Redis): one index owner named
by its lease, one API replica forwarding to it. Searches through either node answer the same, complete;
only the owner consumes `index`; a node told never to consume refuses to start without an owner; beat's
maintenance (reconcile, prune) runs on the owner as recorded jobs and never opens a worker's copy of the
index; killing the owner with SIGKILL lets the replica, sharing its data dir, take over within the lease."""
from __future__ import annotations

import logging
import subprocess
import time

import httpx
import pytest
from celery import Celery
from cluster import BIN, FINISHED, Cluster, fill_repo, free_port, services_up, wait_for

from api.tokens import TokenStore
from indexer.catalog.catalog import Catalog
from indexer.catalog.db import make_engine
from workers.index_owner import IndexLease

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPOS = ("north", "south")
FILES = 4
LEASE_SECONDS = 6


def role(url: str) -> dict:
    """The node's /healthz ({} while it restarts in its new role)."""
    try:
        return httpx.get(f"{url}/healthz", timeout=5).json()
    except httpx.HTTPError:
        return {}


def search(cluster: Cluster, token: str, url: str, query: str, limit: int = 10) -> list[tuple]:
    with cluster.client(token, url) as client:
        answer = client.post("/v1/search", json={"query": query, "limit": limit})
    assert answer.status_code == 200, answer.text
    return [(h["id"], h["path"], round(h["score"], 6)) for h in answer.json()["hits"]]


def every_file_found(cluster: Cluster, token: str, url: str) -> dict[str, list[tuple]]:
    """Each module's own function, searched through this node: its file first."""
    found = {}
    for repo in REPOS:
        for n in range(FILES):
            hits = search(cluster, token, url, f"{repo}_helper_{n}")
            assert hits and hits[0][1] == f"src/{repo}_{n}.py", (url, repo, n, hits[:3])
            found[f"{repo}_{n}"] = hits
    return found


class Run:
    """The deployment and what the scenario measured."""

    cluster: Cluster
    catalog: Catalog
    token: str
    a: object
    b: object
    refused: subprocess.CompletedProcess
    before: dict[str, list[tuple]]
    through_replica: dict[str, list[tuple]]
    maintenance_jobs: list[str]
    takeover_seconds: float
    after: dict[str, list[tuple]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    reason = services_up()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("owner")
    cluster = Cluster(root / "cluster", redis_db=12, settings={
        "CAIRN_INDEX_LEASE_SECONDS": str(LEASE_SECONDS), "CAIRN_QUEUE_BATCH_DOCS": "3",
        "CAIRN_EMBED_THREADS": "1", "CAIRN_SYNC_RETRY_SECONDS": "2"}).create()
    shared = cluster.root / "shared"
    out = Run()
    out.cluster = cluster
    try:
        # No owner yet: a node told never to consume `index` cannot serve, and says so.
        out.refused = subprocess.run([str(BIN / "cairn"), "serve", "--port", str(free_port())], capture_output=True,
                                     text=True, timeout=120, check=False,
                                     env=cluster.env(cluster.root / "never", CAIRN_INDEX_QUEUE_CONSUMER="false"))
        out.a = cluster.start_node("a", cluster.port, shared)
        out.b = cluster.start_node("b", free_port(), shared)
        out.catalog = Catalog(make_engine(cluster.database_url))
        out.token, _ = TokenStore(out.catalog.engine).create("admin", [], admin=True)
        for name in REPOS:
            location = fill_repo(root / "repos" / name, name, files=FILES)
            out.catalog.upsert_source(name, "git", {"location": str(location), "ref": ""}, ["group:eng"])
        cluster.start_worker("w", "sync,embed,maintenance", concurrency=1)
        with cluster.client(out.token, out.b.url) as client:  # writes go through the replica too
            jobs = [client.post(f"/v1/sources/{name}/reindex", json={}).json()["id"] for name in REPOS]
        wait_for(lambda: all(out.catalog.job_state(j) in FINISHED for j in jobs), 120, "the syncs")
        assert all(out.catalog.job_state(j) == "succeeded" for j in jobs), [out.catalog.get_job(j) for j in jobs]
        out.before = every_file_found(cluster, out.token, out.a.url)
        out.through_replica = every_file_found(cluster, out.token, out.b.url)
        out.maintenance_jobs = beat_maintenance(cluster, out.catalog)
        out.a.kill9()
        killed = time.monotonic()
        wait_for(lambda: role(out.b.url).get("role") == "owner", 60, "the replica to take over", every=0.5)
        out.takeover_seconds = time.monotonic() - killed
        out.after = every_file_found(cluster, out.token, out.b.url)
        log.warning("measured: the replica owned the index %.1f s after the owner's kill -9 (lease %d s)",
                    out.takeover_seconds, LEASE_SECONDS)
        yield out
    finally:
        cluster.destroy()


def beat_maintenance(cluster: Cluster, catalog: Catalog) -> list[str]:
    """Send what beat sends to the maintenance queue; returns the jobs it recorded, once they finished."""
    beat = Celery("beat", broker=cluster.broker_url)
    before = {j.id for j in catalog.list_jobs(limit=1000)}
    for task in ("cairn.reconcile", "cairn.prune"):
        beat.send_task(task, queue="maintenance")
    def recorded() -> list[str]:
        new = [j for j in catalog.list_jobs(limit=1000) if j.id not in before]
        kinds = sorted(j.kind for j in new)
        done = all(j.state in FINISHED for j in new)
        return [j.id for j in new] if done and kinds == ["prune", "reconcile", "reconcile"] else []
    return wait_for(recorded, 60, "the maintenance jobs")


def test_a_node_that_may_not_own_the_index_refuses_to_start_without_an_owner(run):
    assert run.refused.returncode == 1, run.refused.stdout + run.refused.stderr
    assert "no `cairn serve` node owns the index" in run.refused.stderr
    assert "CAIRN_INDEX_QUEUE_CONSUMER=false" in run.refused.stderr
    assert "Traceback" not in run.refused.stderr


def test_one_owner_consumes_the_index_queue_and_the_other_node_forwards(run):
    assert "consuming the index queue" in run.a.log.read_text()
    log_b = run.b.log.read_text()
    before_takeover = log_b.split("takes over the index")[0]
    assert "consuming the index queue" not in before_takeover and "is an API replica" in before_takeover


def test_searches_through_either_node_are_identical_and_complete(run):
    assert run.through_replica == run.before
    assert len(run.before) == len(REPOS) * FILES


def test_maintenance_runs_on_the_owner_as_recorded_jobs(run):
    jobs = [run.catalog.get_job(j) for j in run.maintenance_jobs]
    assert all(j.state == "succeeded" for j in jobs), [(j.kind, j.state, j.error) for j in jobs]
    reconciled = {j.source: j.counts for j in jobs if j.kind == "reconcile"}
    assert set(reconciled) == set(REPOS)
    assert all(c["chunks_checked"] > 0 for c in reconciled.values()), reconciled  # the owner's real index
    worker_dir = run.cluster.root / "w"
    assert not any(p.name in ("vectors", "fulltext") for p in worker_dir.rglob("*")), sorted(worker_dir.rglob("*"))


def test_the_replica_takes_over_within_the_lease_when_the_owner_is_killed(run):
    assert run.takeover_seconds < LEASE_SECONDS + 30, run.takeover_seconds
    assert run.after == run.before  # the same copy of the index: nothing lost, nothing split
    lease = IndexLease(run.catalog.engine, "", "", LEASE_SECONDS).current()
    assert lease is not None and lease.url == run.b.url and lease.live()
