"""Periodic work on the `maintenance` queue: scheduling each source's sync at its own interval and its
permissions passes, pruning old jobs and audit rows, and reconciling the stores with the catalog.

Distributed: beat sends `cairn.schedule_due` and `cairn.permissions_due` every minute, `cairn.prune`
hourly and `cairn.reconcile` daily (BEAT_SCHEDULE in workers/celery_app.py); a due permissions pass is
sent to the `index` queue, applied by the process that owns the index writers. Embedded (no broker):
`EmbeddedScheduler`, a timer thread in the API process, does the same through the API's job runner,
so syncs and passes still run one at a time in the index owner."""
from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

from celery import Celery
from sqlalchemy import MetaData, Table, delete, inspect, literal, select

from connectors.registry import access_from_source
from indexer.catalog import Catalog
from indexer.catalog.schema import UTCDateTime, source_schedules
from indexer.pipeline.reconcile import Drift, reconcile_source
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.celery_app import BEAT_SCHEDULE, app, runtime, services_for
from workers.index_queue import MAINTENANCE_TASK
from workers.jobs import PERMISSIONS, run_permission_job

log = logging.getLogger(__name__)


BEAT_PERIOD = cast(float, BEAT_SCHEDULE["permissions-due"]["schedule"])  # how often beat looks for due passes

SYNC_KINDS = ("index", "reindex", "scheduled")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- per-source intervals ---------------------------------------------------------------------------

def set_interval(catalog: Catalog, source: str, seconds: int | None) -> None:
    """A source's own sync interval (0 = never scheduled); None = back to the default."""
    if seconds is not None and seconds < 0:
        raise ValueError("a sync interval cannot be negative")
    with catalog.engine.begin() as conn:
        conn.execute(delete(source_schedules).where(source_schedules.c.source == source))
        if seconds is not None:
            conn.execute(source_schedules.insert(), [{"source": source, "interval_seconds": int(seconds),
                                                      "updated_at": _now()}])


def intervals(catalog: Catalog) -> dict[str, int]:
    """source → its own interval in seconds (sources using the default are absent)."""
    with catalog.engine.connect() as conn:
        return dict(conn.execute(select(source_schedules.c.source, source_schedules.c.interval_seconds)).all())


def due_sources(catalog: Catalog, default_interval: int, now: dt.datetime | None = None) -> list[str]:
    """Sources whose interval has elapsed since their last sync started (or, never synced, since they
    were added) and that have no queued or running sync. Interval 0 means never."""
    now = now or _now()
    own = intervals(catalog)
    busy = catalog.active_job_sources(SYNC_KINDS)
    due = []
    for row in catalog.list_sources():
        interval = own.get(row.name, default_interval)
        if interval <= 0 or row.name in busy:
            continue
        if (row.last_sync_at or row.created_at) + dt.timedelta(seconds=interval) <= now:
            due.append(row.name)
    return due


# -- permissions passes -----------------------------------------------------------------------------

def due_permission_passes(catalog: Catalog, interval: int, now: dt.datetime | None = None,
                          ahead: float = 0.0) -> list[str]:
    """Sources whose documents take their access from the source, whose last permissions pass ended
    `interval` seconds ago or more (never: due), with no permissions job waiting or running and no sync
    running. Interval 0 means never. `ahead`: seconds until the caller looks again (its tick); a pass
    falling due before then runs now, so no pass starts later than `interval` after the previous one
    ended (looking every 60 s, passes would otherwise start up to a minute late: every 360 s, not 300)."""
    if interval <= 0:
        return []
    now = (now or _now()) + dt.timedelta(seconds=ahead)
    passes = catalog.permission_syncs()
    waiting = catalog.active_job_sources([PERMISSIONS])
    syncing = {j.source for j in catalog.list_jobs(state=("running", "cancelling"), limit=10_000)
               if j.kind in SYNC_KINDS}
    due = []
    for row in catalog.list_sources():
        if row.name in waiting or row.name in syncing or not access_from_source(row.kind):
            continue
        record = passes.get(row.name)
        if record is None or record.last_attempt_at + dt.timedelta(seconds=interval) <= now:
            due.append(row.name)
    return due


