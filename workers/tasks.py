"""Thin, named, idempotent tasks: they take ids and JSON, and call the indexer.

Without a broker they run in-process (the embedded node). With one, a sync is split over the queues:
`cairn.sync_source` (queue `sync`) crawls and sends batches, `cairn.embed_batch` (queue `embed`)
turns a batch into a ready batch, `cairn.apply_batch` (queue `index`) writes it (workers/distributed.py)."""
from __future__ import annotations

from typing import Any

import kombu.exceptions
from celery import Celery
from sqlalchemy.exc import SQLAlchemyError

from indexer.stores.backends import vector_backend
from workers.batches import document_from_json, document_to_json
from workers.celery_app import app, context_for, services_for
from workers.distributed import SourceBusy, crawl_source, embed_and_forward
from workers.index_queue import APPLY_TASK, INDEX_QUEUE, IndexLocks, apply_or_retry
from workers.jobs import run_permission_job, run_sync_job

__all__ = [
    "apply_batch",
    "delete_documents",
    "document_from_json",
    "document_to_json",
    "embed_documents",
    "index_batch",
    "permission_pass",
    "submit_sync",
    "sync_source",
]

EMBED_TASK = "cairn.embed_batch"


class CeleryDispatch:
    """Sends batches to the embed and index queues."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def embed(self, job_id: str, batch: str, source: str, documents: list[dict], rewrite: bool,
              tries: int = 0, countdown: float = 0.0) -> None:
        self.celery.send_task(EMBED_TASK, args=[job_id, batch, source, documents, rewrite, tries],
                              queue="embed", countdown=countdown or None)

    def index(self, ready: dict) -> None:
        self.celery.send_task(APPLY_TASK, args=[ready], queue=INDEX_QUEUE)


# Infrastructure errors (catalog or broker unreachable) are retried with backoff; a task that fails
# otherwise is acked, so its job is failed by the task or given up as abandoned by the next sync.
TRANSIENT = {"autoretry_for": (SQLAlchemyError, kombu.exceptions.OperationalError), "retry_backoff": True,
             "retry_backoff_max": 300, "max_retries": 10}


@app.task(name="cairn.sync_source", bind=True, **TRANSIENT)
def sync_source(self: Any, source: str, job_id: str | None = None, full: bool = False) -> dict:
    """Sync one source. In-process: end to end. Distributed: crawl under the source's lock and send
    batches; a source another job is syncing is deferred (the job stays queued) and tried again."""
    if self.app.conf.task_always_eager:
        return run_sync_job(services_for(self.app), source, job_id=job_id, full=full).as_dict()
    ctx = context_for(self.app)
    if job_id is None:
        job_id = ctx.catalog.create_job(None, source, "reindex" if full else "index", params={"full": full})
    try:
        outcome = crawl_source(ctx, CeleryDispatch(self.app), source, job_id, full)
    except SourceBusy as busy:
        raise self.retry(args=[source, job_id, full], countdown=ctx.settings.sync_retry_seconds, max_retries=None) from busy
    return {"job_id": job_id, "outcome": outcome}


@app.task(name="cairn.embed_batch", bind=True, **TRANSIENT)
def embed_documents(self: Any, job_id: str, batch: str, source: str, documents: list[dict],
                    rewrite: bool = False, tries: int = 0) -> dict:
    """Chunk and embed one batch into a ready batch for the index queue (no index writes here)."""
    return embed_and_forward(context_for(self.app), CeleryDispatch(self.app), job_id, batch, source, documents,
                             rewrite, tries, worker=self.request.hostname or "")


_index_locks: list[IndexLocks] = []  # one per worker process, made on first use


@app.task(name="cairn.apply_batch", bind=True, **TRANSIENT)
def apply_batch(self: Any, ready: dict) -> dict:
    """Apply a ready batch in a worker: only with a vector backend workers may write (a Qdrant server),
    holding the source's index lock. With Qdrant Edge the index node consumes this queue itself."""
    ctx = context_for(self.app)
    backend = vector_backend(ctx.settings)
    if backend.owner_writes and not self.app.conf.task_always_eager:
        raise RuntimeError(f"with vector_backend={ctx.settings.vector_backend} the `index` queue is consumed "
                           "by `cairn serve`, not workers")
    services = services_for(self.app)
    if not _index_locks:
        _index_locks.append(IndexLocks(ctx, services.pipeline))

    def resend(payload: dict, delay: float) -> None:
        self.app.send_task(APPLY_TASK, args=[payload], queue=INDEX_QUEUE, countdown=delay)

    outcome = apply_or_retry(ctx, services.pipeline, ready, resend, _index_locks[0])
    return {"batch": ready["batch_id"], "outcome": outcome}


@app.task(name="cairn.permission_pass", bind=True, **TRANSIENT)
def permission_pass(self: Any, source: str, job_id: str) -> dict:
    """A source's permissions pass (an existing `permissions` job), where the index is written: in-process
    without a broker; on the `index` queue otherwise (the index node's consumer with Qdrant Edge, or
    `-Q index` workers holding the index lock with a Qdrant server)."""
    services = services_for(self.app)
    if not self.app.conf.task_always_eager:
        ctx = context_for(self.app)
        if vector_backend(ctx.settings).owner_writes:
            raise RuntimeError(f"with vector_backend={ctx.settings.vector_backend} permissions passes run in "
                               "`cairn serve` (it consumes the `index` queue), not in workers")
        if not _index_locks:
            _index_locks.append(IndexLocks(ctx, services.pipeline))
        if not _index_locks[0].hold(source):
            raise self.retry(args=[source, job_id], countdown=1.0, max_retries=None)
    counts = run_permission_job(services.pipeline, services.settings, source, job_id)
    return {"job_id": job_id, **counts.as_dict()}


@app.task(name="cairn.index_batch", bind=True)
def index_batch(self: Any, documents: list[dict]) -> dict:
    """Apply a batch of documents (both phases). Applying the same batch twice changes nothing."""
    pipeline = services_for(self.app).pipeline
    docs = [document_from_json(d) for d in documents]
    counts = pipeline.apply_lexical(docs)
    for source in sorted({d.source for d in docs}):
        counts.add(pipeline.embed_pending(source))
    return {"docs_changed": counts.docs_changed, "chunks_written": counts.chunks_written,
            "chunks_embedded": counts.chunks_embedded, "chunks_deleted": counts.chunks_deleted}


@app.task(name="cairn.delete_documents", bind=True)
def delete_documents(self: Any, doc_ids: list[str]) -> dict:
    counts = services_for(self.app).pipeline.delete(doc_ids)
    return {"docs_deleted": counts.docs_deleted, "chunks_deleted": counts.chunks_deleted}


def submit_sync(source: str, job_id: str, full: bool = False) -> None:
    """Queue a sync job that already exists in the catalog (the API's JobRunner with a broker)."""
    app.send_task("cairn.sync_source", args=[source, job_id, full], queue="sync")

