"""A distributed ticket sync stores its partial checkpoints only as far as the index node applied its batches:
a job cancelled, or abandoned after its queued batches were lost, leaves the next sync to index every
ticket it did not apply (workers/distributed.py, QueueState.advance_checkpoint)."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "indexer"))

from fake_jira import FakeJira
from test_migrations import new_url, pg_database  # noqa: F401 - fixtures: fresh SQLite and PostgreSQL databases
from test_queue_path import InlineDispatch, apply_all, run_embeds

from connectors.config import parse_source
from indexer.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.catalog.schema import queue_batches, queue_crawls
from workers.context import WorkerContext
from workers.distributed import crawl_source
from workers.queue_state import QueueState
from workers.task_leases import StallSweeper

INDEXED = 2  # tickets a first, complete sync indexed
NEW = 7  # tickets added since: four batches of 2, the last one ends the sync (no partial checkpoint of its own)


@pytest.fixture
def ctx(services, settings):
    settings.queue_batch_docs = 2
    return WorkerContext.from_services(services)


@pytest.fixture
def tickets(ctx, services, monkeypatch):
    """A Jira source on a local server speaking Jira Cloud's REST shapes, synced once completely (so the
    next syncs list only what changed after their checkpoint, and reconcile nothing), then seven new issues."""
    fake = FakeJira(cloud=True)
    fake.server.start()
    monkeypatch.setenv("FAKE_JIRA_TOKEN", fake.token)
    config = parse_source({"name": "tickets", "kind": "jira", "deployment": "cloud", "projects": ["SHOP"],
                           "token_env": "FAKE_JIRA_TOKEN", "username": "bot@example.com",
                           "access": {"SHOP": ["group:shop"]}, "url": fake.server.url, "overlap_minutes": 0,
                           "retry_backoff_seconds": 0.05, "timeout_seconds": 5.0})
    services.catalog.upsert_source(config.name, config.kind, config.catalog_config(), config.default_access)
    for n in range(INDEXED + NEW):
        if n == INDEXED:
            assert sync_everything(ctx, services) == INDEXED
        fake.add_issue(f"SHOP-{n + 1}", f"Refund request {n}", f"Customer {n} asks for a refund of order {n}.")
    yield fake
    fake.server.stop()


def crawled(ctx, services, job: str) -> list[dict]:
    """Crawl and embed the job's batches; returns its ready batches, in the order they were sent."""
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, "tickets", job) == "sent"
    run_embeds(ctx, dispatch)
    return dispatch.readies


def deliver(ctx, services, *readies: dict) -> None:
    apply_all(ctx, services, InlineDispatch(readies=list(readies)))


def stored_up_to(ctx, job: str) -> int | None:
    """How many of its tickets the job's stored checkpoint covers (None: the job stored none)."""
    stored = ctx.state.crawl(job).stored
    return stored["resume"]["files_seen"] if stored else None


def sync_everything(ctx, services) -> int:
    """The next sync, delivered whole; returns how many tickets it sent."""
    job = services.catalog.create_job(None, "tickets", "index")
    readies = crawled(ctx, services, job)
    deliver(ctx, services, *readies)
    assert services.catalog.get_job(job).state == "succeeded", services.catalog.get_job(job).error
    return sum(len(ready["documents"]) for ready in readies)


def test_a_cancelled_job_leaves_every_ticket_it_did_not_apply_to_the_next_sync(ctx, services, tickets):
    job = services.catalog.create_job(None, "tickets", "index")
    first, *queued = crawled(ctx, services, job)
    assert len(queued) == 3
    assert stored_up_to(ctx, job) is None  # all sent, none applied: nothing stored
    deliver(ctx, services, first)
    assert stored_up_to(ctx, job) == 2
    services.catalog.request_cancel(job)
    assert StallSweeper(Celery("cancels"), ctx, stall_seconds=60).finish_cancels() == 1  # pending batches dropped
    deliver(ctx, services, *queued)  # they still arrive, and are not applied
    assert services.catalog.get_job(job).state == "cancelled"
    assert len(services.catalog.document_versions("tickets")) == INDEXED + 2
    assert stored_up_to(ctx, job) == 2
    assert sync_everything(ctx, services) == NEW - 2  # the cancelled job's tickets it did not apply
    assert len(services.catalog.document_versions("tickets")) == INDEXED + NEW


