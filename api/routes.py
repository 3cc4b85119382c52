"""REST routes: search, references, sources, reindex and jobs."""
from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from concurrent.futures import Future

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from api.auth import admin, principal
from api.errors import BadRequest, Conflict, NotFound
from api.mcp_schemas import ReferencesOut, reference_out
from api.new_sources import UNSET as NO_INTERVAL
from api.new_sources import parse_interval, remote_source, save_remote, save_source
from api.schemas import (
    HitOut,
    JobOut,
    NewSourceIn,
    PermissionsOut,
    ReconcileIn,
    RedactionsOut,
    ReindexIn,
    RemoteSourceIn,
    ScheduleIn,
    ScheduleOut,
    SearchRequest,
    SearchResponse,
    SourceChangeOut,
    SourceOut,
    SourcePatch,
    SourceRemovedOut,
)
from api.source_changes import UNSET, SourceChange, apply_change, plan_change
from connectors.config import SourceConfigError, git_config
from connectors.registry import access_from_source
from indexer.catalog.catalog import FINISHED_JOB_STATES, JOB_STATES
from indexer.models import Access, Principal
from indexer.pipeline import Freshness, freshness
from indexer.secrets.redaction_log import RedactionLog
from retrieval.permissions import Scope
from retrieval.references import find_references
from workers.jobs import PERMISSIONS
from workers.lifecycle import ACCESS_JOB, remove_source, run_access_job
from workers.maintenance import SYNC_KINDS, intervals, run_pass_job, run_reconcile_job, set_interval
from workers.window import parse_duration

router = APIRouter(prefix="/v1")


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, request: Request, who: Principal = Depends(principal)) -> SearchResponse:
    scope = Scope(sources=tuple(body.sources), path_prefixes=(body.path_prefix,) if body.path_prefix else (),
                  languages=tuple(body.languages), kinds=tuple(body.kinds))
    result = request.app.state.searcher.search(body.query, who, scope, limit=body.limit)
    query_id = str(uuid.uuid4())
    request.app.state.audit.record(who, "search", scope=scope, result_ids=[h.chunk_id for h in result.hits],
                                   query_id=query_id, query_text=body.query)
    hits = [HitOut(id=h.chunk_id, document_id=h.doc_id, source=h.source, path=h.path, title=h.title, url=h.url,
                   start_line=h.start_line, end_line=h.end_line, symbol=h.symbol, kind=h.kind,
                   language=h.language, score=h.score, snippet=h.snippet, chunk_ids=list(h.chunk_ids))
            for h in result.hits]
    return SearchResponse(query_id=query_id, hits=hits, partial=list(result.partial), abstained=result.abstained,
                          timings_ms={k: round(v * 1000, 2) for k, v in result.timings.items()})


@router.get("/references", response_model=ReferencesOut)
def references(request: Request, symbol: str = Query(min_length=1, max_length=200),
               sources: list[str] = Query(default=[], max_length=100), path_prefix: str = Query(default="",
                                                                                           max_length=1000),
               limit: int = Query(default=50, ge=1, le=100), who: Principal = Depends(principal)) -> ReferencesOut:
    """Definitions and uses of `symbol` the caller may read (the MCP tool `find_references`)."""
    scope = Scope(sources=tuple(sources), path_prefixes=(path_prefix,) if path_prefix else ())
    svc = request.app.state.services
    found = find_references(svc.catalog, svc.fulltext, who, symbol, scope, request.app.state.stale_sources.current(),
                            limit)
    request.app.state.audit.record(who, "references", scope=scope, query_text=symbol)
    return ReferencesOut(references=[reference_out(r) for r in found.references], truncated=found.truncated)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _source_out(row, catalog, show_access: bool, fresh: Freshness | None = None) -> SourceOut:
    counts = catalog.counts(row.name)
    perms = fresh.as_dict() if show_access and fresh is not None and fresh.tracked else None
    own_interval = intervals(catalog).get(row.name) if show_access else None
    return SourceOut(name=row.name, kind=row.kind, state=row.state,
                     location=row.config.get("location", "") if show_access else None,
                     ref=row.config.get("ref") or "", access=list(row.access) if show_access else None,
                     documents=counts["documents"], chunks=counts["chunks"],
                     last_success_at=_iso(row.last_success_at), last_error=row.last_error,
                     redactions=RedactionsOut.model_validate(RedactionLog(catalog.engine).summary(row.name).as_dict())
                     if show_access else None, interval_seconds=own_interval,
                     permissions=PermissionsOut.model_validate(perms) if perms else None)