def interrupt_left_permission_jobs(catalog: Catalog) -> int:
    """Permissions jobs an earlier process left waiting or running are `interrupted` (the schedule runs
    a new pass; resuming an old one would only repeat it)."""
    left = catalog.list_jobs(state=("queued", "running", "cancelling"), kind=PERMISSIONS, limit=10_000)
    for job in left:
        catalog.update_job(job.id, state="interrupted", error="the process running it stopped")
    return len(left)


# -- pruning -------------------------------------------------------------------------------------

def prune(catalog: Catalog, job_retention: dt.timedelta, audit_retention: dt.timedelta | None) -> dict[str, int]:
    """Delete finished jobs older than the retention, and audit rows older than theirs (None: kept)."""
    now = _now()
    pruned = {"jobs": catalog.prune_jobs(now - job_retention), "audit": 0}
    if audit_retention is not None and inspect(catalog.engine).has_table("audit_log"):
        # Reflected, not imported: the audit table belongs to the api package, which workers never import.
        audit = Table("audit_log", MetaData(), autoload_with=catalog.engine)
        with catalog.engine.begin() as conn:
            pruned["audit"] = conn.execute(delete(audit).where(
                audit.c.at < literal(now - audit_retention, UTCDateTime))).rowcount
    log.info("pruned %s", pruned)
    return pruned


# -- reconciliation as a job ----------------------------------------------------------------------

def run_reconcile_job(services: IndexServices, source: str, repair: bool = True, job_id: str | None = None) -> Drift:
    """Reconcile one source, recorded as a job of kind `reconcile` whose counts are the drift found."""
    catalog = services.catalog
    job_id = job_id or catalog.create_job(None, source, "reconcile", params={"repair": repair})
    if catalog.start_job(job_id) == "cancelled":
        return Drift(source)
    try:
        drift = reconcile_source(services.pipeline, source, repair=repair)
    except Exception as exc:
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    catalog.update_job(job_id, state="succeeded", counts=drift.as_dict(), done=drift.chunks_checked,
                       total=drift.chunks_checked)
    return drift


def reconcile_all(services: IndexServices, names: list[str] | None = None, repair: bool = True) -> list[Drift]:
    """Each source (or the named ones) as its own job; sources being synced are left for next time."""
    busy = services.catalog.active_job_sources(SYNC_KINDS)
    out = []
    for name in names or [r.name for r in services.catalog.list_sources()]:
        if name in busy:
            log.info("reconcile: %s is being synced, skipped", name)
            continue
        out.append(run_reconcile_job(services, name, repair=repair))
    return out


# -- Celery tasks ------------------------------------------------------------------------------------

def _settings(celery: Celery) -> Settings:
    return runtime(celery).configured()


def _catalog(celery: Celery) -> Catalog:
    return runtime(celery).catalog()


@app.task(name="cairn.schedule_due", bind=True)
def schedule_due(self: Any) -> list[str]:
    """Enqueue a sync job for every due source; returns their names. Idempotent within a minute:
    a source with a queued or running sync is not due."""
    from workers.tasks import sync_source

    catalog = _catalog(self.app)
    enqueued = []
    for name in due_sources(catalog, _settings(self.app).sync_interval_seconds):
        job_id = catalog.create_job(None, name, "scheduled", params={"full": False})
        try:
            sync_source.apply_async(args=[name, job_id, False])
        except Exception:  # eager mode runs the sync here; one failing source never stops the others
            log.exception("scheduled sync of %s (job %s) failed", name, job_id)
        enqueued.append(name)
    if enqueued:
        log.info("scheduled syncs: %s", enqueued)
    return enqueued


