"""A sync in distributed mode: crawl → `embed` batches → `index` ready batches → the job finishes.

- The crawl runs the connector under the source's lock and sends batches; it never writes the index.
- Only one job of a source is unfinished at a time: a sync that finds the source locked, or another of
  its jobs still crawling or with batches pending, is deferred (its job stays `queued`, with the
  job it waits for in its counts). So batches of two syncs of one source never race each other.
- A job is finished by whichever process sees its crawl done and its last batch applied; the
  checkpoint is stored only then, so a crash anywhere before leaves the source to be synced again.
- A partial checkpoint (ticket and page sources) rides with the batch it ends and is stored by whichever
  process sees that batch and every batch sent before it applied (QueueState.advance_checkpoint): a job
  cancelled, abandoned or whose queued batches were lost leaves the next sync to read again everything
  it did not apply.
- A batch of a job no longer live (cancelled, failed, finished, abandoned) that arrives late is recorded as
  dropped, never applied: it could write older versions over what a newer job of the source indexed."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from connectors.base import Checkpoint
from connectors.registry import build_connector
from indexer.catalog.catalog import ACTIVE_JOB_STATES
from indexer.locks import source_lock
from indexer.models import Document
from indexer.pipeline.apply import BatchCounts, Pipeline, ReadyDocument
from indexer.pipeline.sync import Landed, Observer, SyncCounts, SyncLoop, known_versions
from workers.batches import ReadyBatch, batch_id, document_from_json, document_to_json, embed_batch
from workers.context import WorkerContext
from workers.outcome import sync_outcome
from workers.queue_state import ADVANCING, CrawlRecord, Progress
from workers.window import rewind_for_job

log = logging.getLogger(__name__)


class Dispatch(Protocol):
    """Sends work to the other queues (Celery in production; anything callable in tests)."""

    def embed(self, job_id: str, batch: str, source: str, documents: list[dict], rewrite: bool,
              tries: int = 0, countdown: float = 0.0) -> None: ...

    def index(self, ready: dict) -> None: ...


class SourceBusy(Exception):
    """The source is being synced by another job; try again later."""

    def __init__(self, source: str, holder: str) -> None:
        super().__init__(f"source {source!r} is being synced by {holder}")
        self.holder = holder


def crawl_source(ctx: WorkerContext, dispatch: Dispatch, source: str, job_id: str, full: bool = False) -> str:
    """Run one crawl of a source for a job; returns what happened ("sent", "stopped", "duplicate",
    "finished"). Raises SourceBusy when another job holds the source (the caller defers)."""
    lock = source_lock(ctx.catalog.engine, ctx.settings.data_dir, f"sync:{source}")
    if not lock.acquire():
        raise SourceBusy(source, "another process")
    try:
        return _crawl_locked(ctx, dispatch, source, job_id, full)
    finally:
        lock.release()


def _crawl_locked(ctx: WorkerContext, dispatch: Dispatch, source: str, job_id: str, full: bool) -> str:
    catalog, state = ctx.catalog, ctx.state
    mine = state.crawl(job_id)
    if mine is not None and mine.state != "crawling":
        return "duplicate"  # this job's crawl is done (a redelivered or duplicated message)
    if catalog.job_state(job_id) in ("cancelling", "cancelled"):  # cancelled while it waited for the source
        catalog.start_job(job_id)  # records `cancelled`
        return "finished"
    _wait_for_other_jobs(ctx, source, job_id)
    row = catalog.get_source(source)
    if row is None:
        catalog.update_job(job_id, state="failed", error=f"no source named {source!r}")
        return "finished"
    if mine is None:  # a first attempt: the job shows its counts (none yet) from the moment it runs
        catalog.update_job(job_id, counts=job_counts(ctx, job_id) | {"phase": "crawling"})
    if catalog.start_job(job_id) == "cancelled":
        return "finished"
    attempt = state.begin_crawl(job_id, source, full)  # `mine`: what an earlier attempt (killed) recorded
    catalog.set_source_state(source, "syncing")
    log.info("job %s: crawling source %s (attempt %d)", job_id, source, attempt)
    sink = QueueSink(ctx, dispatch, job_id, source, rewrite=full)
    loop = SyncLoop(catalog, sink, ctx.chunking.limits, batch_docs=ctx.settings.queue_batch_docs, secrets=ctx.secrets)
    crawl = CrawlCounts(loop, sink)
    try:
        outcome = _run_connector(ctx, row, job_id, full, crawl, mine)
    except Exception as exc:
        log.exception("job %s: crawl of %s failed", job_id, source)
        state.save_crawl(job_id, state="failed", counts=crawl.record(), failed_items=loop.failed)
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}",
                           counts=job_counts(ctx, job_id) | {"phase": "failed"})
        catalog.set_source_state(source, "error", error=f"{type(exc).__name__}: {exc}")
        return "finished"
    finish_if_done(ctx, job_id)
    return outcome


def _wait_for_other_jobs(ctx: WorkerContext, source: str, job_id: str) -> None:
    """Raise SourceBusy while another job of the source is unfinished; give up on one that went silent."""
    stale_after = dt.timedelta(seconds=3 * ctx.settings.celery_visibility_timeout)
    for other in ctx.state.active_crawls(source, excluding=job_id):
        if ctx.catalog.job_state(other.job_id) not in ("queued", "running", "cancelling"):
            ctx.state.abandon(other.job_id)
            continue
        last = ctx.state.last_activity(other.job_id)
        if last is not None and dt.datetime.now(dt.UTC) - last > stale_after:
            log.warning("job %s of %s made no progress since %s: marking it failed", other.job_id, source, last)
            ctx.state.abandon(other.job_id)
            ctx.catalog.update_job(other.job_id, state="failed", error="abandoned: no progress in the queues")
            continue
        ctx.catalog.update_job(job_id, counts={"phase": "waiting", "waiting_for": other.job_id})
        raise SourceBusy(source, f"job {other.job_id}")


class CrawlCancelled(Exception):
    """The job was asked to stop; the crawl stops after the batch it just sent."""


class CrawlCounts:
    """A crawl's read counts across its attempts. A crawl killed part-way is run again by its redelivered
    task (attempt 2, ...), which must not count twice what it does not read again, nor forget it:

    - from a partial checkpoint this job stored (ticket and page sources: stored once its batch and those
      before were applied), the new attempt starts after the items read up to it: their counts, kept with
      the checkpoint, are carried;
    - otherwise it lists the source again and skips documents whose indexed version is current
      (connectors.base): the documents this job wrote that the new attempt's `known` versions hold are
      carried as seen. Skips and failures are met, and counted, again.

    Stored in the crawl record: the cumulative counts and `base` (carried); each partial checkpoint is kept
    with the cumulative read counts up to it (QueueSink.keep)."""

    READ = ("files_seen", "files_skipped", "files_failed", "files_quarantined", "secret_files")

    def __init__(self, loop: SyncLoop, sink: QueueSink) -> None:
        self.loop = loop
        self.sink = sink
        self.base: dict[str, int] = {}

    def restart(self, ctx: WorkerContext, earlier: CrawlRecord | None, source: str, full: bool,
                known: Mapping[str, str]) -> None:
        """Carry what the attempts before this one (if any) read and this one will not read again."""
        if earlier is None or full:  # a first attempt, or a full crawl (it reads everything again)
            return
        latest = ctx.state.crawl(earlier.job_id)  # batches applied since `earlier` was read may have moved it
        resume = (latest.stored or {}).get("resume") if latest is not None else None
        if isinstance(resume, dict):
            self.base = {k: int(v) for k, v in resume.items()}
        else:
            written = ctx.state.written_since(source, earlier.started_at)
            self.base = {"files_seen": sum(1 for doc_id, v in written.items() if known.get(doc_id) == v)}
        self.sink.carried = self.base

    def cumulative(self) -> dict[str, int]:
        own = self.loop.counts.as_dict()
        return {k: int(own.get(k, 0)) + self.base.get(k, 0) for k in self.READ}

    def record(self) -> dict[str, Any]:
        return self.cumulative() | {"base": self.base}


def _run_connector(ctx: WorkerContext, row: Any, job_id: str, full: bool, crawl: CrawlCounts,
                   earlier: CrawlRecord | None) -> str:
    connector = build_connector(row, ctx.settings)
    rewind_for_job(ctx.catalog, row, connector, job_id)  # `reindex --since`: re-read what changed in a window
    loop = crawl.loop
    try:
        known = {} if full else known_versions(ctx.catalog, row.name, connector)
        crawl.restart(ctx, earlier, row.name, full, known)
        observe = _crawl_observer(ctx, job_id, crawl)
        observe("crawling", loop.counts)  # the job shows its counts (and what a restart carried) at once
        loop.run(connector, full, observe=observe, known=known)
    except CrawlCancelled:
        ctx.state.save_crawl(job_id, state="stopped")
        log.warning("job %s: cancelled during the crawl of %s", job_id, row.name)
        return "stopped"
    ctx.state.save_crawl(job_id, state="sent", counts=crawl.record(), failed_items=loop.failed,
                         checkpoint=connector.next_checkpoint())
    _report(ctx, job_id)  # everything is read: the job shows it (applying, with an ETA once a batch is)
    return "sent"


def _crawl_observer(ctx: WorkerContext, job_id: str, crawl: CrawlCounts) -> Observer:
    """After every batch sent: record the crawl's counts, show them on the job, and stop if the job is
    being cancelled."""
    def observe(phase: str, counts: SyncCounts) -> None:
        ctx.state.save_crawl(job_id, counts=crawl.record(), failed_items=crawl.loop.failed)
        if ctx.catalog.job_state(job_id) == "cancelling":
            raise CrawlCancelled(job_id)
        _report(ctx, job_id)
    return observe


class QueueSink:
    """Batches sent to the `embed` queue, screened first: secret files stay out (skipped, and removed
    from the index if they were indexed before) and credentials are redacted, so no secret ever
    reaches the broker's messages. Deletions go to `index` as one batch; the index queue counts them.
    Each batch has its place in the crawl's order (`seq`) and carries the partial checkpoint its end reached."""

    phase = "sent"

    def __init__(self, ctx: WorkerContext, dispatch: Dispatch, job_id: str, source: str, rewrite: bool) -> None:
        self.ctx = ctx
        self.dispatch = dispatch
        self.job_id = job_id
        self.source = source
        self.rewrite = rewrite
        self.secret_deletions: list[str] = []
        self.carried: dict[str, int] = {}  # read counts of the job's earlier attempts (CrawlCounts.restart)
        self.seq = 0  # the place of the last batch sent (after those of earlier attempts)
        self.last: str | None = None  # the batch the current `submit` sent

    def reading(self, size: int) -> None:
        pass  # nothing to warm up: the embed workers are already running

    def submit(self, docs: list[Document], landed: Landed) -> None:
        screened = self.ctx.secrets.screen(docs)
        if screened.skipped:
            self.ctx.catalog.record_skipped(*screened.skipped)
            self.secret_deletions += list(self.ctx.catalog.sources_of(screened.skipped_ids))  # indexed before
        self.last = self._send(screened.documents)
        landed(BatchCounts(extra={"secret_files": len(screened.skipped)}))

    def keep(self, source: str, checkpoint: Checkpoint, resume: dict[str, int]) -> None:
        """Keep the checkpoint with the batch just sent; it is stored once that batch and every one before
        it is applied (maybe already: an index node can apply a batch before the crawl registered it).
        A batch left empty by the screen sends nothing: its checkpoint is not kept, the next one is."""
        if self.last is None:
            return
        keys = resume.keys() | self.carried.keys()
        cumulative = {k: resume.get(k, 0) + self.carried.get(k, 0) for k in keys}
        self.ctx.state.keep_checkpoint(self.job_id, self.last, checkpoint, cumulative)
        self.ctx.state.advance_checkpoint(self.job_id)

    def finish(self, deletions: list[str]) -> BatchCounts:
        doc_ids = sorted({*deletions, *self.secret_deletions})
        if doc_ids:
            ready = ReadyBatch(job_id=self.job_id, batch_id=batch_id(self.job_id, "deletions", doc_ids),
                               source=self.source, kind="deletions", deletions=doc_ids)
            self.dispatch.index(ready.to_json())
            self.ctx.state.register_batch(self.job_id, ready.batch_id, self.source, "deletions", len(doc_ids))
        return BatchCounts()

    def close(self) -> None:
        pass  # every batch was sent when it was submitted

    def _send(self, docs: list[Document]) -> str | None:
        """Send first, register after: a crash in between leaves no registered batch that never comes."""
        if not docs:
            return None
        batch = batch_id(self.job_id, "documents", [f"{d.id}@{d.version}" for d in docs])
        self.dispatch.embed(self.job_id, batch, self.source, [document_to_json(d) for d in docs], self.rewrite)
        self.seq = self.seq + 1 if self.seq else self.ctx.state.next_seq(self.job_id)
        self.ctx.state.register_batch(self.job_id, batch, self.source, "documents", len(docs), seq=self.seq)
        return batch