@router.get("/sources", response_model=list[SourceOut])
def list_sources(request: Request, who: Principal = Depends(principal)) -> list[SourceOut]:
    """Sources the caller may read something in (admins: all, with their access lists)."""
    catalog = request.app.state.services.catalog
    mine = set(who.principals())
    rows = [r for r in catalog.list_sources() if who.admin or mine & set(r.access)]
    fresh = freshness(catalog, request.app.state.settings.permission_max_staleness) if who.admin else {}
    return [_source_out(r, catalog, who.admin, fresh.get(r.name)) for r in rows]


@router.post("/sources", response_model=SourceOut, status_code=201)
def add_source(body: NewSourceIn, request: Request, who: Principal = Depends(admin)) -> SourceOut:
    """A git repository, or a GitLab, Jira or Confluence source validated as `cairn sources add` does."""
    catalog = request.app.state.services.catalog
    if catalog.get_source(body.name) is not None:
        raise Conflict(f"a source named {body.name!r} already exists")
    interval = NO_INTERVAL if body.interval is None else parse_interval(body.interval)  # checked by the body's model
    if isinstance(body, RemoteSourceIn):
        try:
            remote = remote_source(body.definition())
        except SourceConfigError as exc:  # the same 422 as the body's own checks, field by field
            raise RequestValidationError([{"loc": ("body", body.kind, *loc), "msg": msg}
                                          for loc, msg in exc.problems]) from None
        save_remote(catalog, remote, interval)
    else:
        access = Access.of(*body.access)
        try:
            config = git_config(body.name, body.location, body.ref, body.token_env, body.token_file, body.username)
        except SourceConfigError as exc:
            raise BadRequest(str(exc)) from None
        save_source(catalog, body.name, body.kind, config, sorted(access.principals), interval)
    request.app.state.audit.record(who, "sources.add", target=body.name)
    return _source_out(catalog.get_source(body.name), catalog, True)


REMOVE_WAIT_SECONDS = 600.0  # a removal waits for the job it cancelled to stop after its current batch
JOB_STOP_SECONDS = 120.0  # distributed: how long a cancelled crawl (another process) gets to stop


def _wait_stopped(catalog, job_ids: list[str], timeout: float) -> None:
    """Until every job has finished or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(catalog.job_state(j) not in (*FINISHED_JOB_STATES, None)
                                              for j in job_ids):
        time.sleep(0.2)


def _busy_job(catalog, name: str):
    """The source's queued or running sync or ACL rewrite, if any (a change waits for none: it is refused)."""
    active = catalog.list_jobs(source=name, state=("queued", "running", "cancelling"), limit=10)
    return next((j for j in active if j.kind in (*SYNC_KINDS, ACCESS_JOB)), None)


@router.patch("/sources/{name:path}", response_model=SourceChangeOut)
def change_source(name: str, body: SourcePatch, request: Request, who: Principal = Depends(admin)) -> SourceChangeOut:
    """Change a source's access, ref, location, schedule or credential reference. A git source's new access
    is applied by an `access` job (ACLs rewritten, nothing re-embedded); a new ref or location starts a sync.
    Refused (409) while the source has a queued or running sync."""
    services = request.app.state.services
    catalog = services.catalog
    if catalog.get_source(name) is None:
        raise NotFound(f"no source named {name!r}")
    busy = _busy_job(catalog, name)
    if busy is not None:
        raise Conflict(f"source {name!r} has a {busy.state} {busy.kind} job ({busy.id}); change it when that job "
                       f"has finished, or cancel it first (POST /v1/jobs/{busy.id}/cancel)")
    given = body.model_fields_set
    change = SourceChange(**{k: getattr(body, k) for k in ("access", "ref", "location", "token_env", "token_file")
                             if k in given and getattr(body, k) is not None},
                          interval=body.interval if "interval" in given else UNSET)
    plan = plan_change(catalog, name, change)
    apply_change(catalog, plan)
    job_ids = []
    if plan.rewrite_access:
        job_id = catalog.create_job(None, name, ACCESS_JOB)
        request.app.state.jobs.submit_call(functools.partial(run_access_job, services, name, job_id))
        job_ids.append(job_id)
    if plan.sync:
        job_ids.append(request.app.state.jobs.submit(name, full=plan.sync == "full"))
    request.app.state.audit.record(who, "sources.update", target=name)
    return SourceChangeOut(source=_source_out(catalog.get_source(name), catalog, True), changed=plan.changed,
                           jobs=[job_out(catalog.get_job(j)) for j in job_ids])


