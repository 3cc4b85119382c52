"""Sync jobs: cancel and interrupt between batches (the index never holds half a batch), counts and ETA."""
from __future__ import annotations

import functools

import pytest

from indexer.pipeline.reconcile import reconcile_source
from indexer.pipeline.sync import SyncRunner
from workers import jobs as jobs_module
from workers.jobs import JobStopped, new_job, run_sync_job


def many_files(make_repo, n: int = 9):
    repo = make_repo()
    for i in range(n):
        repo.write(f"mod{i}.py", f'def handler_{i}(x):\n    """Handler number {i}."""\n    return x * {i + 1}\n')
    repo.commit()
    return repo


def stores_agree_with_catalog(services, source: str) -> None:
    """Tantivy holds every catalog chunk; vectors hold exactly the chunks of `indexed` documents."""
    drift = reconcile_source(services.pipeline, source, repair=False)
    assert drift.total == 0, drift.as_dict()


@pytest.fixture
def small_batches(monkeypatch):
    """Three documents per lexical batch, two chunks per dense batch: many batches from a small repo."""
    monkeypatch.setattr(jobs_module, "SyncRunner", functools.partial(SyncRunner, batch_docs=3))


def test_cancel_during_lexical_phase_stops_after_the_batch(services, make_repo, small_batches):
    repo = many_files(make_repo)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["group:eng"])
    job_id = new_job(services, "app")
    batches = []

    def observe(phase, counts):
        batches.append((phase, counts.files_changed))
        if len(batches) == 1:
            services.catalog.request_cancel(job_id)

    with pytest.raises(JobStopped) as stopped:
        run_sync_job(services, "app", job_id=job_id, observe=observe)
    assert stopped.value.state == "cancelled"
    job = services.catalog.get_job(job_id)
    assert job.state == "cancelled" and job.finished_at is not None and job.counts["files_changed"] == 3
    assert services.catalog.get_source("app").state == "idle"
    assert batches == [("lexical", 3)]
    assert services.catalog.counts("app")["documents"] == 3  # exactly one whole batch, nothing of the next
    stores_agree_with_catalog(services, "app")
    # The next sync picks up where the cancelled one stopped and finishes everything.
    counts = run_sync_job(services, "app")
    assert counts.files_changed == 6 and services.catalog.counts("app")["documents"] == 9
    assert services.catalog.pending_chunk_count("app") == 0
    stores_agree_with_catalog(services, "app")


def test_cancel_during_embedding_leaves_whole_batches_embedded(services, make_repo):
    repo = many_files(make_repo)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["group:eng"])
    services.pipeline.embed_batch = 2
    job_id = new_job(services, "app")

    def observe(phase, counts):
        if phase == "dense":
            services.catalog.request_cancel(job_id)

    with pytest.raises(JobStopped):
        run_sync_job(services, "app", job_id=job_id, observe=observe)
    assert services.catalog.get_job(job_id).state == "cancelled"
    embedded = set(services.vectors.ids("app"))
    assert 0 < len(embedded) < len(services.catalog.chunk_ids_of_source("app"))
    assert services.catalog.pending_chunk_count("app") > 0
    stores_agree_with_catalog(services, "app")


def test_should_stop_interrupts_and_records_interrupted(services, make_repo, small_batches):
    repo = many_files(make_repo)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    with pytest.raises(JobStopped) as stopped:
        run_sync_job(services, "app", should_stop=lambda: "interrupted")
    job = services.catalog.list_jobs(source="app")[0]
    assert stopped.value.state == job.state == "interrupted"
    assert services.catalog.get_source("app").state == "idle"
    stores_agree_with_catalog(services, "app")


def test_a_job_cancelled_while_queued_never_runs(services, make_repo):
    repo = many_files(make_repo, 2)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    job_id = new_job(services, "app")
    assert services.catalog.request_cancel(job_id).state == "cancelling"
    with pytest.raises(JobStopped):
        run_sync_job(services, "app", job_id=job_id)
    assert services.catalog.get_job(job_id).state == "cancelled"
    assert services.catalog.counts("app")["documents"] == 0