# -- the embed side --------------------------------------------------------------------------------

def embed_and_forward(ctx: WorkerContext, dispatch: Dispatch, job_id: str, batch: str, source: str,
                      documents: list[dict], rewrite: bool, tries: int, worker: str = "") -> dict:
    """Embed a batch and send its ready batch to `index`; documents that failed this time (below the
    quarantine limit) go back to `embed` later as a batch of their own, registered before the ready
    batch is sent so the job cannot finish without them."""
    if ctx.state.batch_state(job_id, batch) == "dropped":  # its job was cancelled meanwhile
        return {"batch": batch, "documents": 0, "quarantined": 0, "retry": 0, "chunks_embedded": 0}
    finished = job_finished(ctx, job_id)
    if finished is not None:  # nothing to embed for: the index node would drop it (apply_ready_batch)
        _drop_late(ctx, job_id, batch, source, "documents", len(documents), finished)
        return {"batch": batch, "documents": 0, "quarantined": 0, "retry": 0, "chunks_embedded": 0}
    ctx.state.batch_started(job_id, batch, worker)
    outcome = embed_batch(ctx, job_id, batch, source, [document_from_json(d) for d in documents], rewrite)
    if outcome.retry:
        retry_id = batch_id(job_id, f"retry-{tries + 1}", [f"{d.id}@{d.version}" for d in outcome.retry])
        dispatch.embed(job_id, retry_id, source, [document_to_json(d) for d in outcome.retry], rewrite,
                       tries=tries + 1, countdown=float(min(2 ** tries, 30)))
        ctx.state.register_batch(job_id, retry_id, source, "documents", len(outcome.retry))
    dispatch.index(outcome.ready.to_json())
    return {"batch": batch, "documents": len(outcome.ready.documents), "quarantined": outcome.ready.quarantined,
            "retry": len(outcome.retry), "chunks_embedded": outcome.ready.chunks_embedded}