@app.task(name="cairn.permissions_due", bind=True)
def permissions_due(self: Any) -> list[str]:
    """Send a permissions pass of every due source to the index owner (queue `index`); returns their
    names. A source whose pass is waiting or running is not due, so a repeat within a minute is a no-op."""
    from workers.tasks import permission_pass

    catalog = _catalog(self.app)
    sent = []
    interval = _settings(self.app).permission_sync_interval_seconds
    for name in due_permission_passes(catalog, interval, ahead=BEAT_PERIOD):
        job_id = catalog.create_job(None, name, PERMISSIONS, params={"scheduled": True})
        try:
            permission_pass.apply_async(args=[name, job_id])
        except Exception:  # eager mode runs the pass here; one failing source never stops the others
            log.exception("permissions pass of %s (job %s) failed", name, job_id)
        sent.append(name)
    if sent:
        log.info("permissions passes sent: %s", sent)
    return sent


# -- maintenance where the index is ----------------------------------------------------------------

ALL_SOURCES = "*"  # the `source` of a maintenance job that is not about one source (prune, optimize)


def run_prune_job(catalog: Catalog, settings: Settings, job_id: str | None = None) -> dict[str, int]:
    """Prune old jobs and audit rows, recorded as a `prune` job whose counts say how many went."""
    job_id = job_id or catalog.create_job(None, ALL_SOURCES, "prune")
    if catalog.start_job(job_id) == "cancelled":
        return {}
    audit_days = settings.audit_retention_days
    try:
        pruned = prune(catalog, dt.timedelta(days=settings.job_retention_days),
                       dt.timedelta(days=audit_days) if audit_days else None)
    except Exception as exc:
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    catalog.update_job(job_id, state="succeeded", counts=pruned)
    return pruned


def run_optimize_job(services: IndexServices, job_id: str | None = None) -> dict[str, float]:
    """Build the vector index over what syncs added (what a sync does at its end), as an `optimize` job."""
    from workers.jobs import build_vector_index

    catalog = services.catalog
    job_id = job_id or catalog.create_job(None, ALL_SOURCES, "optimize")
    if catalog.start_job(job_id) == "cancelled":
        return {}
    counts = {"seconds": round(build_vector_index(services), 3)}
    catalog.update_job(job_id, state="succeeded", counts=counts)
    return counts


