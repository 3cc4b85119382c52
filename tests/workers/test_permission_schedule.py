"""Permissions passes on their own schedule: the due logic (with a clock), the embedded timer, beat."""
from __future__ import annotations

import datetime as dt
import functools

import pytest
from ledger_source import HANDBOOK, Item, LedgerConnector, Server
from sqlalchemy import update

import workers.tasks  # noqa: F401 - registers cairn.permission_pass (the worker imports it by `include`)
from connectors.registry import CONNECTORS
from indexer.catalog.schema import permission_syncs
from indexer.models import Access
from workers import celery_app
from workers.celery_app import BEAT_SCHEDULE
from workers.maintenance import EmbeddedScheduler, due_permission_passes, permissions_due

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def fleet(services, make_repo, monkeypatch):
    """Three ledger sources and one git source, all synced; `ledger-b` passed 2 min ago."""
    servers = {name: Server(items={"HR-1": Item(HANDBOOK, Access.of("group:eng"))})
               for name in ("ledger-a", "ledger-b", "ledger-c")}
    monkeypatch.setitem(CONNECTORS, "ledger", lambda row, settings: LedgerConnector(row.name, servers[row.name]))
    for name in servers:
        services.catalog.upsert_source(name, "ledger", {}, [])
    repo = make_repo("code")
    repo.write("main.py", "def main():\n    return 1\n")
    repo.commit()
    services.catalog.upsert_source("code", "git", {"location": str(repo.root)}, ["public"])
    services.catalog.record_permission_pass("ledger-b")
    with services.catalog.engine.begin() as conn:
        conn.execute(update(permission_syncs).values(last_attempt_at=NOW - dt.timedelta(minutes=2)))
    services.servers = servers
    return services


def test_due_passes_are_sources_with_access_from_the_source_whose_interval_elapsed(fleet):
    catalog = fleet.catalog
    assert sorted(due_permission_passes(catalog, 300, NOW)) == ["ledger-a", "ledger-c"]  # never passed; git never
    assert sorted(due_permission_passes(catalog, 300, NOW + dt.timedelta(minutes=3))) == ["ledger-a", "ledger-b",
                                                                                          "ledger-c"]
    assert due_permission_passes(catalog, 0, NOW) == []  # 0 = off
    catalog.start_job(catalog.create_job(None, "ledger-a", "index"))  # a sync is running: not beside it
    catalog.create_job(None, "ledger-c", "permissions")  # a pass is waiting: not twice
    assert due_permission_passes(catalog, 300, NOW) == []


def test_a_pass_falling_due_before_the_next_look_runs_now(fleet):
    """Looking every 60 s for passes due 300 s after the last one ended, the next pass must start at the
    look before it falls due, not a minute after (every 360 s)."""
    catalog = fleet.catalog  # ledger-b's last pass ended 2 min before NOW
    assert "ledger-b" not in due_permission_passes(catalog, 300, NOW + dt.timedelta(seconds=179), ahead=0)
    assert "ledger-b" in due_permission_passes(catalog, 300, NOW + dt.timedelta(seconds=179), ahead=60)
    assert "ledger-b" not in due_permission_passes(catalog, 300, NOW + dt.timedelta(seconds=119), ahead=60)
    scheduler = EmbeddedScheduler(fleet, lambda name: None, submit_call=lambda call: None, tick=60)
    assert "ledger-b" in scheduler.submit_passes(NOW + dt.timedelta(seconds=179))


def test_the_embedded_scheduler_runs_due_passes_on_the_writer_thread(fleet):
    calls: list = []
    scheduler = EmbeddedScheduler(fleet, lambda name: None, submit_call=calls.append, tick=0)
    assert sorted(scheduler.submit_passes(NOW)) == ["ledger-a", "ledger-c"]
    jobs = {j.source: j for j in fleet.catalog.list_jobs(kind="permissions")}
    assert {s: j.state for s, j in jobs.items()} == {"ledger-a": "queued", "ledger-c": "queued"}
    assert scheduler.submit_passes(NOW) == []  # queued: not submitted again on the next tick
    fleet.servers["ledger-c"].down = True
    for call in calls:
        assert isinstance(call, functools.partial)
        call()  # what the job runner's thread does
    assert {j.source: j.state for j in fleet.catalog.list_jobs(kind="permissions")} == {
        "ledger-a": "succeeded", "ledger-c": "failed"}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=301)  # a failed pass is retried at the interval too
    assert sorted(scheduler.submit_passes(later)) == ["ledger-a", "ledger-b", "ledger-c"]


def test_run_once_includes_the_passes_and_start_interrupts_left_over_jobs(fleet):
    left = fleet.catalog.create_job(None, "ledger-a", "permissions")
    calls: list = []
    scheduler = EmbeddedScheduler(fleet, lambda name: None, submit_call=calls.append, tick=0).start()
    assert fleet.catalog.get_job(left).state == "interrupted"
    scheduler.run_once(NOW)
    assert {j.source for j in fleet.catalog.list_jobs(kind="permissions", state="queued")} == {"ledger-a", "ledger-c"}


@pytest.fixture
def eager(settings, services):
    celery_app.configure(settings)
    celery_app.attach_services(services)
    yield celery_app.app
    celery_app.detach_services()


def test_beat_task_runs_the_due_passes(eager, fleet):
    assert any(e["task"] == "cairn.permissions_due" for e in BEAT_SCHEDULE.values())
    assert "cairn.permissions_due" in eager.tasks and "cairn.permission_pass" in eager.tasks
    for name in ("ledger-a", "ledger-b", "ledger-c"):
        from workers.jobs import run_sync_job

        run_sync_job(fleet, name)
    with fleet.catalog.engine.begin() as conn:  # beat reads the real clock: ledger-b passed 2 minutes before it
        conn.execute(update(permission_syncs).where(permission_syncs.c.source == "ledger-b").values(
            last_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)))
    sent = permissions_due.delay().get()
    assert sorted(sent) == ["ledger-a", "ledger-c"]
    assert {j.source: j.state for j in fleet.catalog.list_jobs(kind="permissions")} == {
        "ledger-a": "succeeded", "ledger-c": "succeeded"}
    assert permissions_due.delay().get() == []  # just passed: nothing due a minute later
