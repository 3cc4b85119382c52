"""The `cairn` command: a thin layer over the same services the API uses, in-process or remote."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from api.cli_backup import backup, restore
from api.cli_jobs import db_app, jobs_app, permissions, reconcile, schedule
from api.cli_sources import sources_app
from api.cli_users import users_app
from api.client import CairnClient, RemoteError
from api.log_setup import configure_logging
from api.progress import SyncProgress, watch_jobs, watch_remote_job
from indexer.catalog import SchemaError
from indexer.models import Access, Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import StoreError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Cairn: organization-wide context engine for AI coding assistants.")
model_app = typer.Typer(no_args_is_help=True, help="Prepare embedding models.")
tokens_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")
app.add_typer(model_app, name="model")
app.add_typer(tokens_app, name="tokens")
app.add_typer(sources_app, name="sources")
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
sources_app.command("schedule")(schedule)
feedback_app = typer.Typer(no_args_is_help=True, help="Export result feedback as a `cairn eval` query file.")
app.add_typer(feedback_app, name="feedback")
app.command("backup")(backup)
app.command("restore")(restore)
out = Console()
err = Console(stderr=True)
OPERATOR = Principal(user="cli-operator", admin=True)  # whoever can open the data directory


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextlib.contextmanager
def local_services(settings: Settings) -> Iterator[IndexServices]:
    try:
        services = IndexServices.open(settings)
    except StoreError as exc:
        fail(f"{exc}\nIf a Cairn server owns this data directory, pass --url or set CAIRN_URL.")
    except SchemaError as exc:
        fail(str(exc))
    try:
        yield services
    finally:
        services.close()


def remote(url: str | None, settings: Settings) -> CairnClient | None:
    target = url or settings.url
    return CairnClient(target, settings.token) if target else None


@app.callback()
def main_options(ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress.")) -> None:
    configure_logging(logging.INFO if verbose else logging.WARNING)
    ctx.obj = Settings()


def _source_name(location: str) -> str:
    tail = location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail or "repo"


def _location(path_or_url: str) -> str:
    path = Path(path_or_url).expanduser()
    return str(path.resolve()) if path.exists() else path_or_url


@app.command()
def index(ctx: typer.Context, path_or_url: str = typer.Argument(..., help="Local repository path or clone URL."),
          name: str | None = typer.Option(None, help="Source name (default: the repository's name)."),
          ref: str | None = typer.Option(None, help="Branch, tag or commit (default: HEAD / default branch)."),
          access: list[str] = typer.Option([], "--access", help="Who may read it: user:X, group:Y or public."),
          full: bool = typer.Option(False, help="Re-read everything, not only what changed."),
          token_env: str = typer.Option("", "--token-env", help="Environment variable holding the token for an "
                                        "http(s) clone URL (read at sync time, never stored)."),
          token_file: str = typer.Option("", "--token-file", help="File holding that token instead."),
          as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
          url: str | None = typer.Option(None, help="A running server (default: CAIRN_URL).")) -> None:
    """Index (or re-index incrementally) a git repository. On an existing source, changed options (access,
    ref, location, token reference) are applied first, as `cairn sources set` does; options left out keep
    their values. A private repository's token is given by reference: `--token-env VAR`, never in the URL."""
    from connectors.config import SourceConfigError, git_config

    settings: Settings = ctx.obj
    location = _location(path_or_url)
    source = name or _source_name(location)
    try:
        git_config(source, location, ref or "", token_env, token_file)
    except SourceConfigError as exc:
        fail(str(exc))
    token = {k: v for k, v in (("token_env", token_env), ("token_file", token_file)) if v}
    principals = sorted(Access.of(*access).principals) if access else None
    client = remote(url, settings)
    if client:
        counts = _index_remote(client, source, location, ref, principals, full, as_json, token)
        partial = counts.pop("partial", None)
    else:
        with local_services(settings) as svc:
            _prepare_local(svc, source, location, ref, principals, as_json, token)
            from workers.jobs import run_sync_job
            from workers.outcome import SyncFailed

            with SyncProgress(err, enabled=not as_json) as progress:
                try:
                    counts = run_sync_job(svc, source, full=full, observe=progress.update).as_dict()
                except SyncFailed as exc:
                    fail(str(exc))
            last = svc.catalog.list_jobs(source=source, limit=1)
            partial = last[0].error if last and last[0].state == "partial" else None
    _print_summary(source, counts, as_json)
    _fail_if_partial(source, partial)


