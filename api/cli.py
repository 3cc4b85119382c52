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

from api.cli_backup import backup, restore
from api.cli_errors import USAGE, VERBOSE, CairnGroup, fail, hide_tracebacks, no_source
from api.cli_format import Col, CompactTable, human_time
from api.cli_ids import resolve_id, short_ids
from api.cli_jobs import db_app, jobs_app, permissions, reconcile, schedule
from api.cli_ranker import ranker_app
from api.cli_sources import sources_app
from api.cli_users import users_app
from api.client import CairnClient
from api.log_setup import configure_logging
from api.progress import SyncProgress, watch_jobs, watch_remote_job
from connectors.config import NAME_RULE
from indexer.catalog import SchemaError
from indexer.models import Access, Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import StoreError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

app = typer.Typer(cls=CairnGroup, no_args_is_help=True, add_completion=False,
                  help="Cairn: organization-wide context engine for AI coding assistants. Ids (jobs, tokens) "
                       "may be shortened to any unique start; -v shows progress logs and tracebacks.")
model_app = typer.Typer(no_args_is_help=True, help="Prepare embedding models.")
tokens_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")
app.add_typer(model_app, name="model")
app.add_typer(tokens_app, name="tokens")
app.add_typer(sources_app, name="sources")
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(ranker_app, name="ranker")
sources_app.command("schedule")(schedule)
feedback_app = typer.Typer(no_args_is_help=True, help="Export result feedback as a `cairn eval` query file.")
app.add_typer(feedback_app, name="feedback")
app.command("backup")(backup)
app.command("restore")(restore)
out = Console()
err = Console(stderr=True)
OPERATOR = Principal(user="cli-operator", admin=True)  # whoever can open the data directory


def asker(as_user: str | None, group: list[str], remote_client: CairnClient | None) -> Principal:
    """Who an in-process search or locate asks as. `--as-user`/`--group` are refused where they would be ignored:
    over `--url` the token decides who asks, and groups belong to `--as-user`."""
    if as_user and remote_client is not None:
        fail("--as-user works in-process only: with --url the token decides who asks", code=2)
    if group and not as_user:
        fail("--group gives the groups of --as-user: name the user with --as-user", code=2)
    return Principal(user=as_user, groups=frozenset(group)) if as_user else OPERATOR


ADMINS_ONLY = "admins only"  # how an empty access list reads in tables
SERVING = ("serve", "demo")  # a server's log keeps its tracebacks: nobody reads its failures on a terminal
NO_SOURCES = "no sources yet: `cairn index PATH_OR_URL` adds a git repository, `cairn sources add` others"


