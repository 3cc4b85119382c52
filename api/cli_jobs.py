"""`cairn jobs`, `cairn db upgrade`, `cairn reconcile`, `cairn permissions` and `cairn sources schedule`: the
admin's view of work.

Jobs are read from the catalog alone (locally: no index stores are opened, so this works while a
server owns the index) or from a server (`--url`/CAIRN_URL with an admin CAIRN_TOKEN)."""
from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from api.client import CairnClient, RemoteError
from api.progress import describe_rates, format_seconds, watch_jobs
from indexer.catalog.catalog import JOB_STATES, Catalog
from indexer.settings import Settings

jobs_app = typer.Typer(help="List jobs (no subcommand), show one (optionally live), or cancel one.")
db_app = typer.Typer(no_args_is_help=True, help="Catalog database maintenance.")
out = Console()
err = Console(stderr=True)
URL = typer.Option(None, "--url", help="A running server (default: CAIRN_URL).")


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _client(url: str | None, settings: Settings) -> CairnClient | None:
    target = url or settings.url
    return CairnClient(target, settings.token) if target else None


def local_catalog(settings: Settings) -> Catalog:
    """The catalog for a local command: the embedded one upgraded, a PostgreSQL one only if current."""
    from indexer.catalog import SchemaError, open_catalog

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        return open_catalog(settings.catalog_url)
    except SchemaError as exc:
        _fail(str(exc))


def _local_job(catalog: Catalog, job_id: str) -> dict:
    from api.routes import job_out

    job = catalog.get_job(job_id)
    if job is None:
        _fail(f"no job {job_id!r}")
    return job_out(job).model_dump()


def _remote(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except RemoteError as exc:
        _fail(str(exc))


@jobs_app.callback(invoke_without_command=True)
def jobs(ctx: typer.Context, source: str | None = typer.Option(None, "--source", help="Only this source's jobs."),
         state: str | None = typer.Option(None, "--state", help=f"Only jobs in this state ({', '.join(JOB_STATES)})."),
         limit: int = typer.Option(30, min=1, max=1000), as_json: bool = typer.Option(False, "--json"),
         url: str | None = URL) -> None:
    """Recent jobs, newest first: state, counts, throughput and ETA."""
    if ctx.invoked_subcommand is not None:
        return
    if state is not None and state not in JOB_STATES:
        _fail(f"unknown state {state!r}; expected one of {', '.join(JOB_STATES)}", code=2)
    client = _client(url, ctx.obj)
    if client:
        rows = _remote(client.jobs, source=source, state=state, limit=limit)
    else:
        from api.routes import job_out

        catalog = local_catalog(ctx.obj)
        rows = [job_out(j).model_dump() for j in catalog.list_jobs(source=source, state=state, limit=limit)]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "source", "kind", "state", "files seen/changed/skipped/failed", "embedded", "rate / ETA",
                  "created")
    table.columns[0].overflow = "fold"  # the whole id, even on a narrow terminal: it is what `cancel` takes
    for r in rows:
        files = f"{r['files_seen']}/{r['files_changed']}/{r['files_skipped']}/{r['files_failed']}"
        table.add_row(r["id"], r["source"], r["kind"], r["state"], files, str(r["chunks_embedded"]),
                      describe_rates(r) or "-", (r["created_at"] or "-")[:19])
    out.print(table)


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str = typer.Argument(...),
              watch: bool = typer.Option(False, "--watch", help="Follow it live until it finishes."),
              as_json: bool = typer.Option(False, "--json"), url: str | None = URL) -> None:
    """One job in full: counts, skip reasons, throughput, ETA, error."""
    client = _client(url, ctx.obj)
    fetch = functools.partial(_remote, client.job) if client else functools.partial(_local_job, local_catalog(ctx.obj))
    job = watch_jobs(fetch, [job_id], err, enabled=not as_json)[0] if watch else fetch(job_id)
    if as_json:
        print(json.dumps(job))
        return
    _print_job(job)


