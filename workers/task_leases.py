"""Bounded stalls: heartbeats of running crawl and embed tasks in the catalog, and the sweep that redelivers
the tasks of a dead worker without waiting for the broker's visibility timeout.

A task is acked only after it ran (acks_late), so a worker killed as a whole leaves its messages unacked in
the broker; Redis hands them out again only after CAIRN_CELERY_VISIBILITY_TIMEOUT (an hour by default).
While a task runs, its worker process renews a lease row (every sixth of CAIRN_TASK_STALL_SECONDS); the
index owner's `StallSweeper` finds leases whose heartbeat is older than CAIRN_TASK_STALL_SECONDS, puts
their messages back on their queue at once (kombu's own restore, one Redis transaction per message, so two
sweepers never duplicate one), and says so on the job: `stalled: N batches awaiting redelivery since T`
until a live worker picks them up. It also finishes cancelled jobs whose batches are still pending, so a
cancel never waits for a dead worker."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery, signals
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from indexer.catalog.catalog import ACTIVE_JOB_STATES, CatalogError
from indexer.catalog.schema import jobs, task_leases
from workers.context import WorkerContext
from workers.distributed import finish_if_done

log = logging.getLogger(__name__)

# The tasks whose death stalls a job, and where their job id is among their arguments.
LEASED_TASKS = {"cairn.sync_source": 1, "cairn.embed_batch": 0}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class TaskLease:
    task_id: str
    task: str
    worker: str
    job_id: str | None
    state: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime


class TaskLeases:
    """The task_leases table; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, task_id: str, task: str, worker: str, job_id: str | None) -> None:
        """A task starts (or starts again after a redelivery: same task id, a fresh heartbeat)."""
        now = _now()
        row = {"task_id": task_id, "task": task, "worker": worker, "job_id": job_id, "state": "running",
               "started_at": now, "heartbeat_at": now}
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(task_leases)
            conn.execute(stmt.on_conflict_do_update(index_elements=["task_id"], set_={
                "worker": worker, "state": "running", "started_at": now, "heartbeat_at": now}), [row])

    def beat(self, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(task_leases).where(task_leases.c.task_id == task_id, task_leases.c.state == "running")
                         .values(heartbeat_at=_now()))

    def end(self, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(task_leases).where(task_leases.c.task_id == task_id))

    def all(self) -> list[TaskLease]:
        with self.engine.connect() as conn:
            return [TaskLease(**r._asdict()) for r in conn.execute(select(task_leases))]

    def mark_redelivered(self, task_ids: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(task_leases).where(task_leases.c.task_id.in_(list(task_ids)))
                         .values(state="redelivered"))

    def forget_jobs(self, job_ids: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(task_leases).where(task_leases.c.job_id.in_(list(job_ids))))


# -- the worker side: a heartbeat while a leased task runs -------------------------------------------

