"""Runs a source's sync (or its permissions pass) as a recorded job: the one code path behind CLI, API
and Celery tasks.

A job records its state and counts in the catalog as it goes: the counts after every batch written
(so a job resumed after a crash or a shutdown adds to what it had done, `carried`), the throughput and
ETA an admin sees at most once a second. After every batch it checks whether it should stop (a cancel
request in the catalog, or the caller's `should_stop`); it then stops between batches, so the
index never holds half a batch, and records why it stopped."""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from connectors.base import SyncItem
from connectors.registry import build_connector
from connectors.webhooks import WebhookTargets
from indexer.catalog import Catalog
from indexer.locks import source_lock
from indexer.models import Deletion, Document
from indexer.pipeline import PassCounts, Pipeline, run_permission_pass
from indexer.pipeline.sync import SyncCounts, SyncRunner
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import StoreError
from workers.outcome import SyncFailed, sync_outcome

log = logging.getLogger(__name__)

Observer = Callable[[str, SyncCounts], None]
StopCheck = Callable[[], "str | None"]  # returns the state to stop in ("cancelled", "interrupted") or None
STOP_STATES = ("cancelled", "interrupted")
WRITE_EVERY = 1.0  # seconds between the derived figures (rates, pending chunks: queries): not a progress bar


class JobStopped(Exception):
    """A job stopped between batches before finishing; `state` is "cancelled" or "interrupted"."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} {state}")
        self.job_id = job_id
        self.state = state


def new_job(services: IndexServices, source: str, kind: str = "index", params: dict[str, Any] | None = None) -> str:
    job_id = str(uuid.uuid4())
    services.catalog.create_job(job_id, source, kind, params=params)
    return job_id


class JobMeter:
    """Turns a sync's running counts into what the admin sees: rates, pending chunks and the ETA.

    Files per second over the whole job; chunks per second over the dense phase (embedding), measured
    both as model embeddings and as chunks cleared from the pending queue (cache hits are fast);
    ETA = pending chunks / the clearing rate."""

    def __init__(self, catalog: Catalog, source: str, started_at: dt.datetime) -> None:
        self.catalog = catalog
        self.source = source
        self.started_at = started_at
        self.started = time.monotonic()
        self.dense_started: float | None = None
        self.pending_at_dense: int | None = None
        self.embedded_at_dense = 0

    def mark(self, phase: str, counts: SyncCounts) -> None:
        """Called on every batch: notes when the dense phase starts and how much it has to embed."""
        if phase in ("embedding", "dense") and self.dense_started is None:
            self.dense_started = time.monotonic()
            self.pending_at_dense = self.catalog.pending_chunk_count(self.source)
            self.embedded_at_dense = counts.chunks_embedded

    def snapshot(self, phase: str, counts: SyncCounts) -> dict[str, Any]:
        now = time.monotonic()
        pending = self.catalog.pending_chunk_count(self.source)
        elapsed = max(now - self.started, 1e-6)
        out: dict[str, Any] = counts.as_dict() | {
            "phase": phase, "pending_chunks": pending, "seconds": round(elapsed, 3),
            "items_per_second": round(counts.files_seen / elapsed, 2), "chunks_per_second": None,
            "eta_seconds": None, "skipped_by_reason": self.catalog.skip_reasons_since(self.source, self.started_at)}
        if self.dense_started is not None and now - self.dense_started > 0.5:
            dense = now - self.dense_started
            out["chunks_per_second"] = round((counts.chunks_embedded - self.embedded_at_dense) / dense, 2)
            cleared = max((self.pending_at_dense or 0) - pending, 0)
            if cleared:
                out["eta_seconds"] = round(pending / (cleared / dense), 1)
        return out

    def progress(self, snapshot: dict[str, Any]) -> tuple[int, int]:
        """(done, total) for the job row: chunks cleared from the pending queue in the dense phase."""
        if self.pending_at_dense is None:
            return 0, 0
        pending = snapshot["pending_chunks"]
        return max(self.pending_at_dense - pending, 0), max(self.pending_at_dense, pending)


def _stop_check(catalog: Catalog, job_id: str, should_stop: StopCheck | None) -> StopCheck:
    def check() -> str | None:
        state = should_stop() if should_stop else None
        if state is not None:
            if state not in STOP_STATES:
                raise ValueError(f"should_stop returned {state!r}; expected one of {STOP_STATES}")
            return state
        return "cancelled" if catalog.job_state(job_id) == "cancelling" else None
    return check


def run_sync_job(services: IndexServices, source: str, job_id: str | None = None, full: bool = False,
                 observe: Observer | None = None, should_stop: StopCheck | None = None,
                 since: dt.timedelta | None = None) -> SyncCounts:
    """Sync one source and record the job's state and counts.

    Failure: the error is recorded on the job and the source, then re-raised. A sync that ran to its end
    is judged by the failures it recorded (workers.outcome): `succeeded`, `partial` (the source
    `degraded`, its last success not moved) or `failed` (nothing could be read: SyncFailed is raised). A stop (cancel request
    or `should_stop`): the job is recorded as cancelled/interrupted, the source goes back to idle and
    JobStopped is raised. `since`: first rewind the source so it re-reads what changed in that window
    (workers.window)."""
    catalog = services.catalog
    params = {"full": full} | ({"since_seconds": since.total_seconds()} if since else {})
    job_id = job_id or new_job(services, source, "reindex" if full or since else "index", params)
    row = catalog.get_source(source)
    if row is None:
        catalog.update_job(job_id, state="failed", error=f"no source named {source!r}")
        raise LookupError(f"no source named {source!r}")
    if catalog.start_job(job_id) == "cancelled":
        raise JobStopped(job_id, "cancelled")
    catalog.set_source_state(source, "syncing")
    meter = JobMeter(catalog, source, dt.datetime.now(dt.UTC))
    stop = _stop_check(catalog, job_id, should_stop)
    base = _carried(catalog, job_id)  # what an earlier run of this job (killed, or stopped) left done
    last_write = [0.0]
    extra: dict[str, Any] = {}
    derived: dict[str, Any] = {}

    def record(phase: str, counts: SyncCounts) -> dict[str, Any]:
        return meter.snapshot(phase, counts) | extra | _cumulative(counts, base)

    def on_progress(phase: str, counts: SyncCounts) -> None:
        meter.mark(phase, counts)
        now = time.monotonic()
        if now - last_write[0] > WRITE_EVERY:
            derived.update(meter.snapshot(phase, counts) | extra)
            last_write[0] = now
        snapshot = derived | {"phase": phase} | _cumulative(counts, base)
        done, total = meter.progress(snapshot)
        catalog.update_job(job_id, counts=snapshot, done=done, total=total)
        if observe:
            observe(phase, counts)
        state = stop()
        if state is not None:
            raise JobStopped(job_id, state)

    counts = SyncCounts()
    try:
        connector = build_connector(row, services.settings)
        if since is not None:
            from workers.window import rewind

            extra["rewound_documents"] = rewind(catalog, row, connector, since)
        counts = SyncRunner(services.pipeline).run(connector, full=full, observe=_keeping(counts, on_progress))
    except JobStopped as stopped:
        log.warning("job %s for source %s %s after a batch", job_id, source, stopped.state)
        catalog.release_source(source)  # before the job shows finished: whoever sees it done sees the source idle
        catalog.update_job(job_id, state=stopped.state, counts=record("stopped", counts))
        raise
    except Exception as exc:
        log.exception("job %s for source %s failed", job_id, source)
        catalog.set_source_state(source, "error", error=f"{type(exc).__name__}: {exc}")
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}",
                           counts=record("failed", counts))
        raise
    final = record("done", counts) | {"seconds": counts.seconds, "eta_seconds": 0}
    outcome = sync_outcome(catalog, source, meter.started_at, final)
    final |= outcome.counts
    catalog.set_source_state(source, outcome.source_state, error=outcome.error, listed_all=outcome.listed_all)
    catalog.update_job(job_id, state=outcome.state, counts=final, error=outcome.error or None,
                       done=meter.progress(final)[1], total=meter.progress(final)[1])
    if outcome.state == "failed":
        log.warning("job %s for source %s failed: %s", job_id, source, outcome.error)
        raise SyncFailed(f"source {source!r}: {outcome.error}")
    if outcome.state == "partial":
        log.warning("job %s for source %s partial: %s", job_id, source, outcome.error)
    build_vector_index(services)
    return counts


def build_vector_index(services: IndexServices) -> float:
    """Build the ANN index over the vectors a sync added; returns the seconds it took.

    Qdrant Edge indexes nothing during upserts and only segments past its indexing threshold
    (~10 MB of vectors) here, so small syncs cost nothing; otherwise it takes ~0.25-0.5 ms per new
    chunk on 2 cores, during which the binding holds its process's GIL: with the shard in-process the
    API answers after it; with the vector process (`cairn serve`) only vector searches wait, for at most
    CAIRN_VECTOR_SEARCH_TIMEOUT_MS, then answer from BM25. Once per sync keeps that a single bounded
    pause instead of one per batch. A Qdrant server needs nothing."""
    vectors = services.pipeline.vectors
    started = time.perf_counter()
    try:
        with services.pipeline.write_lock:  # optimize rewrites segment files: a backup must not copy them midway
            vectors.optimize()
            vectors.flush()  # Edge truncates its WAL only after a flush; without one it grows for ever
    except StoreError:  # the sync itself succeeded; the next one (or a restart) builds it
        log.exception("building the vector index after a sync failed")
    return time.perf_counter() - started


def _carried(catalog: Catalog, job_id: str) -> dict[str, int]:
    """The counts an earlier run of this job recorded as done for good (SyncCounts.carried), or none."""
    job = catalog.get_job(job_id)
    carried = (job.counts or {}).get("carried") if job is not None else None
    return {k: v for k, v in carried.items() if isinstance(v, int)} if isinstance(carried, dict) else {}


def _cumulative(counts: SyncCounts, base: dict[str, int]) -> dict[str, Any]:
    """This run's counts plus what earlier runs of the job did (`base`), and what is now carried."""
    own = {k: v + base.get(k, 0) for k, v in counts.as_dict().items() if k != "seconds"}
    carried = {k: counts.carried.get(k, 0) + base.get(k, 0) for k in counts.carried.keys() | base.keys()}
    return own | {"carried": carried}