def _print_job(job: dict) -> None:
    out.print(f"[bold]{job['id']}[/bold] {job['source']} {job['kind']} [bold]{job['state']}[/bold]")
    for key in ("created_at", "started_at", "finished_at"):
        out.print(f"  {key}: {job.get(key) or '-'}")
    for key in ("files_seen", "files_changed", "files_skipped", "files_deleted", "files_failed", "chunks_embedded",
                "pending_chunks"):
        out.print(f"  {key}: {job.get(key) if job.get(key) is not None else '-'}")
    reasons = job.get("skipped_by_reason") or {}
    if reasons:
        out.print("  skipped by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    if describe_rates(job):
        out.print(f"  {describe_rates(job)}")
    if job.get("counts", {}).get("seconds"):
        out.print(f"  took {format_seconds(job['counts']['seconds'])}")
    if job.get("error"):
        out.print(f"  [red]error:[/red] {job['error']}", markup=True, highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json"),
                url: str | None = URL) -> None:
    """Stop a queued or running job after the batch it is applying."""
    client = _client(url, ctx.obj)
    if client:
        job = _remote(client.cancel, job_id)
    else:
        from indexer.catalog.catalog import FINISHED_JOB_STATES

        catalog = local_catalog(ctx.obj)
        before = catalog.get_job(job_id)
        if before is None:
            _fail(f"no job {job_id!r}")
        if before.state in FINISHED_JOB_STATES:
            _fail(f"job {job_id} already {before.state}")
        catalog.request_cancel(job_id)
        job = _local_job(catalog, job_id)
    if as_json:
        print(json.dumps(job))
    else:
        out.print(f"job {job_id} {job['state']}")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Option("head", help="Target Alembic revision.")) -> None:
    """Migrate the catalog database (CAIRN_DATABASE_URL, or the SQLite catalog) to the current schema.
    Safe on any catalog: a fresh one, one an earlier version made without migrations (recognized by its
    tables and stamped), an older or a current one; at the target revision it changes nothing."""
    from indexer.catalog.migrate import upgrade

    settings: Settings = ctx.obj
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        state = upgrade(settings.catalog_url, revision)
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its type, never a traceback
        _fail(f"upgrade failed: {type(exc).__name__}: {exc}")
    out.print(f"catalog at revision {state.revision}" + ("" if state.current else f" (head: {state.head})"))