@contextlib.contextmanager
def local_services(settings: Settings) -> Iterator[IndexServices]:
    try:
        services = IndexServices.open(settings)
    except StoreError as exc:
        fail(str(exc), hint="if a Cairn server owns this data directory, give --url (or set CAIRN_URL)")
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
def main_options(ctx: typer.Context, verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log progress, and show the traceback of an error (anywhere on the line).")) -> None:
    ctx.meta[VERBOSE] = verbose
    configure_logging(logging.INFO if verbose else logging.WARNING)
    if not verbose and ctx.invoked_subcommand not in SERVING:
        hide_tracebacks()  # the command reports its failure itself, in one line
    ctx.obj = Settings()


def _source_name(location: str) -> str:
    tail = location.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail or "repo"


def _location(path_or_url: str) -> str:
    path = Path(path_or_url).expanduser()
    return str(path.resolve()) if path.exists() else path_or_url


ACCESS_HELP = ("Who may read it (repeatable): user:NAME, group:NAME or public. Without it only admins can "
               "read the source (a warning says so; `cairn sources set NAME --access ...` grants it later).")


@app.command()
def index(ctx: typer.Context, path_or_url: str = typer.Argument(..., help="Local repository path or clone URL."),
          name: str | None = typer.Option(None, help=f"Source name: {NAME_RULE} (default: the repository's name)."),
          ref: str | None = typer.Option(None, help="Branch, tag or commit (default: HEAD / default branch)."),
          access: list[str] = typer.Option([], "--access", help=ACCESS_HELP),
          full: bool = typer.Option(False, help="Re-read everything, not only what changed."),
          token_env: str = typer.Option("", "--token-env", help="Environment variable holding the token for an "
                                        "http(s) clone URL (read at sync time, never stored)."),
          token_file: str = typer.Option("", "--token-file", help="File holding that token instead."),
          as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
          url: str | None = typer.Option(None, help="A running server (default: CAIRN_URL).")) -> None:
    """Index (or re-index incrementally) a git repository. On an existing source, changed options (access,
    ref, location, token reference) are applied first, as `cairn sources set` does; options left out keep
    their values. A private repository's token is given by reference: `--token-env VAR`, never in the URL.
    Without --access only admins can read the source. A new source whose first sync cannot start (no such
    repository, ref or host) is not kept."""
    from connectors.config import SourceConfigError, check_source_name, git_config

    settings: Settings = ctx.obj
    location = _location(path_or_url)
    source = name or _source_name(location)
    try:
        check_source_name(source)
        git_config(source, location, ref or "", token_env, token_file)
    except SourceConfigError as exc:
        fail(str(exc), USAGE, "" if name else "name the source with --name NAME")
    token = {k: v for k, v in (("token_env", token_env), ("token_file", token_file)) if v}
    principals = sorted(Access.of(*access).principals) if access else None
    client = remote(url, settings)
    if client:
        counts, partial, readers = _index_remote(client, source, location, ref, principals, full, as_json, token)
    else:
        counts, partial, readers = _index_local(settings, source, location, ref, principals, full, as_json, token)
    _print_summary(source, counts, as_json)
    _warn_admins_only(source, readers)  # after the sync: a source that failed to start is not kept
    _fail_if_partial(source, partial)


def _index_local(settings: Settings, source: str, location: str, ref: str | None, principals: list[str] | None,
                 full: bool, as_json: bool, token: dict[str, str]) -> tuple[dict, str | None, list[str]]:
    """The sync in this process: counts, the error of a partial sync (or None), who may read the source."""
    from connectors.base import ConnectorError
    from workers.jobs import run_sync_job
    from workers.outcome import SyncFailed

    with local_services(settings) as svc:
        created = _prepare_local(svc, source, location, ref, principals, as_json, token)
        try:
            with SyncProgress(err, enabled=not as_json, pending=_pending(svc, source)) as progress:
                counts = run_sync_job(svc, source, full=full, observe=progress.update).as_dict()
        except (ConnectorError, SyncFailed) as exc:
            if created:
                from workers.lifecycle import remove_source

                remove_source(svc, source)
            _sync_did_not_start(source, exc, created)
        last = svc.catalog.list_jobs(source=source, limit=1)
        row = svc.catalog.get_source(source)
        return (counts, last[0].error if last and last[0].state == "partial" else None,
                list(row.access) if row else [])


def _pending(svc: IndexServices, source: str) -> Callable[[], int]:
    """How many of the source's chunks still wait for embedding (the progress bar's total and ETA)."""
    return lambda: svc.catalog.pending_chunk_count(source)


def _sync_did_not_start(source: str, exc: Exception, created: bool) -> NoReturn:
    """The first sync of a new source failed outright: it was not kept, so the same command can be run
    again once the path, ref or token is right."""
    from api.cli_errors import CliError, explain

    known = explain(exc) or CliError(str(exc))
    then = ("nothing was kept: fix it and run the same command again" if created
            else f"or change the source: `cairn sources set {source} --location/--ref ...`")
    raise CliError(known.message, f"{known.hint}; {then}" if known.hint else then)


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
        err.print(f"[yellow]warning:[/yellow] source {source!r} has no access list: only admins will read it; "
                  f"grant access with `cairn sources set {source} --access group:NAME` (or --access public)",
                  soft_wrap=True, highlight=False)


def _prepare_local(svc: IndexServices, source: str, location: str, ref: str | None,
                   access: list[str] | None, quiet: bool, token: dict[str, str]) -> bool:
    """Register a new source (True), or apply changed options to an existing one (its ACL rewrite runs
    here; False)."""
    from api.cli_sources import apply_change_here

    row = svc.catalog.get_source(source)
    if row is None:
        from connectors.config import git_config

        svc.catalog.upsert_source(source, "git", git_config(source, location, ref or "", token.get("token_env", ""),
                                                             token.get("token_file", "")), access or [])
        return True
    existing = {"name": row.name, "kind": row.kind, "access": list(row.access), "ref": row.config.get("ref") or "",
                "location": row.config.get("location", ""), "token_env": row.config.get("token_env") or "",
                "token_file": row.config.get("token_file") or ""}
    body = _changed_options(existing, location, ref, access, token)
    if body:
        changed = apply_change_here(svc, source, body, quiet, sync=False)  # the sync follows
        err.print(f"source {source!r}: changed {', '.join(changed['changed'])}")
    return False


def _index_remote(client: CairnClient, source: str, location: str, ref: str | None, access: list[str] | None,
                  full: bool, quiet: bool, token: dict[str, str]) -> tuple[dict, str | None, list[str]]:
    """The sync on the server: counts, the error of a partial sync (or None), who may read the source."""
    from api.cli_sources import change_remotely

    existing = next((s for s in client.sources() if s["name"] == source), None)
    if existing is None:
        client.add_source({"name": source, "kind": "git", "location": location, "ref": ref or "",
                           "access": access or [], **token})
    else:
        body = _changed_options(existing, location, ref, access, token)
        if body:
            changed = change_remotely(client, source, body, quiet)
            err.print(f"source {source!r}: changed {', '.join(changed['changed'])}")
    job = watch_remote_job(client, client.reindex(source, full=full)["id"], err, enabled=not quiet)
    if job["state"] == "failed" and existing is None:
        client.remove_source(source)  # a new source whose first sync failed is not kept (as in-process)
        fail(f"job {job['id']} failed: {job.get('error')}", hint="nothing was kept: fix it and run the same "
                                                                "command again")
    if job["state"] not in ("succeeded", "partial"):
        fail(f"job {job['id']} {job['state']}: {job.get('error')}", hint=f"`cairn jobs show {job['id'][:8]}` "
                                                                        "has the details")
    readers = access if access is not None else (existing or {}).get("access") or []
    return job["counts"], (job.get("error") or "") if job["state"] == "partial" else None, readers


def _print_summary(source: str, counts: dict, as_json: bool) -> None:
    keys = ("files_seen", "files_changed", "files_deleted", "files_skipped", "chunks_embedded",
            "chunks_written", "seconds")
    summary = {"source": source} | {k: counts.get(k, 0) for k in keys}
    if as_json:
        print(json.dumps(summary))
    else:
        out.print(" ".join(f"{k}={v}" for k, v in summary.items()), soft_wrap=True)


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
    who = asker(as_user, group, client)
    if client:
        body = client.search(query, limit, source, path_prefix=path, languages=language, kinds=kind)
        results = [{"source": h["source"], "path": h["path"], "start_line": h["start_line"],
                    "end_line": h["end_line"], "symbol": h["symbol"], "score": h["score"], "snippet": h["snippet"]}
                   for h in body["hits"]]
        abstained = bool(body.get("abstained"))
    else:
        from retrieval.searcher import build_searcher

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


@app.command()
def locate(ctx: typer.Context, text: str = typer.Argument(..., help="The task or the bug report (tracebacks, paths "
                                                              "and identifiers help)."),
           limit: int = typer.Option(10, min=1, max=100), source: list[str] = typer.Option([], "--source"),
           path: str = typer.Option("", help="Only under this path prefix."),
           language: list[str] = typer.Option([], "--language"),
           budget: float = typer.Option(2.0, min=0.01, max=30.0, help="Time budget in seconds."),
           as_user: str | None = typer.Option(None, help="In-process only: locate as this user instead of "
                                                          "as the operator (who reads everything)."),
           group: list[str] = typer.Option([], "--group", help="Groups of --as-user."),
           as_json: bool = typer.Option(False, "--json"), url: str | None = typer.Option(None)) -> None:
    """The files a task or a bug report needs, with line ranges and the evidence for each (no LLM)."""
    from retrieval.permissions import Scope

    settings: Settings = ctx.obj
    client = remote(url, settings)
    who = asker(as_user, group, client)
    if client:
        body = client.locate(text, limit, source, path_prefix=path, languages=language, budget_seconds=budget)
    else:
        from retrieval.history import HistoryIndex
        from retrieval.locate import Locator
        from retrieval.searcher import build_searcher

        scope = Scope(sources=tuple(source), path_prefixes=(path,) if path else (), languages=tuple(language))
        with local_services(settings) as svc:
            searcher = build_searcher(svc)
            history = HistoryIndex(svc.catalog, svc.fulltext, settings, svc.pipeline.secrets)
            try:
                found = Locator.over(searcher, history).locate(text, who, scope, limit=limit, budget=budget)
            except ValueError as exc:
                fail(str(exc), code=2)
            finally:
                searcher.close()
        body = {"files": [vars(f) | {"evidence": list(f.evidence)} for f in found.files], "tokens": found.tokens,
                "truncated": found.truncated, "steps": found.steps}
    results = [{k: f[k] for k in ("source", "path", "start_line", "end_line", "symbol", "score", "evidence", "tokens")}
               for f in body["files"]]
    if as_json:
        print(json.dumps({"results": results, "tokens": body["tokens"], "truncated": body["truncated"],
                          "steps": body["steps"]}))
        return
    if not results:
        out.print("no files found")
    for r in results:
        out.print(f"[bold]{r['source']}[/bold] {r['path']}:{r['start_line']}-{r['end_line']} "
                  f"[dim]{r['symbol']}[/dim] ({r['score']:.3f})")
        for why in r["evidence"]:
            out.print(f"  - {why}", markup=False, highlight=False, soft_wrap=True)
    if body["truncated"]:
        out.print(f"[dim]the time budget ended the search after: {', '.join(body['steps'])}[/dim]")


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
        rows = client.sources()
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
    print_sources(rows)


def print_sources(rows: list[dict]) -> None:
    """One line per source, 80 columns: who may read it, counts, when it last synced, where it comes from."""
    if not rows:
        err.print(NO_SOURCES, soft_wrap=True)
        return
    table = CompactTable(Col("name"), Col("kind", fixed=True), Col("state", fixed=True), Col("access"),
                         Col("docs", fixed=True, right=True), Col("chunks", fixed=True, right=True),
                         Col("synced", fixed=True), Col("location"))
    for r in rows:
        table.add_row(r["name"], r["kind"], r["state"], describe_access(r), r["documents"], r["chunks"],
                      human_time(r.get("last_success_at")), r.get("location") or "-")
    table.print(out)


def describe_access(source: dict) -> str:
    """`admins only` for an empty access list (the easy mistake), `from source` where the source's own
    permissions decide, else the principals; `-` when the caller may not see it."""
    from connectors.registry import access_from_source

    if source.get("access") is None:
        return "-"
    if access_from_source(source["kind"]):
        return "from source"
    return ", ".join(source["access"]) or ADMINS_ONLY


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
        if not names:
            fail(NO_SOURCES)
        for n in names:
            if svc.catalog.get_source(n) is None:
                no_source(n)
            with SyncProgress(err, enabled=not as_json, pending=_pending(svc, n)) as progress, \
                    _interrupt_cancels() as stop:
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
    names = names or [s["name"] for s in client.sources()]
    job_ids = [client.reindex(n, full=full, since=since)["id"] for n in names]
    finished = watch_jobs(client.job, job_ids, err, enabled=not as_json)
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
             as_json: bool = typer.Option(False, "--json"),
             url: str | None = typer.Option(None, help="A running server (default: CAIRN_URL); the queries then "
                                                        "run as CAIRN_TOKEN's user.")) -> None:
    """Measure retrieval on your own queries: Recall@1/5/10, MRR and the misses. In-process the queries run
    as the operator (who reads everything); against a server, as the token's user."""
    from api.client import RemoteSearcher
    from retrieval.evaluation import evaluate_queries, load_queries
    from retrieval.searcher import build_searcher

    settings: Settings = ctx.obj
    try:
        queries = load_queries(file)
    except ValueError as exc:
        fail(str(exc), USAGE, "give a JSONL file of {query, source, expected_paths} lines (`cairn feedback "
                              "export` writes one)")
    client = remote(url, settings)
    if client:
        report = evaluate_queries(RemoteSearcher(client), OPERATOR, queries, limit=max(limit, 10))
    else:
        with local_services(settings) as svc:
            searcher = build_searcher(svc)
            try:
                report = evaluate_queries(searcher, OPERATOR, queries, limit=max(limit, 10))
            finally:
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
        fail(f"no data directory at {settings.data_dir}", hint="check CAIRN_DATA_DIR (or CAIRN_DATABASE_URL)")
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
    """Serve the API (and own the embedded index) until interrupted. With a broker and Qdrant Edge the
    node owns the index or is an API replica of the node that does (api/node.py)."""
    import uvicorn

    from api.app import create_app
    from api.cli_jobs import local_catalog
    from api.node import NodeRefused, ServeNode, clustered
    from api.oidc import OIDCError
    from api.scim import ScimConfigError

    settings: Settings = ctx.obj.for_serving()  # vector work off the serving GIL (indexer/stores/edge_process.py)
    configure_logging(logging.INFO)  # a server logs at INFO: one line per request (api.observability)
    local_catalog(settings).engine.dispose()  # upgraded (embedded) or current, or a clear exit before binding
    host, port = host or settings.host, port or settings.port

    def build(api: FastAPI) -> uvicorn.Server:
        # No access log (it prints whole URLs: search text, a webhook's ?secret=; the request line of
        # api.observability replaces it), and no logging config of uvicorn's own: its lines go through ours.
        server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="info", access_log=False,
                                               log_config=None, timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                                               timeout_keep_alive=settings.keep_alive_seconds))
        # uvicorn has no hook for its signal handling: its handler method is replaced on this instance (mypy
        # rejects assigning to a method, and a Callable type cannot name the `frame` keyword)
        server.handle_exit = handler(_graceful_exit(server, api))  # type: ignore[method-assign,assignment]
        return server

    node = ServeNode(settings, host, port) if clustered(settings) else None
    handler = node.on_signal if node is not None else _as_is
    try:
        if node is None:
            server = build(create_app(settings))
            server.run()
            started = server.started
        else:
            started = node.run(build)
    except NodeRefused as refused:
        fail(str(refused))
    except (OIDCError, ScimConfigError) as exc:  # an unreadable client secret or SCIM secret: say which
        fail(str(exc))
    if not started:
        raise typer.Exit(3)


