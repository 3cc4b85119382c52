"""Maintenance: each source synced at its own interval (beat task, eager), pruning, the embedded timer."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select, update

from api.audit import AuditLog
from indexer.catalog.schema import audit_log, jobs, sources
from indexer.models import Principal
from workers import celery_app
from workers.celery_app import BEAT_SCHEDULE
from workers.maintenance import (
    EmbeddedScheduler,
    due_sources,
    intervals,
    prune,
    prune_task,
    schedule_due,
    set_interval,
)

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def eager(settings, services):
    celery_app.configure(settings)
    celery_app.attach_services(services)
    yield celery_app.app
    celery_app.detach_services()


def add_source(services, make_repo, name: str, last_sync: dt.timedelta | None, interval: int | None = None) -> None:
    repo = make_repo(name)
    repo.write("main.py", f"def {name}_main():\n    return 1\n")
    repo.commit()
    services.catalog.upsert_source(name, "git", {"location": str(repo.root)}, ["public"])
    with services.catalog.engine.begin() as conn:
        conn.execute(update(sources).where(sources.c.name == name).values(
            created_at=NOW - dt.timedelta(days=30), last_sync_at=NOW - last_sync if last_sync else None))
    if interval is not None:
        set_interval(services.catalog, name, interval)


@pytest.fixture
def fleet(services, make_repo):
    """Default interval 1 h. Due: `stale` (synced 2 h ago), `own` (30 min interval, synced 40 min ago),
    `never` (never synced, added 30 days ago). Not due: `fresh`, `off` (interval 0), `busy` (running job)."""
    add_source(services, make_repo, "stale", dt.timedelta(hours=2))
    add_source(services, make_repo, "own", dt.timedelta(minutes=40), interval=1800)
    add_source(services, make_repo, "never", None)
    add_source(services, make_repo, "fresh", dt.timedelta(minutes=10))
    add_source(services, make_repo, "off", dt.timedelta(days=5), interval=0)
    add_source(services, make_repo, "busy", dt.timedelta(hours=5))
    services.catalog.start_job(services.catalog.create_job(None, "busy", "index"))
    return services


def test_due_sources_are_exactly_those_whose_interval_elapsed(fleet):
    assert sorted(due_sources(fleet.catalog, 3600, NOW)) == ["never", "own", "stale"]
    assert intervals(fleet.catalog) == {"off": 0, "own": 1800}
    set_interval(fleet.catalog, "own", None)
    assert "own" not in due_sources(fleet.catalog, 3600, NOW)


def test_schedule_due_enqueues_exactly_the_due_sources(eager, fleet):
    enqueued = schedule_due.delay().get()
    assert sorted(enqueued) == ["never", "own", "stale"]
    scheduled = fleet.catalog.list_jobs(kind="scheduled")
    assert sorted(j.source for j in scheduled) == ["never", "own", "stale"]
    assert all(j.state == "succeeded" for j in scheduled)  # eager: the syncs ran in-process
    assert fleet.catalog.counts("stale")["documents"] == 1 and fleet.catalog.counts("fresh")["documents"] == 0
    assert schedule_due.delay().get() == []  # just synced: nothing is due a minute later


def test_beat_schedules_the_maintenance_tasks_on_their_queue():
    assert celery_app.app.conf.beat_schedule == BEAT_SCHEDULE
    assert {e["task"] for e in BEAT_SCHEDULE.values()} == {"cairn.schedule_due", "cairn.permissions_due",
                                                           "cairn.prune", "cairn.reconcile"}
    assert "workers.maintenance" in celery_app.app.conf.include
    routes = celery_app.app.conf.task_routes
    assert all(routes[name]["queue"] == "maintenance" for name in ("cairn.schedule_due", "cairn.permissions_due",
                                                                   "cairn.prune", "cairn.reconcile"))
    assert routes["cairn.permission_pass"]["queue"] == "index"  # run where the index is written


def test_prune_deletes_old_finished_jobs_and_audit_rows_only(services):
    catalog = services.catalog
    for job_id, state in (("old-done", "succeeded"), ("old-failed", "failed"), ("new-done", "succeeded"),
                          ("old-running", "running")):
        catalog.create_job(job_id, "s", "index")
        catalog.update_job(job_id, state=state)
    with catalog.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id.in_(["old-done", "old-failed", "old-running"]))
                     .values(finished_at=NOW - dt.timedelta(days=40), created_at=NOW - dt.timedelta(days=40)))
    audit = AuditLog(catalog.engine)
    audit.record(Principal(user="a", admin=True), "sources.add", target="old")
    audit.record(Principal(user="a", admin=True), "sources.add", target="new")
    with catalog.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.target == "old").values(at=NOW - dt.timedelta(days=100)))

    pruned = prune(catalog, dt.timedelta(days=30), dt.timedelta(days=90))

    assert pruned == {"jobs": 2, "audit": 1}
    assert sorted(j.id for j in catalog.list_jobs()) == ["new-done", "old-running"]
    with catalog.engine.connect() as conn:
        assert list(conn.execute(select(audit_log.c.target)).scalars()) == ["new"]


def test_prune_task_keeps_audit_rows_by_default(eager, services):
    services.catalog.create_job("j", "s", "index")
    assert prune_task.delay().get() == {"jobs": 0, "audit": 0}


def test_embedded_scheduler_submits_due_syncs_to_the_job_runner(fleet):
    submitted: list[str] = []
    scheduler = EmbeddedScheduler(fleet, submitted.append, tick=0)
    assert sorted(scheduler.run_once(NOW)) == ["never", "own", "stale"] == sorted(submitted)
    assert not scheduler.thread.is_alive()  # tick 0: no timer thread


def test_embedded_scheduler_timer_ticks_until_stopped(services):
    ticks: list[str] = []
    scheduler = EmbeddedScheduler(services, ticks.append, tick=0.05)
    scheduler.run_once = lambda now=None: ticks.append("tick")  # count ticks; run_once is tested above
    scheduler.start()
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    while len(ticks) < 2 and dt.datetime.now(dt.UTC) < deadline:
        time.sleep(0.01)
    scheduler.stop()
    assert len(ticks) >= 2 and not scheduler.thread.is_alive()


def test_embedded_server_syncs_due_sources_on_its_own(tmp_path, embedder, make_repo):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from indexer.services import IndexServices
    from indexer.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", scheduler_tick_seconds=0.2, sync_interval_seconds=1)
    services = IndexServices.open(settings, embedder=embedder)
    repo = make_repo("auto")
    repo.write("main.py", "def scheduled_main():\n    return 1\n")
    repo.commit()
    services.catalog.upsert_source("auto", "git", {"location": str(repo.root)}, ["public"])
    try:
        with TestClient(create_app(settings, services=services)):
            deadline = time.monotonic() + 60
            while not services.catalog.list_jobs(source="auto", state="succeeded"):
                assert time.monotonic() < deadline, services.catalog.list_jobs(source="auto")
                time.sleep(0.1)
        assert services.catalog.counts("auto")["documents"] == 1
        assert {j.kind for j in services.catalog.list_jobs(source="auto")} == {"index"}
    finally:
        services.close()
