"""The `index` queue: ready batches applied by the process that owns the index writers.

With Qdrant Edge that is the API/index node: `IndexQueueConsumer` is a thread in `cairn serve` that
consumes the queue with kombu and acks a message only after its batch is applied (a node killed
mid-batch gets it back after the broker's visibility timeout). A batch that fails to apply is sent
again later (not retried in place, so one failing source never blocks the queue); after
`quarantine_after` tries its documents are quarantined and the batch counts as applied."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kombu
from celery import Celery

from indexer.locks import SourceLock, source_lock
from indexer.pipeline import Pipeline
from indexer.stores.backends import vector_backend
from workers.batches import ReadyBatch, quarantine_document
from workers.context import WorkerContext
from workers.distributed import apply_ready_batch, finish_if_done

log = logging.getLogger(__name__)

APPLY_TASK = "cairn.apply_batch"
PERMISSION_TASK = "cairn.permission_pass"
MAINTENANCE_TASK = "cairn.index_maintenance"  # workers/maintenance.py: reconcile, prune, optimize on the owner
INDEX_QUEUE = "index"

Resend = Callable[[dict, float], None]  # (ready batch JSON, delay in seconds)


class IndexLocks:
    """Index-writer locks for a process applying batches next to others (a vector backend that workers
    may write, i.e. a Qdrant server, and tantivy on a shared volume). A tantivy writer stays open in the
    process that took it, so the lock is kept until the process ends (it dies with it). When the index
    owner applies every write (Qdrant Edge) it is the only writer and needs none."""

    def __init__(self, ctx: WorkerContext, pipeline: Pipeline) -> None:
        self.ctx = ctx
        self.shared = not vector_backend(ctx.settings).owner_writes
        # The shared full-text layout has one tantivy writer for every source, so one lock; a legacy
        # per-source layout (INDEX_VERSION < 3, until rebuilt) has a writer, and a lock, per source.
        self.per_source = pipeline.fulltext.per_source_writers
        self._locks: dict[str, SourceLock] = {}
        self._guard = threading.Lock()

    def hold(self, source: str) -> bool:
        if not self.shared:
            return True
        name = f"index:{source}" if self.per_source else "index:fulltext"
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = source_lock(self.ctx.catalog.engine, self.ctx.settings.data_dir, name)
                self._locks[name] = lock
            return lock.acquire()


def apply_or_retry(ctx: WorkerContext, pipeline: Pipeline, payload: dict, resend: Resend,
                   locks: IndexLocks | None = None) -> str:
    """Apply a ready batch; on failure send it again later, or quarantine it after too many tries.
    A batch whose source's writer another process holds is sent again shortly (not counted as a try)."""
    ready = ReadyBatch.from_json(payload)
    if locks is not None and not locks.hold(ready.source):
        resend(payload, 1.0)
        return "busy"
    try:
        apply_ready_batch(ctx, pipeline, ready)
        return "applied"
    except Exception as exc:  # noqa: BLE001 - any failure to apply counts as a try; the batch is retried or quarantined
        tries = ready.tries + 1
        error = f"{type(exc).__name__}: {exc}"
        if tries < ctx.settings.quarantine_after:
            log.warning("batch %s of job %s failed to apply (try %d): %s", ready.batch_id, ready.job_id, tries, error)
            resend(payload | {"tries": tries}, float(min(2 ** tries, 60)))
            return "retry"
        log.error("batch %s of job %s failed %d times: quarantining its documents", ready.batch_id, ready.job_id, tries)
        docs = [item.doc for item in ready.documents]
        ctx.state.count_attempt(docs)
        for doc in docs:
            quarantine_document(ctx, doc, tries, error)
        counts = {"docs": len(docs), "files_quarantined": len(docs) + ready.quarantined}
        ctx.state.mark_applied(ready.job_id, ready.batch_id, ready.source, ready.kind, counts)
        ctx.state.advance_checkpoint(ready.job_id)  # its documents are skipped until they change
        finish_if_done(ctx, ready.job_id)
        return "quarantined"