@db_app.command("status")
def db_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the catalog's schema revision and the one this version needs; exit 1 unless they match
    (an init container or a deploy script can wait on it). Changes nothing."""
    from indexer.catalog.db import make_engine
    from indexer.catalog.migrate import schema_state

    settings: Settings = ctx.obj
    url = settings.catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        _fail(f"no catalog in {settings.data_dir}")
    engine = make_engine(url)
    try:
        state = schema_state(engine)
    except Exception as exc:  # noqa: BLE001 - an unreachable database is reported, never a traceback
        _fail(f"cannot read the catalog: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    found = {"revision": state.revision, "head": state.head, "current": state.current,
             "matches": state.adopt.revision if state.adopt else None, "problem": state.problem()}
    if as_json:
        print(json.dumps(found))
    else:
        out.print(f"catalog revision: {state.revision or 'none (never stamped)'}; this version needs {state.head}")
        if state.problem():
            err.print(state.problem())
    if not state.current:
        raise typer.Exit(1)


def reconcile(ctx: typer.Context, name: str | None = typer.Argument(None, help="Only this source."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Report drift, repair nothing."),
              as_json: bool = typer.Option(False, "--json"), url: str | None = URL) -> None:
    """Check that tantivy, the vectors and the catalog hold the same chunks; repair drift.
    In-process, or run by a server (--url) as one `reconcile` job per source."""
    client = _client(url, ctx.obj)
    if client:
        jobs = _remote(client.reconcile, name, repair=not dry_run)
        finished = _remote(watch_jobs, client.job, [j["id"] for j in jobs], err, enabled=not as_json)
        failed = [j for j in finished if j["state"] != "succeeded"]
        if failed:
            _fail("; ".join(f"{j['source']}: job {j['id']} {j['state']} {j.get('error') or ''}" for j in failed))
        drifts = [j["counts"] for j in finished]
    else:
        from api.cli import local_services
        from workers.maintenance import reconcile_all

        with local_services(ctx.obj) as services:
            if name is not None and services.catalog.get_source(name) is None:
                _fail(f"no source named {name!r}")
            drifts = [d.as_dict() for d in reconcile_all(services, [name] if name else None, repair=not dry_run)]
    if as_json:
        print(json.dumps(drifts))
        return
    table = Table("source", "chunks", "orphans (fulltext)", "orphans (vectors)", "missing (fulltext)",
                  "missing (vectors)", "documents re-queued", "repaired")
    for d in drifts:
        table.add_row(d["source"], str(d["chunks_checked"]), str(d["orphans_fulltext"]), str(d["orphans_vectors"]),
                      str(d["missing_fulltext"]), str(d["missing_vectors"]), str(d["documents_requeued"]),
                      str(d["repaired"] and d["drift"] > 0))
    out.print(table)


def permissions(ctx: typer.Context, name: str | None = typer.Argument(None, help="Only this source."),
                as_json: bool = typer.Option(False, "--json"), url: str | None = URL) -> None:
    """Run a permissions pass now: ACL changes and deletions read from the source (no content, nothing
    re-embedded), for one source or every source whose documents take their access from the source.
    In-process, or by a server (--url) as one `permissions` job per source. Exits 1 unless every pass succeeded."""
    client = _client(url, ctx.obj)
    if client:
        names = [name] if name else [s["name"] for s in _remote(client.sources) if s.get("permissions") is not None]
        jobs = [_remote(client.permissions, n) for n in names]
        finished = _remote(watch_jobs, client.job, [j["id"] for j in jobs], err, enabled=not as_json)
    else:
        finished = _local_permissions(ctx.obj, name)
    _report_passes(finished, as_json)


def _local_permissions(settings: Settings, name: str | None) -> list[dict]:
    from api.cli import local_services
    from connectors.registry import access_from_source
    from workers.jobs import PERMISSIONS, run_permission_job

    with local_services(settings) as services:
        catalog = services.catalog
        rows = [r for r in catalog.list_sources() if name is None or r.name == name]
        if name is not None and not rows:
            _fail(f"no source named {name!r}")
        if name is not None and not access_from_source(rows[0].kind):
            _fail(f"source {name!r} ({rows[0].kind}) takes its access from its settings: it has no permissions pass")
        finished = []
        for row in (r for r in rows if access_from_source(r.kind)):
            job_id = catalog.create_job(None, row.name, PERMISSIONS)
            # A failure is recorded on the job and reported below with the others.
            with contextlib.suppress(Exception):
                run_permission_job(services.pipeline, settings, row.name, job_id)
            finished.append(_local_job(catalog, job_id))
        return finished


def _report_passes(finished: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"source": j["source"], "job": j["id"], "state": j["state"], "error": j["error"],
                           **{k: j["counts"].get(k, 0) for k in ("checked", "changed", "deleted", "failed",
                                                                 "chunks_embedded")}} for j in finished]))
    else:
        table = Table("source", "state", "checked", "changed", "deleted", "failed", "error")
        for j in finished:
            c = j["counts"]
            table.add_row(j["source"], j["state"], *(str(c.get(k, 0)) for k in ("checked", "changed", "deleted",
                                                                               "failed")), j["error"] or "")
        out.print(table)
    if any(j["state"] != "succeeded" for j in finished):
        raise typer.Exit(1)


def schedule(ctx: typer.Context, name: str = typer.Argument(..., help="Source name."),
             interval: str = typer.Option(..., "--interval", help="e.g. 15m, 1h, 1d; 0 = never; `default`."),
             url: str | None = URL) -> None:
    """Set how often a source is synced by the scheduler (beat, or the embedded server's timer)."""
    from workers.maintenance import set_interval
    from workers.window import parse_duration

    value = None if interval == "default" else interval
    client = _client(url, ctx.obj)
    if client:
        body = _remote(client.set_schedule, name, value)
        seconds = body["interval_seconds"]
    else:
        try:
            seconds = None if value is None else int(parse_duration(value).total_seconds())
        except ValueError as exc:
            _fail(str(exc), code=2)
        catalog = local_catalog(ctx.obj)
        if catalog.get_source(name) is None:
            _fail(f"no source named {name!r}")
        set_interval(catalog, name, seconds)
        seconds = ctx.obj.sync_interval_seconds if seconds is None else seconds
    out.print(f"source {name}: synced every {format_seconds(seconds)}" if seconds else f"source {name}: not scheduled")