@router.delete("/sources/{name:path}", response_model=SourceRemovedOut)
def delete_source(name: str, request: Request, who: Principal = Depends(admin)) -> SourceRemovedOut:
    """Remove a source: its jobs are cancelled, then every chunk leaves tantivy and the vectors and the
    source leaves the catalog, on the index writer's thread. The same name can be added again."""
    catalog = request.app.state.services.catalog
    if catalog.get_source(name) is None:
        raise NotFound(f"no source named {name!r}")
    active = catalog.list_jobs(source=name, state=("queued", "running", "cancelling"), limit=10_000)
    for job in active:
        catalog.request_cancel(job.id)
    done: Future[dict[str, int]] = Future()

    distributed = bool(request.app.state.settings.celery_broker_url)

    def remove() -> None:
        try:
            if distributed:  # a crawl in a worker stops after its current batch
                _wait_stopped(catalog, [j.id for j in active], JOB_STOP_SECONDS)
            for job in active:  # embedded: whatever is left never ran (or runs after this, and stops)
                if catalog.job_state(job.id) not in FINISHED_JOB_STATES:
                    catalog.update_job(job.id, state="cancelled", error="its source was removed")
            done.set_result(remove_source(request.app.state.services, name))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            done.set_exception(exc)

    request.app.state.jobs.submit_call(remove)  # after the job being cancelled stops, on the writer's thread
    try:
        removed = done.result(timeout=REMOVE_WAIT_SECONDS)
    except TimeoutError:
        request.app.state.audit.record(who, "sources.remove", target=name)  # asked for; it finishes later
        raise Conflict(f"source {name!r}: still waiting for its running job to stop; the removal goes on "
                       "and finishes when it has (GET /v1/sources shows when)") from None
    request.app.state.audit.record(who, "sources.remove", target=name)
    return SourceRemovedOut(source=name, removed=removed, cancelled_jobs=[j.id for j in active])