class IndexQueueConsumer:
    """A thread consuming the `index` queue inside the index node (one batch at a time, acks late)."""

    def __init__(self, app: Celery, ctx: WorkerContext, pipeline: Pipeline, queue: str = INDEX_QUEUE) -> None:
        self.app, self.ctx, self.pipeline, self.queue = app, ctx, pipeline, queue
        self.locks = IndexLocks(ctx, pipeline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cairn-index-queue", daemon=True)
        self.applied = 0

    def start(self) -> IndexQueueConsumer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the batch in hand (it is acked only if it was applied)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception:  # the broker went away: reconnect; unacked messages come back by themselves
                log.exception("index queue consumer lost its broker connection; reconnecting")
                self._stop.wait(2.0)

    def _consume(self) -> None:
        queue = kombu.Queue(self.queue, kombu.Exchange(self.queue, type="direct"), routing_key=self.queue)
        with self.app.connection_for_read() as conn, \
                conn.Consumer([queue], callbacks=[self._on_message], accept=["json"], prefetch_count=1):
            log.info("consuming the %s queue", self.queue)
            while not self._stop.is_set():
                try:
                    conn.drain_events(timeout=1.0)
                except TimeoutError:
                    continue

    def _on_message(self, body: Any, message: kombu.Message) -> None:
        task = message.headers.get("task") if message.headers else None
        if task == PERMISSION_TASK:  # a permissions pass (workers/maintenance.py sends it here, to the writer)
            self._permission_pass(body)
            message.ack()
            return
        if task == MAINTENANCE_TASK:  # reconcile, prune or optimize, sent here by a maintenance worker
            self._maintenance(body)
            message.ack()
            return
        if task != APPLY_TASK or not isinstance(body, (list, tuple)) or not body or not body[0]:
            log.error("dropping a message on the %s queue that is not a %s task: %r", self.queue, APPLY_TASK, task)
            message.ack()
            return
        payload = body[0][0]
        not_before = float(payload.get("not_before", 0))
        if not_before > time.time():
            time.sleep(min(0.2, not_before - time.time()))  # not due yet: back to the tail of the queue
            self._send(payload, 0.0, keep_not_before=True)
        else:
            try:
                apply_or_retry(self.ctx, self.pipeline, payload, self._send, self.locks)
                self.applied += 1
            except (KeyError, TypeError, ValueError):  # not a ready batch: redelivering it cannot help
                log.exception("dropping a malformed ready batch from the %s queue", self.queue)
        message.ack()

    def _permission_pass(self, body: Any) -> None:
        from workers.jobs import run_permission_job

        try:
            source, job_id = body[0][0], body[0][1]
        except (IndexError, KeyError, TypeError):
            log.error("dropping a malformed %s message from the %s queue", PERMISSION_TASK, self.queue)
            return
        if not self.locks.hold(source):  # another process holds the index writer: run it again shortly
            self.app.send_task(PERMISSION_TASK, args=[source, job_id], queue=self.queue, countdown=1.0)
            return
        try:
            run_permission_job(self.pipeline, self.ctx.settings, source, job_id)
        except Exception:  # noqa: BLE001 - recorded on the job and the source; the consumer goes on
            log.warning("permissions job %s of %s failed", job_id, source)

    def _maintenance(self, body: Any) -> None:
        from workers.celery_app import services_for
        from workers.maintenance import run_maintenance

        try:
            action, job_id, params = body[0][0], body[0][1], dict(body[0][2])
        except (IndexError, KeyError, TypeError, ValueError):
            log.error("dropping a malformed %s message from the %s queue", MAINTENANCE_TASK, self.queue)
            return
        try:
            run_maintenance(services_for(self.app), action, job_id, params)
        except Exception:  # recorded on the job; the consumer goes on
            log.warning("%s job %s failed", action, job_id, exc_info=True)

    def _send(self, payload: dict, delay: float, keep_not_before: bool = False) -> None:
        if not keep_not_before:
            payload = payload | {"not_before": time.time() + delay}
        self.app.send_task(APPLY_TASK, args=[payload], queue=self.queue)