def _fail_if_partial(source: str, error: str | None) -> None:
    """A partial sync indexed what it could (the summary says what) but it is never reported as success."""
    if error is not None:
        fail(f"{source}: the sync was partial: {error}")


def _changed_options(existing: dict[str, Any], location: str, ref: str | None, access: list[str] | None,
                     token: dict[str, str]) -> dict:
    """The PATCH body that makes an existing source match the options given (empty: nothing differs)."""
    source = existing["name"]
    if existing["kind"] != "git":
        fail(f"source {source!r} is a {existing['kind']} source, not a git repository: change it with "
             f"`cairn sources set {source} ...`")
    body: dict[str, Any] = {}
    if access is not None and sorted(existing.get("access") or []) != access:
        body["access"] = access
    if ref is not None and ref != (existing.get("ref") or ""):
        body["ref"] = ref
    if location != existing.get("location"):
        body["location"] = location
    return body | {k: v for k, v in token.items() if v != existing.get(k)}


def _warn_admins_only(source: str, access: list[str] | None) -> None:
    if not access:
        err.print(f"[yellow]warning:[/yellow] source {source!r} has no access list: only admins will read it "
                  f"(give --access group:NAME, or later `cairn sources set {source} --access ...`)")


def _prepare_local(svc: IndexServices, source: str, location: str, ref: str | None,
                   access: list[str] | None, quiet: bool, token: dict[str, str]) -> None:
    """Register a new source, or apply changed options to an existing one (its ACL rewrite runs here)."""
    from api.cli_sources import apply_change_here

    row = svc.catalog.get_source(source)
    if row is None:
        from connectors.config import git_config

        svc.catalog.upsert_source(source, "git", git_config(source, location, ref or "", token.get("token_env", ""),
                                                             token.get("token_file", "")), access or [])
        _warn_admins_only(source, access)
        return
    existing = {"name": row.name, "kind": row.kind, "access": list(row.access), "ref": row.config.get("ref") or "",
                "location": row.config.get("location", ""), "token_env": row.config.get("token_env") or "",
                "token_file": row.config.get("token_file") or ""}
    body = _changed_options(existing, location, ref, access, token)
    _warn_admins_only(source, body.get("access", existing["access"]))
    if body:
        changed = apply_change_here(svc, source, body, quiet, sync=False)  # the sync follows
        err.print(f"source {source!r}: changed {', '.join(changed['changed'])}")


def _index_remote(client: CairnClient, source: str, location: str, ref: str | None, access: list[str] | None,
                  full: bool, quiet: bool, token: dict[str, str]) -> dict:
    from api.cli_sources import change_remotely

    try:
        existing = next((s for s in client.sources() if s["name"] == source), None)
        if existing is None:
            client.add_source({"name": source, "kind": "git", "location": location, "ref": ref or "",
                               "access": access or [], **token})
            _warn_admins_only(source, access)
        else:
            body = _changed_options(existing, location, ref, access, token)
            _warn_admins_only(source, body.get("access", existing.get("access")))
            if body:
                changed = change_remotely(client, source, body, quiet)
                err.print(f"source {source!r}: changed {', '.join(changed['changed'])}")
        job = watch_remote_job(client, client.reindex(source, full=full)["id"], err, enabled=not quiet)
    except RemoteError as exc:
        fail(str(exc))
    if job["state"] not in ("succeeded", "partial"):
        fail(f"job {job['id']} {job['state']}: {job.get('error')}")
    return job["counts"] | ({"partial": job.get("error") or ""} if job["state"] == "partial" else {})