def _as_is(handle: Callable[[int, FrameType | None], None]) -> Callable[[int, FrameType | None], None]:
    return handle


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


def existing_catalog(settings: Settings) -> str | None:
    """The catalog's URL, or None on a machine where nothing was ever indexed or created (no SQLite file):
    read-only commands then say so instead of failing to open it."""
    url = settings.catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return url


def _token_store(settings: Settings) -> Any:
    from api.cli_jobs import local_catalog
    from api.tokens import TokenStore

    return TokenStore(local_catalog(settings).engine) if existing_catalog(settings) else None


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (never the tokens themselves); ids are shortened to a unique start, which `revoke` takes."""
    store = _token_store(ctx.obj)
    rows = store.list() if store else []
    now = dt.datetime.now(dt.UTC)
    data: list[dict[str, Any]] = [{"id": t.id, "user": t.user, "groups": list(t.groups), "admin": t.admin, "name": t.name,
             "expires_at": t.expires_at.isoformat() if t.expires_at else None, "revoked": t.revoked_at is not None,
             "expired": t.expires_at is not None and t.expires_at <= now}
            for t in rows]
    if as_json:
        print(json.dumps(data))
        return
    if not data:
        err.print(f"no tokens in {ctx.obj.data_dir}: `cairn tokens create --user NAME` makes one", soft_wrap=True)
        return
    table = CompactTable(Col("id", fixed=True), Col("user"), Col("groups"), Col("admin", fixed=True), Col("name"),
                         Col("expires", fixed=True), Col("state", fixed=True))
    ids = short_ids(d["id"] for d in data)
    for d in data:
        state = "revoked" if d["revoked"] else "expired" if d["expired"] else "active"
        table.add_row(ids[d["id"]], d["user"], ",".join(d["groups"]) or "-", "yes" if d["admin"] else "no",
                      d["name"] or "-", human_time(d["expires_at"]) if d["expires_at"] else "never", state)
    table.print(out)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: str = typer.Argument(
        ..., help="The token's id, or any unique start of it (as `cairn tokens list` shows).")) -> None:
    """Revoke a token by its id (or a unique start of it)."""
    store = _token_store(ctx.obj)
    if store is None:
        fail(f"no tokens in {ctx.obj.data_dir}", hint="check CAIRN_DATA_DIR; `cairn tokens create` makes tokens")
    token_id = resolve_id(token_id, [t.id for t in store.list()], "token", "cairn tokens list")
    if not store.revoke(token_id):
        fail(f"token {token_id} is already revoked")
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
    url = existing_catalog(settings)
    if url is None:
        fail(f"no index in {settings.data_dir}", hint="check CAIRN_DATA_DIR, or index something first (`cairn index`)")
    status = generation_status(make_engine(url))
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