def _keeping(latest: SyncCounts, observe: Observer) -> Observer:
    """An observer that also copies the sync's counts into `latest` (recorded if the job stops early)."""
    def observer(phase: str, counts: SyncCounts) -> None:
        latest.__dict__.update(counts.__dict__)
        observe(phase, counts)
    return observer


# -- permissions passes ---------------------------------------------------------------------------

PERMISSIONS = "permissions"  # the job kind of a permissions pass


class NoPermissionsPass(ValueError):
    """The source's documents carry the source's own access (git): there is nothing to pass."""


def run_permission_job(pipeline: Pipeline, settings: Settings, source: str, job_id: str | None = None) -> PassCounts:
    """One permissions pass of a source as a job of kind `permissions`: `succeeded`, `partial` (some
    items could not be read; the error says how many) or `failed` (the connector raised; re-raised).

    Never beside a content sync of the source: when one is running, or another process holds the
    source's lock, the job is `cancelled` with the reason (the next scheduled pass tries again)."""
    catalog = pipeline.catalog
    job_id = job_id or catalog.create_job(None, source, PERMISSIONS)
    row = catalog.get_source(source)
    if row is None:
        catalog.update_job(job_id, state="failed", error=f"no source named {source!r}")
        raise LookupError(f"no source named {source!r}")
    lock = source_lock(catalog.engine, settings.data_dir, f"sync:{source}")
    if not lock.acquire():
        return _skipped(catalog, job_id, "another process is syncing the source")
    try:
        if _syncing(catalog, source):
            return _skipped(catalog, job_id, "a sync of the source is running (it reads access too)")
        if catalog.start_job(job_id) == "cancelled":
            return PassCounts()
        return _pass(pipeline, settings, row, job_id)
    finally:
        lock.release()