def _duration_seconds(text: str, what: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise BadRequest(f"{what}: {exc}") from None


@router.post("/sources/{name:path}/reindex", response_model=JobOut, status_code=202)
def reindex(name: str, request: Request, body: ReindexIn | None = None, who: Principal = Depends(admin)) -> JobOut:
    """Queue a sync of the source: incremental, `full` (re-read and rewrite everything) or `since` a window."""
    catalog = request.app.state.services.catalog
    if catalog.get_source(name) is None:
        raise NotFound(f"no source named {name!r}")
    body = body or ReindexIn()
    since = _duration_seconds(body.since, "since") if body.since else None
    submit = request.app.state.jobs.submit
    job_id = submit(name, full=body.full, since=since) if since else submit(name, full=body.full)
    request.app.state.audit.record(who, "sources.reindex", target=name)
    return job_out(catalog.get_job(job_id))


@router.put("/sources/{name:path}/schedule", response_model=ScheduleOut)
def set_schedule(name: str, body: ScheduleIn, request: Request, who: Principal = Depends(admin)) -> ScheduleOut:
    """Set the source's own sync interval (`0` = never scheduled; null = the default interval)."""
    services = request.app.state.services
    if services.catalog.get_source(name) is None:
        raise NotFound(f"no source named {name!r}")
    seconds = None if body.interval is None else int(_duration_seconds(body.interval, "interval"))
    set_interval(services.catalog, name, seconds)
    request.app.state.audit.record(who, "sources.schedule", target=name)
    own = intervals(services.catalog).get(name)
    return ScheduleOut(source=name, interval_seconds=services.settings.sync_interval_seconds if own is None else own,
                       default=own is None)


@router.post("/reconcile", response_model=list[JobOut], status_code=202)
def reconcile(request: Request, body: ReconcileIn | None = None, who: Principal = Depends(admin)) -> list[JobOut]:
    """Queue a reconciliation of the stores with the catalog, one `reconcile` job per source, run by the
    process that owns the index writers (this one). Sources being synced are left out."""
    body = body or ReconcileIn()
    services = request.app.state.services
    catalog = services.catalog
    if body.source is not None and catalog.get_source(body.source) is None:
        raise NotFound(f"no source named {body.source!r}")
    busy = catalog.active_job_sources(SYNC_KINDS)
    names = [n for n in ([body.source] if body.source else [r.name for r in catalog.list_sources()]) if n not in busy]
    job_ids = [catalog.create_job(None, n, "reconcile", params={"repair": body.repair}) for n in names]
    for name, job_id in zip(names, job_ids, strict=True):
        request.app.state.jobs.submit_call(functools.partial(run_reconcile_job, services, name, body.repair, job_id))
    request.app.state.audit.record(who, "reconcile", target=body.source or "*")
    return [job_out(catalog.get_job(j)) for j in job_ids]


@router.post("/sources/{name:path}/permissions", response_model=JobOut, status_code=202)
def permissions_pass(name: str, request: Request, who: Principal = Depends(admin)) -> JobOut:
    """Queue a permissions pass of the source now (a `permissions` job run by the index owner, this
    process): ACL changes and deletions read from the source and applied without re-embedding."""
    services = request.app.state.services
    row = services.catalog.get_source(name)
    if row is None:
        raise NotFound(f"no source named {name!r}")
    if not access_from_source(row.kind):
        raise Conflict(f"source {name!r} ({row.kind}) takes its access from its settings: it has no permissions pass")
    job_id = services.catalog.create_job(None, name, PERMISSIONS)
    request.app.state.jobs.submit_call(functools.partial(run_pass_job, services, name, job_id))
    request.app.state.audit.record(who, "sources.permissions", target=name)
    return job_out(services.catalog.get_job(job_id))


def job_out(job) -> JobOut:
    """The job's row plus the progress its runner recorded in its counts (rates, pending, ETA)."""
    counts = job.counts or {}
    live = {k: counts[k] for k in ("phase", "files_seen", "files_skipped", "skipped_by_reason", "files_changed",
                                   "chunks_embedded", "files_deleted", "files_failed", "pending_chunks",
                                   "items_per_second", "chunks_per_second", "eta_seconds", "stalled")
            if counts.get(k) is not None}
    if job.state not in ("running", "cancelling"):
        live.pop("eta_seconds", None)
        live.pop("stalled", None)
    return JobOut(id=job.id, source=job.source, kind=job.kind, state=job.state, counts=counts,
                  error=job.error, created_at=_iso(job.created_at), started_at=_iso(job.started_at),
                  finished_at=_iso(job.finished_at), params=getattr(job, "params", None) or {},
                  done=job.done or 0, total=job.total or 0, **live)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, _: Principal = Depends(admin)) -> JobOut:
    job = request.app.state.services.catalog.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job_out(job)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, status_code=202)
def cancel_job(job_id: str, request: Request, who: Principal = Depends(admin)) -> JobOut:
    """Ask a queued or running job to stop after its current batch (state `cancelling`, then `cancelled`)."""
    catalog = request.app.state.services.catalog
    job = catalog.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job.state in FINISHED_JOB_STATES:
        raise Conflict(f"job {job_id} already {job.state}")
    job = catalog.request_cancel(job_id)
    request.app.state.audit.record(who, "jobs.cancel", target=job_id)
    return job_out(job)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(request: Request, source: str | None = None, state: str | None = None, kind: str | None = None,
              limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(admin)) -> list[JobOut]:
    """Newest first; `?source=&state=&kind=&limit=`."""
    if state is not None and state not in JOB_STATES:
        raise BadRequest(f"unknown job state {state!r}; expected one of {', '.join(JOB_STATES)}")
    jobs = request.app.state.services.catalog.list_jobs(source=source, state=state, kind=kind, limit=limit)
    return [job_out(j) for j in jobs]
