"""Bounded stalls (workers/task_leases.py) against a real Redis broker and catalog: a task whose heartbeat
stopped is put back on its queue at once (its message left unacked by a "dead" consumer), the job says it
is stalled until the task runs again, and a cancelled job stops waiting for its pending batches."""
from __future__ import annotations

import datetime as dt
import socket

import pytest
from celery import Celery
from sqlalchemy import update

from indexer.catalog.schema import task_leases
from indexer.settings import Settings
from workers.context import WorkerContext
from workers.task_leases import StallSweeper, TaskLeases

BROKER = "redis://127.0.0.1:6379/14"


@pytest.fixture
def broker() -> Celery:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    app = Celery("stalls", broker=BROKER)
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    yield app
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()


@pytest.fixture
def ctx(tmp_path) -> WorkerContext:
    return WorkerContext.open(Settings(data_dir=tmp_path))


def take_unacked(app: Celery) -> tuple[object, object]:
    """What a worker does before it dies: take the message without acking it (Redis keeps it aside)."""
    conn = app.connection_for_read()
    channel = conn.default_channel
    message = channel.basic_get("embed", no_ack=False)
    assert message is not None
    return conn, message


def age(ctx: WorkerContext, task_id: str, seconds: float) -> None:
    with ctx.catalog.engine.begin() as conn:
        conn.execute(update(task_leases).where(task_leases.c.task_id == task_id).values(
            heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)))


def test_a_dead_workers_task_is_redelivered_and_its_job_says_it_stalled(broker, ctx):
    job_id = ctx.catalog.create_job(None, "east", "index")
    ctx.catalog.update_job(job_id, state="running")
    sent = broker.send_task("cairn.embed_batch", args=[job_id, "batch-1", "east", [], False, 0], queue="embed")
    conn, message = take_unacked(broker)
    assert message.headers["id"] == sent.id
    leases = TaskLeases(ctx.catalog.engine)
    leases.begin(sent.id, "cairn.embed_batch", "b@host", job_id)
    sweeper = StallSweeper(broker, ctx, stall_seconds=60)
    assert sweeper.sweep()["redelivered"] == 0  # beating: nothing to do
    age(ctx, sent.id, 61)
    assert sweeper.sweep()["redelivered"] == 1
    note = ctx.catalog.get_job(job_id).counts["stalled"]
    assert note.startswith("stalled: 1 batches awaiting redelivery since ")
    again = broker.connection_for_read().default_channel.basic_get("embed", no_ack=True)
    assert again is not None and again.headers["id"] == sent.id  # back on its queue, not after an hour
    assert sweeper.sweep()["redelivered"] == 0  # redelivered once
    leases.begin(sent.id, "cairn.embed_batch", "b2@host", job_id)  # a live worker runs it again
    sweeper.sweep()
    assert "stalled" not in ctx.catalog.get_job(job_id).counts
    conn.release()


def test_a_cancelled_job_does_not_wait_for_its_pending_batches(broker, ctx):
    ctx.catalog.upsert_source("east", "git", {"location": "/nowhere", "ref": ""}, ["group:eng"])
    job_id = ctx.catalog.create_job(None, "east", "index")
    ctx.catalog.update_job(job_id, state="running")
    ctx.state.begin_crawl(job_id, "east", full=False)
    for batch in ("b1", "b2"):
        ctx.state.register_batch(job_id, batch, "east", "documents", 2)
    ctx.state.mark_applied(job_id, "b1", "east", "documents", {"docs": 2})
    ctx.state.save_crawl(job_id, state="sent")
    sweeper = StallSweeper(broker, ctx, stall_seconds=60)
    assert sweeper.sweep()["cancelled"] == 0  # not cancelled: it waits for b2
    ctx.catalog.request_cancel(job_id)
    assert sweeper.sweep()["cancelled"] == 1
    assert ctx.catalog.job_state(job_id) == "cancelled"
    assert ctx.state.batch_state(job_id, "b2") == "dropped"
    assert ctx.state.batch_state(job_id, "b1") == "applied"
