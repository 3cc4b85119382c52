"""Progress of a distributed job in a real deployment (`cairn serve` + Celery workers, PostgreSQL, Redis), as
an admin sees it through GET /v1/jobs/{id}: counts and a phase from the start of the crawl, files/s,
chunks/s and an ETA, and counts that stay right when the sync worker is killed with SIGKILL mid-crawl and
the crawl runs again (its task redelivered after CAIRN_TASK_STALL_SECONDS)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cluster import FINISHED, Cluster, fill_repo, services_up, wait_for

from api.progress import describe_rates
from api.tokens import TokenStore
from indexer.catalog.catalog import Catalog
from indexer.catalog.db import make_engine
from workers.queue_state import QueueState

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FILES = 12  # + README: 13 documents, 7 batches of 2
FAULTY = {"app": "faulty_worker", "pythonpath": str(Path(__file__).parent)}


class Run:
    samples: list[dict]  # GET /v1/jobs/{id} while the job ran
    final: dict
    attempt: int
    killed_after_batches: int


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    reason = services_up()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("progress")
    cluster = Cluster(root / "cluster", redis_db=14, settings={
        "CAIRN_CELERY_VISIBILITY_TIMEOUT": "3600", "CAIRN_TASK_STALL_SECONDS": "5", "CAIRN_QUEUE_BATCH_DOCS": "2",
        "CAIRN_EMBED_THREADS": "1", "CAIRN_SYNC_RETRY_SECONDS": "1"}).create()
    out = Run()
    try:
        started = [cluster.start_node("api", cluster.port, cluster.root / "api", wait=False),
                   cluster.start_worker("s", "sync", CAIRN_TEST_CRAWL_DELAY="0.6", wait=False, **FAULTY),
                   cluster.start_worker("e", "embed", CAIRN_TEST_CHUNK_DELAY="0.15", wait=False, **FAULTY)]
        crawler = started[1]
        for proc in started:  # side by side: the slowest start is all the test waits for
            cluster.wait_ready(proc)
        catalog = Catalog(make_engine(cluster.database_url))
        state = QueueState(catalog.engine)
        token, _ = TokenStore(catalog.engine).create("admin", [], admin=True)
        location = fill_repo(root / "repos" / "north", "north", files=FILES)
        catalog.upsert_source("north", "git", {"location": str(location), "ref": ""}, ["group:eng"])
        out.samples = []
        with cluster.client(token) as client:
            job = client.post("/v1/sources/north/reindex", json={}).json()["id"]

            def sample() -> dict:
                out.samples.append(client.get(f"/v1/jobs/{job}").json())
                return out.samples[-1]

            # kill the crawl once it sent 3 batches and the index owner applied at least one of them
            wait_for(lambda: sample()["counts"].get("batches_sent", 0) >= 3
                     and sample()["counts"].get("batches_applied", 0) >= 1, 60, "the crawl to be under way", 0.1)
            crawler.kill9()
            out.killed_after_batches = out.samples[-1]["counts"]["batches_sent"]
            cluster.start_worker("s2", "sync")
            wait_for(lambda: sample()["state"] in FINISHED, 90, "the job to finish", 0.2)
        out.final = out.samples[-1]
        out.attempt = state.crawl(job).attempt
        log.warning("measured: %d samples; killed after %d batches; final %s", len(out.samples),
                    out.killed_after_batches, {k: out.final["counts"].get(k) for k in ("files_seen", "files_changed")})
        yield out
    finally:
        for proc in cluster.procs:  # nothing of this deployment is read after the run: no graceful stops
            proc.kill9()
        cluster.destroy()


def test_a_crawl_restarted_after_its_worker_was_killed_counts_every_file_once(run):
    assert run.attempt == 2 and run.killed_after_batches < 7  # the crawl ran again after a partial first attempt
    final = run.final
    assert final["state"] == "succeeded", final
    assert final["files_seen"] == final["files_changed"] == FILES + 1, final["counts"]
    assert final["done"] == final["total"] > 0


def test_a_running_job_shows_its_phase_counts_and_rates_from_the_start(run):
    running = [s for s in run.samples if s["state"] in ("running", "cancelling")]
    odd = [(s["phase"], s["counts"]) for s in running if s["phase"] not in ("crawling", "applying") or "files_seen" not in s["counts"]]
    assert running and not odd, odd
    assert running[0]["phase"] == "crawling"
    assert all(s["items_per_second"] is not None for s in running if s["files_seen"])
    assert any(s["chunks_per_second"] for s in running)
    seen = [s["files_seen"] for s in running]
    assert max(seen) <= FILES + 1  # a restarted crawl never shows more files than there are


def test_the_job_shows_an_eta_once_everything_is_read(run):
    applying = [s for s in run.samples if s["state"] == "running" and s["phase"] == "applying"]
    with_eta = [s for s in applying if s["eta_seconds"] is not None]
    assert with_eta, [(s["phase"], s["counts"].get("batches_applied")) for s in run.samples]
    assert all(s["eta_seconds"] >= 0 for s in with_eta)
    shown = describe_rates(with_eta[0])  # what `cairn jobs` prints from the same record
    assert "files/s" in shown and "chunks/s" in shown and "ETA" in shown