# -- the index side --------------------------------------------------------------------------------

def apply_ready_batch(ctx: WorkerContext, pipeline: Pipeline, ready: ReadyBatch) -> bool:
    """Write a ready batch (idempotent), record it once, and finish its job if it was the last.

    A batch of a source removed since it was sent is dropped: nothing of a removed source comes back."""
    if ctx.catalog.get_source(ready.source) is None:
        log.warning("batch %s of job %s dropped: source %s was removed", ready.batch_id, ready.job_id, ready.source)
        return False
    if ctx.state.batch_state(ready.job_id, ready.batch_id) == "dropped":
        log.info("batch %s of job %s not applied: its job was cancelled", ready.batch_id, ready.job_id)
        return False
    finished = job_finished(ctx, ready.job_id)
    if finished is None and ready.documents and ready.model != pipeline.embedder.model_name:
        ready = _reembedded(pipeline, ready)
    # Checked again with the writes as one step: a newer job of the source starts only once this one is
    # finished or given up on, and its batches are applied through this lock (and the index-writer lock
    # between processes), so none of them can land between the check and the writes below.
    with pipeline.write_lock:
        finished = finished or job_finished(ctx, ready.job_id)
        if finished is None:
            counts = pipeline.apply_ready(ready.documents, rewrite=ready.rewrite)
            if ready.deletions:
                counts.add(pipeline.delete(ready.deletions))
    if finished is not None:
        _drop_late(ctx, ready.job_id, ready.batch_id, ready.source, ready.kind,
                   len(ready.documents) + len(ready.deletions), finished)
        return False
    for item in ready.documents:
        ctx.catalog.clear_failure(item.doc.source, item.doc.path)
    recorded = {"docs": len(ready.documents) + len(ready.deletions), "files_changed": counts.docs_changed,
                "files_deleted": counts.docs_deleted, "files_quarantined": ready.quarantined,
                "chunks_written": counts.chunks_written, "chunks_deleted": counts.chunks_deleted,
                "chunks_embedded": ready.chunks_embedded}
    first = ctx.state.mark_applied(ready.job_id, ready.batch_id, ready.source, ready.kind, recorded)
    ctx.state.advance_checkpoint(ready.job_id)
    if first:
        _report(ctx, ready.job_id)
    finish_if_done(ctx, ready.job_id)
    return first