def test_batches_lost_with_the_index_node_hold_the_checkpoint_back_and_are_synced_again(ctx, services, tickets):
    job = services.catalog.create_job(None, "tickets", "index")
    before = services.catalog.get_checkpoint("tickets")  # the complete sync's
    first, second, third, _last = crawled(ctx, services, job)
    deliver(ctx, services, third)  # applied before the batches sent ahead of it: nothing stored yet
    assert stored_up_to(ctx, job) is None and services.catalog.get_checkpoint("tickets") == before
    deliver(ctx, services, first)  # the first batch is in: stored up to it, not past the second (pending)
    assert stored_up_to(ctx, job) == 2
    covered = services.catalog.get_checkpoint("tickets")
    assert covered != before
    # The index node died: `second` and `_last` are lost. The job makes no progress and is given up on.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=4 * ctx.settings.celery_visibility_timeout)
    with services.catalog.engine.begin() as conn:
        conn.execute(update(queue_crawls).where(queue_crawls.c.job_id == job).values(updated_at=long_ago))
        conn.execute(update(queue_batches).where(queue_batches.c.job_id == job).values(applied_at=long_ago))
    assert sync_everything(ctx, services) == 3  # `second` and `_last` (`third`'s are indexed: read, not sent)
    assert services.catalog.get_job(job).state == "failed"  # abandoned: no progress in the queues
    assert len(services.catalog.document_versions("tickets")) == INDEXED + NEW
    finished = services.catalog.get_checkpoint("tickets")
    deliver(ctx, services, second)  # a lost batch that turns up after all moves nobody's checkpoint
    assert services.catalog.get_checkpoint("tickets") == finished != covered
    assert ctx.state.batch_state(job, second["batch_id"]) == "dropped"  # nor is it applied: its job gave up
    assert services.catalog.get_job(job).counts["late_batches_dropped"] == 1


@pytest.fixture
def queue_catalog(new_url):  # noqa: F811
    """A fresh catalog, SQLite or PostgreSQL, and its queue state."""
    engine = make_engine(new_url())
    catalog = Catalog(engine)
    catalog.create_all()
    yield catalog, QueueState(engine)
    engine.dispose()


def test_a_checkpoint_is_stored_only_over_batches_applied_in_order(queue_catalog) -> None:
    """QueueState.advance_checkpoint on its own, on both catalogs: out-of-order applies, an apply that comes
    before its batch was registered, a pending retry batch (it has no place in the order), a job given up on."""
    catalog, state = queue_catalog
    catalog.upsert_source("desk", "git", {"location": "/nowhere", "ref": ""}, ["group:eng"])
    job = catalog.create_job(None, "desk", "index")
    state.begin_crawl(job, "desk", full=False)

    def sent(batch: str, seq: int | None, at: int | None = None) -> None:
        state.register_batch(job, batch, "desk", "documents", 2, seq=seq)
        if at is not None:
            state.keep_checkpoint(job, batch, {"at": at}, {"files_seen": 2 * at})

    def applied(batch: str) -> bool:
        state.mark_applied(job, batch, "desk", "documents", {"docs": 2})
        return state.advance_checkpoint(job)

    sent("b1", 1, at=1)
    sent("b2", 2, at=2)
    assert not applied("b2") and catalog.get_checkpoint("desk") is None  # b1 is not applied yet
    assert applied("b1") and catalog.get_checkpoint("desk") == {"at": 2}
    assert state.crawl(job).stored == {"seq": 2, "resume": {"files_seen": 4}}
    assert not applied("b3")  # applied before the crawl registered it: it has no place nor checkpoint yet
    sent("b3", 3, at=3)
    assert state.advance_checkpoint(job) and catalog.get_checkpoint("desk") == {"at": 3}
    sent("b4", 4, at=4)
    sent("retry", None)  # documents of some batch that failed to embed, sent again
    assert not applied("b4") and catalog.get_checkpoint("desk") == {"at": 3}
    assert applied("retry") and catalog.get_checkpoint("desk") == {"at": 4}
    sent("b5", 5, at=5)
    state.abandon(job)
    assert not applied("b5") and catalog.get_checkpoint("desk") == {"at": 4}  # a job given up on moves nothing


def test_a_late_batch_is_recorded_dropped_once_and_an_applied_one_stays_applied(queue_catalog) -> None:
    """QueueState.drop_late on both catalogs: a pending batch, one never registered (its registration lost),
    a repeat, and a batch already applied."""
    catalog, state = queue_catalog
    catalog.upsert_source("desk", "git", {"location": "/nowhere", "ref": ""}, ["group:eng"])
    job = catalog.create_job(None, "desk", "index")
    state.begin_crawl(job, "desk", full=False)
    state.register_batch(job, "pending", "desk", "documents", 2, seq=1)
    state.register_batch(job, "done", "desk", "documents", 2, seq=2)
    assert state.mark_applied(job, "done", "desk", "documents", {"docs": 2})
    assert not state.mark_applied(job, "done", "desk", "documents", {"docs": 2})  # a repeat (was True on PostgreSQL)
    assert state.drop_late(job, "pending", "desk", "documents", 2, "its job is failed")
    assert state.drop_late(job, "unregistered", "desk", "documents", 1, "its job is failed")
    assert not state.drop_late(job, "pending", "desk", "documents", 2, "its job is failed")  # a repeat
    assert not state.drop_late(job, "done", "desk", "documents", 2, "its job is failed")
    assert [state.batch_state(job, b) for b in ("pending", "unregistered", "done")] == ["dropped", "dropped", "applied"]
    assert state.late_drops(job) == 2
    assert state.progress(job).docs_pending == 0