class Heartbeat:
    """Renews one task's lease from a thread of the process running it, until the task ends."""

    def __init__(self, leases: TaskLeases, task_id: str, every: float) -> None:
        self.leases, self.task_id, self.every = leases, task_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cairn-heartbeat-{task_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.leases.beat(self.task_id)
            except Exception:  # the catalog briefly unreachable: the next beat may get through
                log.warning("heartbeat of task %s failed", self.task_id, exc_info=True)


_beating: dict[str, Heartbeat] = {}


def _job_of(task_name: str, args: Any) -> str | None:
    at = LEASED_TASKS[task_name]
    return str(args[at]) if isinstance(args, (list, tuple)) and len(args) > at and args[at] else None


@signals.task_prerun.connect
def _lease_task(task_id: str, task: Any, args: Any = None, **_kwargs: object) -> None:
    if task.name not in LEASED_TASKS or task.app.conf.task_always_eager:
        return
    from workers.celery_app import runtime

    rt = runtime(task.app)
    leases = TaskLeases(rt.context().catalog.engine)
    leases.begin(task_id, task.name, task.request.hostname or "", _job_of(task.name, args))
    _beating[task_id] = Heartbeat(leases, task_id, rt.configured().task_stall_seconds / 6).start()


@signals.task_postrun.connect
def _end_lease(task_id: str, task: Any, **_kwargs: object) -> None:
    beat = _beating.pop(task_id, None)
    if beat is None:
        return
    beat.stop()
    beat.leases.end(task_id)


# -- the sweep: redelivery, stall notes, cancels ----------------------------------------------------

def redeliver(celery: Celery, task_ids: set[str] | None = None, queue: str | None = None) -> set[str]:
    """Put unacked messages back on their queue now: those of these tasks, or every one routed to `queue`.
    Returns the task ids restored. Only Redis keeps unacked messages aside (other brokers redeliver as soon
    as the dead consumer's connection drops): elsewhere nothing needs doing."""
    restored: set[str] = set()
    with celery.connection_for_write() as conn:
        channel: Any = conn.default_channel
        if not hasattr(channel, "unacked_key"):
            return restored
        client = channel.client
        for tag, raw in client.hgetall(channel.unacked_key).items():
            try:
                message, _exchange, routing_key = json.loads(raw)
                task_id = message["headers"]["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if (task_ids is not None and task_id in task_ids) or (queue is not None and routing_key == queue):
                channel.qos.restore_by_tag(tag, client=client)
                restored.add(task_id)
    return restored


class StallSweeper:
    """A thread on the index owner: every quarter of the stall time, redeliver the tasks of dead workers,
    note stalled jobs, and finish cancelled jobs that wait for batches."""

    def __init__(self, celery: Celery, ctx: WorkerContext, stall_seconds: int) -> None:
        self.celery, self.ctx, self.catalog, self.state = celery, ctx, ctx.catalog, ctx.state
        self.leases = TaskLeases(ctx.catalog.engine)
        self.stall = dt.timedelta(seconds=stall_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cairn-stall-sweeper", daemon=True)

    def start(self) -> StallSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.stall.total_seconds() / 4):
            try:
                self.sweep()
            except Exception:  # broker or catalog briefly unreachable: sweep again next time
                log.warning("stall sweep failed", exc_info=True)

    def sweep(self, now: dt.datetime | None = None) -> dict[str, int]:
        now = now or _now()
        leases = self.leases.all()
        done = {lease.job_id for lease in leases if lease.job_id and self._finished(lease.job_id)}
        if done:
            self.leases.forget_jobs(done)
        leases = [lease for lease in leases if lease.job_id not in done]
        dead = {lease.task_id for lease in leases if lease.state == "running" and now - lease.heartbeat_at > self.stall}
        restored = redeliver(self.celery, dead) if dead else set()
        if dead:
            log.warning("redelivered %d of %d tasks whose worker stopped beating: %s", len(restored), len(dead),
                        sorted(dead))
            self.leases.mark_redelivered(dead)
        stalled = self._note_stalls([lease for lease in leases if lease.task_id in dead or lease.state == "redelivered"])
        return {"redelivered": len(restored), "stalled_jobs": stalled, "cancelled": self.finish_cancels()}

    def _finished(self, job_id: str) -> bool:
        return self.catalog.job_state(job_id) not in ACTIVE_JOB_STATES

    def _note_stalls(self, stalled: list[TaskLease]) -> int:
        """`stalled: N batches awaiting redelivery since T` on each job with such tasks; cleared once none."""
        by_job: dict[str, list[TaskLease]] = {}
        for lease in stalled:
            if lease.job_id:
                by_job.setdefault(lease.job_id, []).append(lease)
        for job in self.catalog.list_jobs(state=ACTIVE_JOB_STATES, limit=10_000):
            counts = dict(job.counts or {})
            mine = by_job.get(job.id)
            if mine:
                since = min(lease.heartbeat_at for lease in mine).isoformat(timespec="seconds")
                what = "batches" if any(lease.task == "cairn.embed_batch" for lease in mine) else "crawls"
                note = f"stalled: {len(mine)} {what} awaiting redelivery since {since}"
                if counts.get("stalled") != note:
                    self._set_counts(job.id, counts | {"stalled": note})
            elif "stalled" in counts:
                counts.pop("stalled")
                self._set_counts(job.id, counts)
        return len(by_job)

    def _set_counts(self, job_id: str, counts: dict[str, Any]) -> None:
        """Only while the job is unfinished: its final counts, written as it finished, are never replaced."""
        with self.catalog.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(ACTIVE_JOB_STATES))
                         .values(counts=counts))

    def finish_cancels(self) -> int:
        """A cancelled distributed job whose crawl has stopped sending is finished now: its pending batches
        are dropped (never applied), so the cancel waits for no worker, dead or alive."""
        finished = 0
        for job in self.catalog.list_jobs(state="cancelling", limit=10_000):
            crawl = self.state.crawl(job.id)
            if crawl is None or crawl.state not in ("sent", "stopped"):
                continue  # the crawl stops itself after its batch (or, dead, is redelivered and stops)
            dropped = self.state.drop_pending(job.id)
            try:
                done = finish_if_done(self.ctx, job.id)
            except CatalogError:  # its source was removed meanwhile (the removal records the job itself)
                log.warning("cancelled job %s could not be finished", job.id, exc_info=True)
                continue
            if done:
                log.warning("job %s cancelled: %d pending batches dropped", job.id, dropped)
                finished += 1
        return finished