def job_finished(ctx: WorkerContext, job_id: str) -> str | None:
    """Why the job's batches may no longer be applied (None: it is live, i.e. queued, running or being
    cancelled, and its crawl still crawling, sending or stopping). A job that finished in any way, was
    given up on (abandoned: a newer job of its source runs) or failed may have been followed by a newer
    job that indexed newer versions of its documents: its late batches would write older ones over them."""
    state = ctx.catalog.job_state(job_id)
    if state is None:
        return "its job no longer exists"
    if state not in ACTIVE_JOB_STATES:
        return f"its job is {state}"
    crawl = ctx.state.crawl(job_id)
    if crawl is not None and crawl.state not in ADVANCING:
        return f"its job's crawl is {crawl.state}"
    return None


def _drop_late(ctx: WorkerContext, job_id: str, batch: str, source: str, kind: str, docs: int, why: str) -> None:
    """Acknowledge a batch of a finished job without applying it, and record it: on the batch's row (state
    `dropped`), in the job's counts (`late_batches_dropped`) and in the log. Nothing it held is lost: the
    next sync compares versions with the index, and a ticket source resumes from the checkpoint of the
    batches applied only (QueueState.advance_checkpoint), so it indexes those documents again."""
    if not ctx.state.drop_late(job_id, batch, source, kind, docs, why):
        log.info("batch %s of job %s not applied (again): %s", batch, job_id, why)
        return
    log.warning("batch %s of job %s (%d documents of source %s) dropped, not applied: %s; the next sync "
                "indexes them", batch, job_id, docs, source, why)
    job = ctx.catalog.get_job(job_id)
    if job is not None:
        counts = dict(job.counts or {}) | {"late_batches_dropped": ctx.state.late_drops(job_id)}
        ctx.catalog.update_job(job_id, counts=counts)