def _syncing(catalog: Catalog, source: str) -> bool:
    running = catalog.list_jobs(source=source, state=("running", "cancelling"), limit=100)
    return any(j.kind != PERMISSIONS and j.kind != "reconcile" for j in running)


def _skipped(catalog: Catalog, job_id: str, why: str) -> PassCounts:
    log.info("permissions job %s skipped: %s", job_id, why)
    catalog.update_job(job_id, state="cancelled", error=f"skipped: {why}; the next pass runs it")
    return PassCounts()


def _pass(pipeline: Pipeline, settings: Settings, row: Any, job_id: str) -> PassCounts:
    catalog = pipeline.catalog
    started = time.monotonic()
    last_write = [0.0]

    def progress(counts: PassCounts) -> None:
        if time.monotonic() - last_write[0] > WRITE_EVERY:
            catalog.update_job(job_id, counts=counts.as_dict() | {"phase": "passing"})
            last_write[0] = time.monotonic()

    counts = PassCounts()
    try:
        connector = build_connector(row, settings)
        if not connector.access_from_source:
            raise NoPermissionsPass(f"source {row.name!r} takes its access from its settings, not from the "
                                    "source: it has no permissions pass")
        counts = run_permission_pass(pipeline, connector, progress=progress)
    except Exception as exc:
        log.exception("permissions pass of %s (job %s) failed", row.name, job_id)
        error = f"{type(exc).__name__}: {exc}"
        catalog.update_job(job_id, state="failed", error=error, counts=counts.as_dict() | {"phase": "failed"})
        if not isinstance(exc, NoPermissionsPass):
            catalog.record_permission_pass(row.name, error=error)
        raise
    final = counts.as_dict() | {"phase": "done", "seconds": round(time.monotonic() - started, 3)}
    if counts.failed:
        error = f"{counts.failed} item(s) could not be read: their documents keep their access (see failures)"
        catalog.update_job(job_id, state="partial", error=error, counts=final, done=counts.checked, total=counts.checked)
        catalog.record_permission_pass(row.name, error=error)
    else:
        catalog.update_job(job_id, state="succeeded", counts=final, done=counts.checked, total=counts.checked)
        catalog.record_permission_pass(row.name)
    if counts.changed or counts.deleted:
        with pipeline.write_lock:
            pipeline.vectors.flush()
    return counts