def _print_summary(source: str, counts: dict, as_json: bool) -> None:
    keys = ("files_seen", "files_changed", "files_deleted", "files_skipped", "chunks_embedded",
            "chunks_written", "seconds")
    summary = {"source": source} | {k: counts.get(k, 0) for k in keys}
    if as_json:
        print(json.dumps(summary))
    else:
        out.print(" ".join(f"{k}={v}" for k, v in summary.items()))


@app.command()
def search(ctx: typer.Context, query: str = typer.Argument(..., help="What to look for (words, code, a bug report)."),
           limit: int = typer.Option(10, min=1, max=100), source: list[str] = typer.Option([], "--source"),
           path: str = typer.Option("", help="Only under this path prefix."),
           language: list[str] = typer.Option([], "--language"), kind: list[str] = typer.Option([], "--kind"),
           as_user: str | None = typer.Option(None, help="In-process only: search as this user instead of "
                                                          "as the operator (who reads everything)."),
           group: list[str] = typer.Option([], "--group", help="Groups of --as-user."),
           as_json: bool = typer.Option(False, "--json"), url: str | None = typer.Option(None)) -> None:
    """Hybrid search over everything the caller may read."""
    from retrieval.permissions import Scope

    settings: Settings = ctx.obj
    client = remote(url, settings)
    if client:
        try:
            body = client.search(query, limit, source, path_prefix=path, languages=language, kinds=kind)
        except RemoteError as exc:
            fail(str(exc))
        results = [{"source": h["source"], "path": h["path"], "start_line": h["start_line"],
                    "end_line": h["end_line"], "symbol": h["symbol"], "score": h["score"], "snippet": h["snippet"]}
                   for h in body["hits"]]
        abstained = bool(body.get("abstained"))
    else:
        from retrieval.searcher import build_searcher

        who = Principal(user=as_user, groups=frozenset(group)) if as_user else OPERATOR
        scope = Scope(sources=tuple(source), path_prefixes=(path,) if path else (), languages=tuple(language),
                      kinds=tuple(kind))
        with local_services(settings) as svc:
            searcher = build_searcher(svc)
            try:
                result = searcher.search(query, who, scope, limit=limit)
            except ValueError as exc:
                fail(str(exc), code=2)
            finally:
                searcher.close()
        results = [{"source": h.source, "path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                    "symbol": h.symbol, "score": h.score, "snippet": h.snippet} for h in result.hits]
        abstained = result.abstained
    _print_results(results, as_json, abstained)


def _print_results(results: list[dict], as_json: bool, abstained: bool = False) -> None:
    if as_json:
        print(json.dumps({"results": results, "abstained": abstained}))
        return
    if not results:
        out.print("no results: nothing indexed is relevant enough (CAIRN_RELEVANCE_FLOOR)" if abstained
                  else "no results")
    for r in results:
        out.print(f"[bold]{r['source']}[/bold] {r['path']}:{r['start_line']}-{r['end_line']} "
                  f"[dim]{r['symbol']}[/dim] ({r['score']:.3f})")
        out.print(r["snippet"], markup=False, highlight=False, soft_wrap=True)
        out.print()


@sources_app.callback(invoke_without_command=True)
def sources(ctx: typer.Context, as_json: bool = typer.Option(False, "--json"),
            url: str | None = typer.Option(None)) -> None:
    """List indexed sources with their state and counts (or add/load sources: see the subcommands)."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    client = remote(url, settings)
    if client:
        try:
            rows = client.sources()
        except RemoteError as exc:
            fail(str(exc))
    else:
        with local_services(settings) as svc:
            rows = [{"name": r.name, "kind": r.kind, "state": r.state, "location": r.config.get("location", ""),
                     "ref": r.config.get("ref") or "", "access": list(r.access), **svc.catalog.counts(r.name),
                     "last_success_at": r.last_success_at.isoformat() if r.last_success_at else None,
                     "last_error": r.last_error, "redactions": svc.pipeline.redactions.summary(r.name).as_dict()}
                    for r in svc.catalog.list_sources()]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("name", "kind", "state", "documents", "chunks", "last success", "location")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["state"], str(r["documents"]), str(r["chunks"]),
                      str(r.get("last_success_at") or "-"), r.get("location") or "-")
    out.print(table)


@app.command()
def reindex(ctx: typer.Context, name: str | None = typer.Argument(None, help="Source to re-index."),
            all_sources: bool = typer.Option(False, "--all", help="Every source (one job each)."),
            full: bool = typer.Option(False, help="Re-read and rewrite everything (no re-embedding of "
                                                  "unchanged chunks)."),
            since: str | None = typer.Option(None, "--since", help="Re-read and rewrite what the source "
                                                "changed in this window, e.g. 2d (see docs/operating.md)."),
            as_json: bool = typer.Option(False, "--json"), url: str | None = typer.Option(None)) -> None:
    """Re-index one source or all of them, with live progress (also against a running server)."""
    from workers.window import parse_duration

    settings: Settings = ctx.obj
    if bool(name) == all_sources:
        fail("give a source NAME or --all", code=2)
    if full and since:
        fail("--full already re-reads everything; give --full or --since", code=2)
    try:
        window = parse_duration(since) if since else None
    except ValueError as exc:
        fail(str(exc), code=2)
    client = remote(url, settings)
    if client:
        _reindex_remote(client, [name] if name else None, full, since, as_json)
        return
    from workers.jobs import JobStopped, run_sync_job
    from workers.outcome import SyncFailed

    partial: list[str] = []
    with local_services(settings) as svc:
        names = [r.name for r in svc.catalog.list_sources()] if not name else [name]  # no name: --all
        for n in names:
            if svc.catalog.get_source(n) is None:
                fail(f"no source named {n!r}")
            with SyncProgress(err, enabled=not as_json) as progress, _interrupt_cancels() as stop:
                try:
                    counts = run_sync_job(svc, n, full=full, observe=progress.update, since=window,
                                          should_stop=stop).as_dict()
                except JobStopped as stopped:
                    fail(f"{n}: job {stopped.job_id} {stopped.state}")
                except SyncFailed as exc:
                    fail(str(exc))
            _print_summary(n, counts, as_json)
            last = svc.catalog.list_jobs(source=n, limit=1)
            if last and last[0].state == "partial":
                partial.append(f"{n}: {last[0].error}")
    if partial:
        fail(f"partial sync: {'; '.join(partial)}")


@contextlib.contextmanager
def _interrupt_cancels() -> Iterator[Callable[[], str | None]]:
    """The first Ctrl-C cancels the running job cleanly after its current batch; a second one aborts."""
    asked: list[bool] = []

    def on_interrupt(signum: int, frame: object) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        err.print("[yellow]cancelling after the current batch (Ctrl-C again to abort)[/yellow]")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: "cancelled" if asked else None
    finally:
        signal.signal(signal.SIGINT, previous)


def _reindex_remote(client: CairnClient, names: list[str] | None, full: bool, since: str | None,
                    as_json: bool) -> None:
    """Submit every job first (a distributed deployment runs them side by side), then follow them all."""
    try:
        names = names or [s["name"] for s in client.sources()]
        job_ids = [client.reindex(n, full=full, since=since)["id"] for n in names]
        finished = watch_jobs(client.job, job_ids, err, enabled=not as_json)
    except RemoteError as exc:
        fail(str(exc))
    for job in finished:
        _print_summary(job["source"], job["counts"], as_json)
    failed = [f"{j['source']}: job {j['id']} {j['state']} {j.get('error') or ''}".strip()
              for j in finished if j["state"] != "succeeded"]
    if failed:
        fail("; ".join(failed))


@app.command("eval")
def evaluate(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                             help="JSONL of {query, source, expected_paths}."),
             limit: int = typer.Option(10, help="Results retrieved per query."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Measure retrieval on your own queries: Recall@1/5/10, MRR and the misses."""
    from retrieval.evaluation import evaluate_queries, load_queries
    from retrieval.searcher import build_searcher

    settings: Settings = ctx.obj
    try:
        queries = load_queries(file)
    except ValueError as exc:
        fail(str(exc), code=2)
    with local_services(settings) as svc:
        searcher = build_searcher(svc)
        report = evaluate_queries(searcher, OPERATOR, queries, limit=max(limit, 10))
        searcher.close()
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    out.print(report.render())


@feedback_app.command("export")
def feedback_export(ctx: typer.Context,
                    since: str | None = typer.Option(None, help="Only feedback given at or after this ISO "
                                                                   "date or time (UTC when it has no zone).")) -> None:
    """Print JSONL lines {query, source, expected_paths} from useful/not-useful feedback, for `cairn eval`.

    Needs audit_query_text on while the feedback was collected (otherwise query text is not kept)."""
    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine
    from retrieval.feedback_export import ExportStats, FeedbackExportError, export_feedback

    settings: Settings = ctx.obj
    when = None
    if since:
        try:
            when = dt.datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T12:00)", code=2)
    if not settings.database_url and not settings.data_dir.is_dir():
        fail(f"no data directory at {settings.data_dir}")
    engine = make_engine(settings.catalog_url)
    stats = ExportStats()
    try:
        for line in export_feedback(engine, Catalog(engine), when, stats):
            print(json.dumps(line))
    except FeedbackExportError as exc:
        fail(str(exc))
    err.print(" ".join(f"{k}={v}" for k, v in stats.as_dict().items()))


@app.command()
def serve(ctx: typer.Context, host: str | None = typer.Option(None), port: int | None = typer.Option(None)) -> None:
    """Serve the API (and own the embedded index) until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.cli_jobs import local_catalog

    settings: Settings = ctx.obj.for_serving()  # vector work off the serving GIL (indexer/stores/edge_process.py)
    configure_logging(logging.INFO)  # a server logs at INFO: one line per request (api.observability)
    local_catalog(settings).engine.dispose()  # upgraded (embedded) or current, or a clear exit before binding
    api = create_app(settings)
    # No access log (it prints whole URLs: search text, a webhook's ?secret=; the request line of
    # api.observability replaces it), and no logging config of uvicorn's own: its lines go through ours.
    server = uvicorn.Server(uvicorn.Config(api, host=host or settings.host, port=port or settings.port,
                                           log_level="info", access_log=False, log_config=None,
                                           timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                                           timeout_keep_alive=settings.keep_alive_seconds))
    # uvicorn has no hook for its signal handling: its handler method is replaced on this instance (mypy
    # rejects assigning to a method, and a Callable type cannot name the `frame` keyword)
    server.handle_exit = _graceful_exit(server, api)  # type: ignore[method-assign,assignment]
    server.run()


def _graceful_exit(server: uvicorn.Server, api: FastAPI) -> Callable[[int, FrameType | None], None]:
    """SIGTERM/SIGINT: uvicorn stops accepting connections and lets requests in flight finish (up to
    shutdown_grace_seconds), the indexing job stops after its current batch, and the process exits 0
    (uvicorn's own handler would re-raise the signal after the drain). A second SIGINT forces it."""
    def handle(sig: int, _frame: FrameType | None) -> None:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True
        jobs = getattr(api.state, "jobs", None)
        if jobs is not None:
            jobs.interrupt()
    return handle


@app.command()
def demo(ctx: typer.Context, path: Path = typer.Option(Path("."), help="Repository to index."),
         port: int | None = typer.Option(None)) -> None:
    """Index a repository (this one by default), create a token and serve it: the quick start."""
    from api.demo import run_demo

    run_demo(ctx.obj, path, port, out)


@model_app.command("prepare")
def model_prepare(ctx: typer.Context) -> None:
    """Make the configured embedding model available offline (exports the default model to ONNX once)."""
    from indexer.services import build_embedder

    settings: Settings = ctx.obj
    embedder = build_embedder(settings)  # exports the default model offline once, or downloads another
    out.print(f"embedding model ready: {embedder.model_name} (dim {embedder.dim})")


@tokens_app.command("create")
def tokens_create(ctx: typer.Context, user: str = typer.Option(..., help="The user the token acts as."),
                  group: list[str] = typer.Option([], "--group", help="Groups of that user (repeatable)."),
                  admin: bool = typer.Option(False, "--admin", help="May manage sources and jobs."),
                  name: str = typer.Option("", help="A label for the token."),
                  expires_days: int | None = typer.Option(None, min=1, help="Expire after this many days."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Create an API token. The token is printed once and only its hash is stored."""
    from api.cli_jobs import local_catalog
    from api.tokens import TokenStore

    store = TokenStore(local_catalog(ctx.obj).engine)
    token, info = store.create(user, group, admin=admin, name=name,
                               expires_in=dt.timedelta(days=expires_days) if expires_days else None)
    if as_json:
        print(json.dumps({"token": token, "id": info.id, "user": info.user, "groups": list(info.groups),
                          "admin": info.admin}))
    else:
        out.print(f"token (shown once): [bold]{token}[/bold]\nid: {info.id}")


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (never the tokens themselves)."""
    from api.cli_jobs import local_catalog
    from api.tokens import TokenStore

    rows = TokenStore(local_catalog(ctx.obj).engine).list()
    data: list[dict[str, Any]] = [{"id": t.id, "user": t.user, "groups": list(t.groups), "admin": t.admin, "name": t.name,
             "expires_at": t.expires_at.isoformat() if t.expires_at else None, "revoked": t.revoked_at is not None}
            for t in rows]
    if as_json:
        print(json.dumps(data))
        return
    table = Table("id", "user", "groups", "admin", "name", "expires", "revoked")
    for d in data:
        table.add_row(d["id"], d["user"], ",".join(d["groups"]), str(d["admin"]), d["name"],
                      str(d["expires_at"] or "-"), str(d["revoked"]))
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: str = typer.Argument(...)) -> None:
    """Revoke a token by its id."""
    from api.cli_jobs import local_catalog
    from api.tokens import TokenStore

    if not TokenStore(local_catalog(ctx.obj).engine).revoke(token_id):
        fail(f"no active token with id {token_id!r}")
    out.print(f"revoked {token_id}")


app.command("reconcile")(reconcile)
app.command("permissions")(permissions)


def main() -> None:
    app()


# -- index generations: switching the embedding model without downtime --------------------------

@model_app.command("switch")
def model_switch(ctx: typer.Context, name: str = typer.Argument(
        ..., help="A fastembed model name or a local directory holding model.onnx.")) -> None:
    """Re-embed the index with another model: the server builds a new index generation in the
    background when it (re)starts, keeps serving the current one, and swaps when the build is done."""
    from indexer.embedding import EmbeddingError
    from indexer.generations.state import read_generations, request_model
    from indexer.services import build_embedder

    settings: Settings = ctx.obj
    try:
        model = build_embedder(settings, name).model_name  # loads it: a model that cannot load is refused here
    except EmbeddingError as exc:
        fail(str(exc))
    from api.cli_jobs import local_catalog

    engine = local_catalog(settings).engine
    request_model(engine, settings, name)
    active = read_generations(engine)[0]
    if active is not None and active.model == model:
        out.print(f"{model} already serves generation {active.id}: nothing to rebuild")
        return
    out.print(f"requested {model}. The server builds a new index generation with it when it starts "
              "(restart `cairn serve`); the current generation keeps serving until the swap.")


@model_app.command("status")
def model_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the active index generation and the one being built (with its progress)."""
    from indexer.catalog.db import make_engine
    from indexer.generations.state import generation_status

    settings: Settings = ctx.obj
    url = settings.catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        fail(f"no index in {settings.data_dir}")
    status = generation_status(make_engine(settings.catalog_url))
    if as_json:
        print(json.dumps(status))
        return
    for role in ("active", "building"):
        gen = status[role]
        if gen is None:
            out.print(f"{role}: none")
            continue
        line = f"{role}: generation {gen['id']} (index v{gen['index_version']}, {gen['model']}, chunks {gen['chunking']})"
        job = gen.get("job")
        if job:
            line += f" — {job['state']}, {job['done']}/{job['total']} documents"
        out.print(line)