def run_maintenance(services: IndexServices, action: str, job_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """One maintenance job sent to the index owner (`cairn.index_maintenance` on the `index` queue)."""
    if action == "reconcile":
        return run_reconcile_job(services, params["source"], bool(params.get("repair", True)), job_id).as_dict()
    if action == "prune":
        return run_prune_job(services.catalog, services.settings, job_id)
    if action == "optimize":
        return run_optimize_job(services, job_id)
    services.catalog.update_job(job_id, state="failed", error=f"unknown maintenance action {action!r}")
    raise ValueError(f"unknown maintenance action {action!r}")


def send_to_owner(celery: Celery, action: str, source: str, params: dict[str, Any]) -> str:
    """Record the job here and send it to the index owner, which runs it next to the index it owns."""
    job_id = _catalog(celery).create_job(None, source, action, params=params)
    celery.send_task(MAINTENANCE_TASK, args=[action, job_id, params], queue="index")
    log.info("%s job %s sent to the index owner", action, job_id)
    return job_id


@app.task(name="cairn.prune", bind=True)
def prune_task(self: Any) -> dict[str, Any]:
    """Prune old jobs and audit rows: on the index owner when it lives elsewhere, else here."""
    if runtime(self.app).owner_elsewhere():
        return {"job_id": send_to_owner(self.app, "prune", ALL_SOURCES, {})}
    return run_prune_job(_catalog(self.app), _settings(self.app))


@app.task(name="cairn.optimize", bind=True)
def optimize_task(self: Any) -> dict[str, Any]:
    """Build the vector index: on the index owner when it lives elsewhere, else here."""
    if runtime(self.app).owner_elsewhere():
        return {"job_id": send_to_owner(self.app, "optimize", ALL_SOURCES, {})}
    return run_optimize_job(services_for(self.app))


@app.task(name="cairn.reconcile", bind=True)
def reconcile_task(self: Any, source: str | None = None, repair: bool = True) -> list[dict]:
    """Reconcile the stores with the catalog, one `reconcile` job per source (sources being synced are left
    for next time): on the index owner when it lives elsewhere (Qdrant Edge: a worker never opens a copy),
    else here (a Qdrant server and a shared tantivy volume)."""
    if not runtime(self.app).owner_elsewhere():
        return [d.as_dict() for d in reconcile_all(services_for(self.app), [source] if source else None, repair=repair)]
    catalog = _catalog(self.app)
    busy = catalog.active_job_sources(SYNC_KINDS)
    names = [source] if source else [r.name for r in catalog.list_sources()]
    return [{"source": name, "job_id": send_to_owner(self.app, "reconcile", name, {"source": name, "repair": repair})}
            for name in names if name not in busy]


# -- the embedded node's timer ---------------------------------------------------------------------

Submit = Callable[[str], Any]  # submit a sync of this source (the API's JobRunner.submit)
SubmitCall = Callable[[Callable[[], Any]], Any]  # run a callable on the index writer's thread


class EmbeddedScheduler:
    """Without a broker, the API process schedules itself: every `tick` seconds it submits due syncs
    and due permissions passes to the job runner; it prunes hourly and reconciles every
    `reconcile_interval_seconds`."""

    def __init__(self, services: IndexServices, submit: Submit, submit_call: SubmitCall | None = None,
                 tick: float | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.submit = submit
        self.submit_call = submit_call
        self.tick = self.settings.scheduler_tick_seconds if tick is None else tick
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="cairn-scheduler", daemon=True)
        self.last_prune = self.last_reconcile = _now()

    def start(self) -> EmbeddedScheduler:
        interrupt_left_permission_jobs(self.services.catalog)
        if self.tick > 0:
            self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stopped.wait(self.tick):
            try:
                self.run_once()
            except Exception:  # the timer must survive a bad tick (e.g. the catalog briefly unreachable)
                log.exception("scheduler tick failed")

    def run_once(self, now: dt.datetime | None = None) -> list[str]:
        now = now or _now()
        catalog = self.services.catalog
        due = due_sources(catalog, self.settings.sync_interval_seconds, now)
        for name in due:
            self.submit(name)
        if now - self.last_prune >= dt.timedelta(hours=1):
            self.last_prune = now
            days = self.settings.audit_retention_days
            prune(catalog, dt.timedelta(days=self.settings.job_retention_days),
                  dt.timedelta(days=days) if days else None)
        self.submit_passes(now)
        every = self.settings.reconcile_interval_seconds
        if self.submit_call and every > 0 and now - self.last_reconcile >= dt.timedelta(seconds=every):
            self.last_reconcile = now
            self.submit_call(lambda: reconcile_all(self.services))
        return due

    def submit_passes(self, now: dt.datetime) -> list[str]:
        """Queue a permissions job for each due source, run on the index writer's thread."""
        if self.submit_call is None:
            return []
        catalog = self.services.catalog
        due = due_permission_passes(catalog, self.settings.permission_sync_interval_seconds, now, ahead=self.tick)
        for name in due:
            job_id = catalog.create_job(None, name, PERMISSIONS, params={"scheduled": True})
            self.submit_call(functools.partial(run_pass_job, self.services, name, job_id))
        return due


def run_pass_job(services: IndexServices, source: str, job_id: str) -> None:
    """A permissions job on the index writer's thread; its outcome is recorded, never raised."""
    try:
        run_permission_job(services.pipeline, services.settings, source, job_id)
    except Exception:  # noqa: BLE001 - recorded on the job and the source; the writer thread must survive
        log.warning("permissions job %s of %s failed", job_id, source)