# -- webhooks --------------------------------------------------------------------------------------

WEBHOOK_JOB = "webhook"
RECENT_WEBHOOK_JOBS = 500  # how far back a repeated delivery is recognised in the catalog


def delivery_seen(catalog: Catalog, source: str, delivery: str) -> str | None:
    """The webhook job that already took this delivery (the product retried it), if a recent one did."""
    for job in catalog.list_jobs(source=source, kind=WEBHOOK_JOB, limit=RECENT_WEBHOOK_JOBS):
        taken = list((job.params or {}).get("deliveries") or []) + list((job.counts or {}).get("deliveries") or [])
        if delivery in taken:
            return job.id
    return None


def run_webhook_job(services: IndexServices, source: str, job_id: str, targets: WebhookTargets,
                    deliveries: Sequence[str] = (), request_sync: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Apply what webhooks named: the documents read again through the sync loop (no checkpoint moves),
    then an incremental sync, then a permissions pass, as asked. `request_sync` queues the sync as its
    own job (distributed: the `sync` queue crawls); without it the sync runs here.

    Idempotent: reading the same items again writes nothing new. Item or pass failures fail the job
    (what did apply stays applied; polling retries the rest)."""
    catalog = services.catalog
    counts: dict[str, Any] = targets.as_json() | {"deliveries": list(deliveries)}
    row = catalog.get_source(source)
    if row is None:
        catalog.update_job(job_id, state="failed", error=f"no source named {source!r}", counts=counts)
        raise LookupError(f"no source named {source!r}")
    if catalog.start_job(job_id) == "cancelled":
        return counts
    problems: list[str] = []
    try:
        connector = build_connector(row, services.settings)
        sync = targets.sync or bool(targets.doc_ids and not connector.refreshes_items)
        if targets.doc_ids and connector.refreshes_items:
            items = _with_gone_parts(catalog, source, targets.doc_ids, connector.refresh(targets.doc_ids))
            refreshed = SyncRunner(services.pipeline).run_items(connector, items)
            counts["refresh"] = refreshed.as_dict()
            if refreshed.files_failed:
                problems.append(f"{refreshed.files_failed} of the named items failed")
        if sync and request_sync is not None:
            counts["sync_job"] = request_sync(source)
        elif sync:
            synced = SyncRunner(services.pipeline).run(connector)
            counts["sync"] = synced.as_dict()
            if synced.files_failed:
                problems.append(f"the sync failed for {synced.files_failed} items or listings")
        if targets.access_pass:
            passed = run_permission_pass(services.pipeline, connector)
            counts["access_pass"] = passed.as_dict()
            failed = f"the permissions pass failed for {passed.failed} items" if passed.failed else ""
            catalog.record_permission_pass(source, error=failed)  # its freshness, as a scheduled pass records it
            if failed:
                problems.append(failed)
    except Exception as exc:
        log.exception("webhook job %s for source %s failed", job_id, source)
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}", counts=counts)
        raise
    # some items failed, the rest was applied: `partial`, as a sync or a pass with failed items is
    catalog.update_job(job_id, state="partial" if problems else "succeeded", error="; ".join(problems) or None,
                       counts=counts)
    build_vector_index(services)
    return counts


def _with_gone_parts(catalog: Catalog, source: str, targets: Iterable[str],
                     items: Iterable[SyncItem]) -> Iterator[SyncItem]:
    """The refresh's items, then a Deletion for each restricted part (`<id>#...`) of a read or deleted
    target that the refresh did not yield again (the comment was deleted, or is no longer restricted)."""
    read: set[str] = set()
    ended: set[str] = set()
    for item in items:
        if isinstance(item, Document):
            read.add(item.id)
        elif isinstance(item, Deletion):
            ended.add(item.doc_id)
        yield item
    parents = {t for t in targets if "#" not in t and (t in read or t in ended)}
    for doc_id in catalog.document_versions(source) if parents else ():
        parent, hashed, _ = doc_id.partition("#")
        if hashed and parent in parents and doc_id not in read:
            yield Deletion(doc_id)