def test_cancel_leaves_finished_jobs_alone(services, make_repo):
    repo = many_files(make_repo, 1)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    run_sync_job(services, "app")
    job = services.catalog.list_jobs(source="app")[0]
    assert services.catalog.request_cancel(job.id).state == "succeeded"
    assert services.catalog.request_cancel("no-such-job") is None


def test_job_counts_carry_skip_reasons_throughput_and_progress(services, make_repo):
    repo = many_files(make_repo, 4)
    repo.write("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    repo.write("node_modules/lib/index.js", "module.exports = 1;\n")
    repo.commit()
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    run_sync_job(services, "app")
    job = services.catalog.list_jobs(source="app")[0]
    counts = job.counts
    assert job.state == "succeeded" and counts["files_seen"] == 6 and counts["files_skipped"] == 2
    assert sum(counts["skipped_by_reason"].values()) == 2 and len(counts["skipped_by_reason"]) == 2
    assert counts["items_per_second"] > 0 and counts["pending_chunks"] == 0
    assert job.total == job.done == len(services.catalog.chunk_ids_of_source("app"))
    assert job.params == {"full": False}


def test_list_jobs_filters_by_source_state_and_kind(services):
    services.catalog.create_job("a", "one", "index")
    services.catalog.create_job("b", "two", "reconcile")
    services.catalog.start_job("b")
    assert [j.id for j in services.catalog.list_jobs(state="running")] == ["b"]
    assert [j.id for j in services.catalog.list_jobs(source="one")] == ["a"]
    assert [j.id for j in services.catalog.list_jobs(kind="reconcile")] == ["b"]
    assert services.catalog.active_job_sources() == {"one", "two"}
    assert services.catalog.active_job_sources(["index"]) == {"one"}


class Crash(BaseException):
    """The process dying mid-job: nothing after it runs (no except Exception), the job stays `running`."""


@pytest.mark.parametrize(("phase", "at", "full"), [("lexical", 1, False), ("lexical", 2, False), ("dense", 2, False),
                                                   ("lexical", 1, True)])
def test_a_job_resumed_after_a_crash_counts_what_it_did_before(services, make_repo, small_batches, phase, at, full):
    repo = many_files(make_repo, 10)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    services.pipeline.embed_batch = 2
    job_id = new_job(services, "app", params={"full": full})
    reached = []

    def crash(name, counts):
        reached.extend([name] if name == phase else [])
        if len(reached) == at:
            raise Crash

    with pytest.raises(Crash):
        run_sync_job(services, "app", job_id=job_id, full=full, observe=crash)
    before = services.catalog.get_job(job_id)
    assert before.state == "running" and before.counts["files_changed"] > 0  # left by the "dead" process
    run_sync_job(services, "app", job_id=job_id, full=full)  # what JobRunner.resume does at the next start
    job = services.catalog.get_job(job_id)
    chunks = len(services.catalog.chunk_ids_of_source("app"))
    assert job.state == "succeeded"
    # The job's totals are those of one uninterrupted run: nothing done before the crash is lost, nothing
    # read again is counted twice (a resumed full sync redoes everything, so carries nothing).
    assert (job.counts["files_seen"], job.counts["files_changed"], job.counts["chunks_written"]) == (10, 10, chunks)
    assert job.counts["chunks_embedded"] == chunks and job.counts["carried"].get("files_changed", 0) == (0 if full else 10)
    stores_agree_with_catalog(services, "app")


def test_a_job_interrupted_by_a_shutdown_resumes_with_its_counts(services, make_repo, small_batches):
    repo = many_files(make_repo, 10)
    services.catalog.upsert_source("app", "git", {"location": str(repo.root)}, ["public"])
    job_id = new_job(services, "app")
    with pytest.raises(JobStopped):
        run_sync_job(services, "app", job_id=job_id, should_stop=lambda: "interrupted")
    assert services.catalog.get_job(job_id).counts["files_changed"] == 3  # one batch, then the stop
    run_sync_job(services, "app", job_id=job_id)
    counts = services.catalog.get_job(job_id).counts
    assert (counts["files_seen"], counts["files_changed"]) == (10, 10)
