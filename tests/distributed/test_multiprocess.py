"""A real distributed deployment: `cairn serve` (the index node, Qdrant Edge) + Celery worker processes on
the local Redis and a fresh PostgreSQL database, indexing git repositories and a Jira (a fake served
over loopback HTTP) at once. One embed worker is killed with SIGKILL while a batch is in flight; the
final index must equal a clean single-process run. Also: two syncs of one source never overlap, and
poisoned documents end quarantined while the rest of their source is indexed."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from cluster import FINISHED, Cluster, fill_repo, services_up, wait_for
from fake_jira import FakeJira

from api.tokens import TokenStore
from connectors.config import parse_source
from indexer.catalog.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.catalog.schema import document_attempts
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job
from workers.queue_state import QueueState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPOS = ("alpha", "beta", "gamma")
QUARANTINE_AFTER = 3
JIRA = {"name": "tickets", "kind": "jira", "deployment": "cloud", "projects": ["SHOP"],
        "token_env": "FAKE_JIRA_TOKEN", "username": "bot@example.com", "access": {"SHOP": ["group:shop"]},
        "retry_backoff_seconds": 0.05, "timeout_seconds": 5.0, "max_attempts": 5}
def fake_jira() -> FakeJira:
    fake = FakeJira(cloud=True)
    fake.server.start()
    for n in range(5):
        fake.add_issue(f"SHOP-{n + 1}", f"Checkout problem {n}", f"h2. Steps\n\nStep {n}: pay with card {n}.\n\n"
                       f"{{code:python}}\ngateway.charge(cart, attempt={n})\n{{code}}")
    return fake


def register(catalog: Catalog, sources: dict[str, Path], jira_url: str) -> None:
    for name, root in sources.items():
        catalog.upsert_source(name, "git", {"location": str(root), "ref": ""}, ["group:eng"])
    config = parse_source({**JIRA, "url": jira_url})
    catalog.upsert_source(config.name, config.kind, config.catalog_config(), config.default_access)


def snapshot(services: IndexServices, source: str) -> dict[str, set[str]]:
    return {"documents": set(services.catalog.document_versions(source)),
            "catalog_chunks": set(services.catalog.chunk_ids_of_source(source)),
            "tantivy": services.fulltext.ids(source), "qdrant": services.vectors.ids(source)}


class Deployment:
    """The scenario, run once for the module; the tests check its outcome."""

    def __init__(self, cluster: Cluster, catalog: Catalog, token: str) -> None:
        self.cluster, self.catalog, self.token = cluster, catalog, token
        self.state = QueueState(catalog.engine)
        self.jobs: dict[str, str] = {}
        self.killed_batch: dict[str, Any] = {}
        self.overlap_jobs: tuple[str, str] = ("", "")
        self.stores: dict[str, dict[str, set[str]]] = {}

    def reindex(self, source: str, full: bool = False) -> str:
        with self.cluster.client(self.token) as client:
            answer = client.post(f"/v1/sources/{source}/reindex", json={"full": full})
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def wait_finished(self, job_ids: list[str], timeout: float) -> None:
        wait_for(lambda: all(self.catalog.job_state(j) in FINISHED for j in job_ids), timeout,
                 f"jobs {job_ids} to finish")

    def batch_in_flight_on(self, worker: str) -> dict[str, Any] | None:
        for job_id in self.jobs.values():
            for row in self.state.batches(job_id):
                if row["started_by"].startswith(f"{worker}@") and row["state"] == "sent":
                    return row
        return None


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    reason = services_up()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("deployment")
    sources = {name: fill_repo(root / "repos" / name, name, files=6) for name in REPOS}
    sources["poison"] = fill_repo(root / "repos" / "poison", "poison", files=4, extra={
        "src/raises.py": "# POISON_RAISE: the chunker cannot parse this file\nx = 1\n",
        "src/kills.py": "# POISON_KILL: the chunker crashes its process on this file\ny = 2\n"})
    jira = fake_jira()
    os.environ["FAKE_JIRA_TOKEN"] = jira.token
    cluster = Cluster(root / "cluster", settings={
        "CAIRN_CELERY_VISIBILITY_TIMEOUT": "12", "CAIRN_QUEUE_BATCH_DOCS": "3", "CAIRN_EMBED_THREADS": "1",
        "CAIRN_QUARANTINE_AFTER": str(QUARANTINE_AFTER), "CAIRN_SYNC_RETRY_SECONDS": "2"}).create()
    faulty = {"app": "faulty_worker", "pythonpath": str(Path(__file__).parent)}
    try:
        cluster.start_api()
        catalog = Catalog(make_engine(cluster.database_url))
        token, _ = TokenStore(catalog.engine).create("admin", [], admin=True)
        register(catalog, sources, jira.server.url)
        cluster.start_worker("a", "sync,embed", concurrency=2, **faulty)
        slow = cluster.start_worker("b", "embed", CAIRN_TEST_CHUNK_DELAY="1.0", **faulty)
        run = Deployment(cluster, catalog, token)
        run.sources, run.jira = sources, jira
        for name in [*sources, "tickets"]:
            run.jobs[name] = run.reindex(name)
        run.killed_batch = wait_for(lambda: run.batch_in_flight_on("b"), 90, "a batch in flight on worker b")
        slow.kill9()
        cluster.start_worker("b2", "embed", **faulty)
        run.wait_finished(list(run.jobs.values()), 240)
        first, second = run.reindex("alpha", full=True), run.reindex("alpha", full=True)
        run.overlap_jobs = (first, second)
        run.wait_finished([first, second], 150)
        api = cluster.procs[0]
        api.stop()  # closes the stores cleanly, so this process can read them
        yield run
    finally:
        for proc in cluster.procs:
            if proc.alive() and proc.name != "api":
                proc.stop(timeout=10)
        try:
            cluster.destroy()
        finally:
            jira.server.stop()
            os.environ.pop("FAKE_JIRA_TOKEN", None)


@pytest.fixture(scope="module")
def distributed_stores(deployment: Deployment, embedder) -> dict[str, dict[str, set[str]]]:
    settings = Settings(data_dir=deployment.cluster.root / "api", database_url=deployment.cluster.database_url)
    services = IndexServices.open(settings, embedder=embedder)
    try:
        return {name: snapshot(services, name) for name in [*deployment.sources, "tickets"]}
    finally:
        services.close()
        services.catalog.engine.dispose()


def test_every_job_succeeds_though_a_worker_was_killed_mid_batch(deployment):
    for name, job_id in deployment.jobs.items():
        job = deployment.catalog.get_job(job_id)
        # the poison source's quarantined documents are failed items: that job is honestly `partial`
        expected = "partial" if name == "poison" else "succeeded"
        assert job.state == expected, (name, job.error, deployment.cluster.procs[1].tail())
    killed = deployment.killed_batch
    rows = {r["batch_id"]: r for r in deployment.state.batches(killed["job_id"])}
    assert rows[killed["batch_id"]]["state"] == "applied"
    assert not rows[killed["batch_id"]]["started_by"].startswith("b@")  # another worker finished it
    alpha = deployment.catalog.get_job(deployment.jobs["alpha"])
    assert alpha.counts["files_changed"] == alpha.counts["files_seen"] == 7  # the redelivered batch counted once


def test_final_index_equals_a_clean_single_process_run(deployment, distributed_stores, services):
    register(services.catalog, deployment.sources, deployment.jira.server.url)
    for name in [*REPOS, "tickets", "poison"]:
        run_sync_job(services, name)
    for name in [*REPOS, "tickets"]:
        clean = snapshot(services, name)
        assert clean["catalog_chunks"] == clean["tantivy"] == clean["qdrant"] and clean["documents"]
        assert distributed_stores[name] == clean, name
    poisoned = {"poison:src/raises.py", "poison:src/kills.py"}
    clean = snapshot(services, "poison")
    records = services.catalog.get_chunks(clean["catalog_chunks"])
    dropped = {cid for cid, rec in records.items() if rec.doc_id in poisoned}
    got = distributed_stores["poison"]
    assert got["documents"] == clean["documents"] - poisoned
    assert got["catalog_chunks"] == got["tantivy"] == got["qdrant"] == clean["catalog_chunks"] - dropped


def test_poisoned_documents_are_quarantined_and_the_rest_indexed(deployment):
    job = deployment.catalog.get_job(deployment.jobs["poison"])
    assert job.state == "partial" and job.counts["files_quarantined"] == 2  # quarantined: failed items
    with deployment.catalog.engine.connect() as conn:
        query = select(document_attempts).where(document_attempts.c.source == "poison")
        rows = {r.path: r for r in conn.execute(query)}
    assert set(rows) == {"src/raises.py", "src/kills.py"}
    assert all(r.quarantined and r.attempts >= QUARANTINE_AFTER for r in rows.values())
    assert "ValueError: cannot parse src/raises.py" in rows["src/raises.py"].error
    failures = {f.item: f.error for f in deployment.catalog.list_failures("poison")}
    assert set(failures) == {"src/raises.py", "src/kills.py"}
    assert all(e.startswith("quarantined after") for e in failures.values())
    assert len(deployment.catalog.document_versions("poison")) == 5  # 4 modules + README


def test_two_syncs_of_one_source_never_run_at_once(deployment):
    first, second = (deployment.catalog.get_job(j) for j in deployment.overlap_jobs)
    assert first.state == second.state == "succeeded"
    runs = sorted([(first.started_at, first.finished_at), (second.started_at, second.finished_at)])
    assert runs[0][1] <= runs[1][0], runs  # the later one started only after the earlier one finished
    assert first.counts["files_changed"] == 0 and second.counts["files_changed"] == 0  # nothing changed
    assert first.counts["batches_applied"] == second.counts["batches_applied"] > 0