def _reembedded(pipeline: Pipeline, ready: ReadyBatch) -> ReadyBatch:
    """Vectors from another model than the index serves (a worker started before `cairn model
    switch`, or during a generation swap): embed the chunks again here rather than mix models."""
    log.warning("batch %s was embedded with %s, the index serves %s: embedding it again",
                ready.batch_id, ready.model, pipeline.embedder.model_name)
    chunks = [c for item in ready.documents for c in item.chunks]
    if not chunks:  # documents without chunks carry no vectors to redo
        ready.model = pipeline.embedder.model_name
        return ready
    vectors, embedded = pipeline.embedder.embed_chunks(chunks)
    out, at = [], 0
    for item in ready.documents:
        out.append(ReadyDocument(item.doc, item.chunks, list(vectors[at:at + len(item.chunks)])))
        at += len(item.chunks)
    ready.documents, ready.model = out, pipeline.embedder.model_name
    ready.chunks_embedded += embedded
    return ready


def job_counts(ctx: WorkerContext, job_id: str) -> dict[str, Any]:
    """The job's counts across processes: the crawl's own, plus every applied batch counted once, and
    the rates and ETA an admin sees (workers.jobs.JobMeter's for an embedded job)."""
    crawl = ctx.state.crawl(job_id)
    progress = ctx.state.progress(job_id)
    own = crawl.counts if crawl else {}
    applied = progress.counts
    now = dt.datetime.now(dt.UTC)
    seconds = (now - crawl.started_at).total_seconds() if crawl else 0.0
    counts = {"files_seen": own.get("files_seen", 0), "files_changed": applied["files_changed"],
              "files_deleted": applied["files_deleted"],
              "files_skipped": own.get("files_skipped", 0) + applied["files_quarantined"],
              "secret_files": own.get("secret_files", 0),
              "files_failed": own.get("files_failed", 0),
              "files_quarantined": own.get("files_quarantined", 0) + applied["files_quarantined"],
              "chunks_written": applied["chunks_written"], "chunks_deleted": applied["chunks_deleted"],
              "chunks_embedded": applied["chunks_embedded"], "batches_sent": progress.sent,
              "batches_applied": progress.applied, "seconds": round(seconds, 3)}
    return counts | _rates(counts, progress, seconds, now, crawling=crawl is None or crawl.state == "crawling")


def _rates(counts: dict[str, Any], progress: Progress, seconds: float, now: dt.datetime,
           crawling: bool) -> dict[str, Any]:
    """Files read per second over the crawl; chunks embedded per second since the first batch was sent
    (the embed workers start then); once the crawl sent everything, the ETA: documents still in the
    queues at the rate batches were applied so far (None before one was)."""
    out: dict[str, Any] = {"items_per_second": round(counts["files_seen"] / seconds, 2) if seconds > 0 else None,
                           "chunks_per_second": None, "eta_seconds": None}
    embedding = (now - progress.first_sent).total_seconds() if progress.first_sent else 0.0
    if embedding > 0.5:
        out["chunks_per_second"] = round(counts["chunks_embedded"] / embedding, 2)
        if not crawling and progress.docs_applied:
            out["eta_seconds"] = round(progress.docs_pending * embedding / progress.docs_applied, 1)
    return out


def _report(ctx: WorkerContext, job_id: str) -> None:
    progress = ctx.state.progress(job_id)
    crawl = ctx.state.crawl(job_id)
    phase = "crawling" if crawl is None or crawl.state == "crawling" else "applying"
    ctx.catalog.update_job(job_id, counts=job_counts(ctx, job_id) | {"phase": phase},
                           done=progress.counts["docs"], total=progress.docs_sent)
    ctx.state.touch(job_id)


def finish_if_done(ctx: WorkerContext, job_id: str) -> bool:
    """Finish the job if its crawl is done and every batch it sent is applied (exactly once)."""
    if not ctx.state.finish_crawl(job_id):
        return False
    crawl = ctx.state.crawl(job_id)
    assert crawl is not None
    catalog, source = ctx.catalog, crawl.source
    counts = job_counts(ctx, job_id)
    progress = ctx.state.progress(job_id)
    if crawl.state.startswith("stopped"):
        catalog.update_job(job_id, state="cancelled", counts=counts | {"phase": "stopped"},
                           done=progress.counts["docs"], total=progress.docs_sent)
        catalog.release_source(source)
        return True
    if crawl.checkpoint is not None:
        catalog.set_checkpoint(source, crawl.checkpoint)
    catalog.clear_skipped(source, before=crawl.started_at)
    keep = set(crawl.failed_items) | {path for _v, path, _e in ctx.state.quarantined(source).values()}
    for failure in catalog.list_failures(source):
        if failure.item not in keep:
            catalog.clear_failure(source, failure.item)
    outcome = sync_outcome(catalog, source, crawl.started_at, counts)
    counts |= {"eta_seconds": 0}
    catalog.update_job(job_id, state=outcome.state, counts=counts | outcome.counts | {"phase": "done"},
                       error=outcome.error or None, done=progress.counts["docs"], total=progress.docs_sent)
    catalog.set_source_state(source, outcome.source_state, error=outcome.error, listed_all=outcome.listed_all)
    log.log(logging.INFO if outcome.state == "succeeded" else logging.WARNING, "job %s for source %s %s: %s",
            job_id, source, outcome.state, outcome.error or counts)
    return True

