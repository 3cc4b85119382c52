"""`cairn sources add gitlab|jira|confluence` and `cairn sources load FILE.yaml`: register remote sources."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from api.cli_errors import USAGE, fail, no_source
from connectors.config import NAME_RULE, SourceConfigError, load_sources
from indexer.settings import Settings

sources_app = typer.Typer(help="List sources (no subcommand), add GitLab/Jira/Confluence sources, or load a "
                               "sources YAML file.")
add_app = typer.Typer(no_args_is_help=True, help="Add (or update) a GitLab, Jira or Confluence source. "
                                                "Credentials are referenced (--token-env/--token-file), never stored.")
sources_app.add_typer(add_app, name="add")
out = Console()
err = Console(stderr=True)

# Options every remote source takes, as (parameter, CLI help) → config keys of the same name.
NAME = typer.Option(..., "--name", help=f"Source name: {NAME_RULE}.")
URL = typer.Option(..., "--url", help="Base URL of the service (Confluence Cloud: https://SITE.atlassian.net/wiki).")
TOKEN_ENV = typer.Option("", "--token-env", help="Environment variable holding the token (read at sync time).")
TOKEN_FILE = typer.Option("", "--token-file", help="File holding the token (read at sync time).")
USERNAME = typer.Option("", "--username", help="Login/e-mail for basic auth (Atlassian Cloud).")
ACCESS = typer.Option([], "--access", help="Principals used when the source gives none (repeatable).")
RATE = typer.Option(0.0, "--requests-per-second", help="Request rate limit (0 = none).")
SYNC = typer.Option(False, "--sync", help="Sync it now (in this process).")
AS_JSON = typer.Option(False, "--json", help="Print the stored source as JSON.")
INTERVAL = typer.Option("", "--interval", help="How often the scheduler syncs it (e.g. 15m, 1h, 1d; 0 = never); "
                                              "default: CAIRN_SYNC_INTERVAL_SECONDS.")


def _fail(message: str, code: int = USAGE, hint: str = "") -> NoReturn:
    fail(message, code, hint)


def _register(ctx: typer.Context, data: dict[str, Any], sync: bool, as_json: bool, interval: str = "") -> None:
    """Validate and store the source the way `POST /v1/sources` does (api/new_sources.py)."""
    from api.new_sources import parse_interval, remote_source

    try:
        config = remote_source(data)
        seconds = parse_interval(interval) if interval else None
    except SourceConfigError as exc:
        _fail(str(exc))
    _store(ctx.obj, [config], seconds)
    summary = {"name": config.name, "kind": config.kind, "location": config.location(),
               "access": config.default_access}
    if as_json:
        print(json.dumps(summary))
    else:
        out.print(f"source [bold]{config.name}[/bold] ({config.kind}) saved: {config.location()}")
    if sync:
        _sync(ctx.obj, config.name, as_json)


def _store(settings: Settings, configs: list[Any], interval_seconds: int | None = None) -> Any:
    """Write to the catalog only (no index stores), so this works while a server owns the index; an interval
    of None leaves the schedule alone."""
    from api.cli_jobs import local_catalog
    from api.new_sources import UNSET, save_remote

    catalog = local_catalog(settings)
    for config in configs:
        try:
            save_remote(catalog, config, UNSET if interval_seconds is None else interval_seconds)
        except SourceConfigError as exc:
            _fail(str(exc))
    return catalog


def _sync(settings: Settings, name: str, as_json: bool) -> None:
    from api.progress import SyncProgress
    from indexer.services import IndexServices
    from workers.jobs import run_sync_job

    services = IndexServices.open(settings)
    try:
        with SyncProgress(err, enabled=not as_json, pending=lambda: services.catalog.pending_chunk_count(name)) \
                as progress:
            counts = run_sync_job(services, name, observe=progress.update).as_dict()
    finally:
        services.close()
    if as_json:
        print(json.dumps({"source": name, **counts}))
    else:
        out.print(" ".join(f"{k}={v}" for k, v in counts.items()))


@add_app.command("gitlab")
def add_gitlab(ctx: typer.Context, name: str = NAME, url: str = URL, token_env: str = TOKEN_ENV,
               token_file: str = TOKEN_FILE, group: str = typer.Option("", "--group", help="Group full path."),
               project: list[str] = typer.Option([], "--project", help="Project path (repeatable), not --group."),
               ref: str = typer.Option("", "--ref", help="Branch/tag to index (default: each default branch)."),
               internal_principal: str = typer.Option("", "--internal-principal",
                                                      help="Principal for every signed-in user, e.g. group:org-all."),
               no_code: bool = typer.Option(False, "--no-code"), no_issues: bool = typer.Option(False, "--no-issues"),
               no_merge_requests: bool = typer.Option(False, "--no-merge-requests"),
               access: list[str] = ACCESS, requests_per_second: float = RATE, sync: bool = SYNC,
               as_json: bool = AS_JSON, interval: str = INTERVAL) -> None:
    """GitLab: a group's projects (or --project ...): code, issues and merge requests."""
    _register(ctx, {"kind": "gitlab", "name": name, "url": url, "token_env": token_env, "token_file": token_file,
                    "group": group, "projects": project, "ref": ref, "internal_principal": internal_principal,
                    "code": not no_code, "issues": not no_issues, "merge_requests": not no_merge_requests,
                    "access": access, "requests_per_second": requests_per_second}, sync, as_json, interval)


def _access_map(values: list[str]) -> dict[str, list[str]]:
    """`KEY=principal` pairs (repeatable) → {KEY: [principals]}."""
    mapping: dict[str, list[str]] = {}
    for value in values:
        key, sep, principal = value.partition("=")
        if not sep or not key.strip():
            _fail(f"--project-access/--space-access expects KEY=PRINCIPAL, not {value!r}")
        mapping.setdefault(key.strip(), []).append(principal.strip())
    return mapping


@add_app.command("jira")
def add_jira(ctx: typer.Context, name: str = NAME, url: str = URL, token_env: str = TOKEN_ENV,
             token_file: str = TOKEN_FILE, username: str = USERNAME,
             project: list[str] = typer.Option([], "--project", help="Project key (repeatable)."),
             jql: str = typer.Option("", "--jql", help="A JQL filter (no ORDER BY), alone or narrowing projects."),
             deployment: str = typer.Option("", "--deployment", help="cloud or datacenter (default: by host)."),
             permissions: str = typer.Option("source", "--permissions", help="source (Jira's) or config."),
             project_access: list[str] = typer.Option([], "--project-access", help="KEY=PRINCIPAL (repeatable)."),
             custom_field: list[str] = typer.Option([], "--custom-field", help="FIELD_ID=Label (repeatable)."),
             access: list[str] = ACCESS, requests_per_second: float = RATE, sync: bool = SYNC,
             as_json: bool = AS_JSON, interval: str = INTERVAL) -> None:
    """Jira: issues of projects or of a JQL, with comments."""
    fields = {k: v[0] for k, v in _access_map(custom_field).items()}
    _register(ctx, {"kind": "jira", "name": name, "url": url, "token_env": token_env, "token_file": token_file,
                    "username": username, "projects": project, "jql": jql, "deployment": deployment,
                    "permissions": permissions, "project_access": _access_map(project_access),
                    "custom_fields": fields, "access": access, "requests_per_second": requests_per_second},
              sync, as_json, interval)


@add_app.command("confluence")
def add_confluence(ctx: typer.Context, name: str = NAME, url: str = URL, token_env: str = TOKEN_ENV,
                   token_file: str = TOKEN_FILE, username: str = USERNAME,
                   space: list[str] = typer.Option([], "--space", help="Space key (repeatable)."),
                   no_blogposts: bool = typer.Option(False, "--no-blogposts"),
                   deployment: str = typer.Option("", "--deployment", help="cloud or datacenter (default: by host)."),
                   permissions: str = typer.Option("source", "--permissions", help="source (Confluence's) or config."),
                   space_access: list[str] = typer.Option([], "--space-access", help="KEY=PRINCIPAL (repeatable)."),
                   timezone: str = typer.Option("UTC", "--timezone", help="Zone CQL dates are read in."),
                   access: list[str] = ACCESS, requests_per_second: float = RATE, sync: bool = SYNC,
                   as_json: bool = AS_JSON, interval: str = INTERVAL) -> None:
    """Confluence: pages and blog posts of spaces."""
    _register(ctx, {"kind": "confluence", "name": name, "url": url, "token_env": token_env, "token_file": token_file,
                    "username": username, "spaces": space, "blogposts": not no_blogposts, "deployment": deployment,
                    "permissions": permissions, "space_access": _access_map(space_access),
                    "timezone": timezone, "access": access, "requests_per_second": requests_per_second},
              sync, as_json, interval)


@sources_app.command("load")
def load(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Sources YAML file."),
         sync: bool = SYNC, as_json: bool = AS_JSON) -> None:
    """Add or update every source of a YAML file (`sources: [{name, kind, url, token_env, ...}]`)."""
    try:
        configs = load_sources(file)
    except SourceConfigError as exc:
        _fail(str(exc))
    _store(ctx.obj, configs)
    rows = [{"name": c.name, "kind": c.kind, "location": c.location()} for c in configs]
    if as_json:
        print(json.dumps(rows))
    else:
        for row in rows:
            out.print(f"source [bold]{row['name']}[/bold] ({row['kind']}) saved: {row['location']}")
    for config in configs if sync else []:
        _sync(ctx.obj, config.name, as_json)



# -- changing and removing a source (in-process, or a server with --url) ---------------------------

SERVER = typer.Option(None, "--url", help="A running server (default: CAIRN_URL).")


def _client(url: str | None, settings: Settings) -> Any:
    from api.client import CairnClient

    target = url or settings.url
    return CairnClient(target, settings.token) if target else None


def _services(settings: Settings) -> Any:
    from indexer.services import IndexServices
    from indexer.stores import StoreError

    try:
        return IndexServices.open(settings)
    except StoreError as exc:
        _fail(str(exc), 1, "if a Cairn server owns this data directory, give --url (or set CAIRN_URL)")


def change_body(access: list[str], no_access: bool, ref: str | None, location: str | None, interval: str,
                token_env: str, token_file: str) -> dict[str, Any]:
    """The PATCH body of the options given (an option left out is not changed)."""
    body: dict[str, Any] = {"access": [] if no_access else access} if access or no_access else {}
    given = {"ref": ref, "location": location, "interval": interval or None, "token_env": token_env or None,
             "token_file": token_file or None}
    return body | {k: v for k, v in given.items() if v is not None}


def change_locally(settings: Settings, name: str, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """`PATCH /v1/sources/{name}` in this process: the change, then its ACL rewrite and sync, here."""
    services = _services(settings)
    try:
        return apply_change_here(services, name, body, as_json)
    finally:
        services.close()


def apply_change_here(services: Any, name: str, body: dict[str, Any], as_json: bool,
                      sync: bool = True) -> dict[str, Any]:
    """The change on an open index: catalog, then the ACL rewrite, then (with `sync`) the sync it needs."""
    from api.errors import BadRequest
    from api.progress import SyncProgress
    from api.source_changes import SourceChange, apply_change, plan_change
    from indexer.models import AccessError
    from workers.jobs import run_sync_job
    from workers.lifecycle import ACCESS_JOB, run_access_job

    try:
        plan = plan_change(services.catalog, name, SourceChange(**body))
    except LookupError:
        no_source(name)
    except (BadRequest, AccessError) as exc:
        _fail(str(exc))
    apply_change(services.catalog, plan)
    result: dict[str, Any] = {"source": name, "changed": plan.changed}
    if plan.rewrite_access:
        job_id = services.catalog.create_job(None, name, ACCESS_JOB)
        result["access"] = run_access_job(services, name, job_id)
    if plan.sync and sync:
        with SyncProgress(err, enabled=not as_json, pending=lambda: services.catalog.pending_chunk_count(name)) \
                as progress:
            result["sync"] = run_sync_job(services, name, full=plan.sync == "full", observe=progress.update).as_dict()
    return result


def change_remotely(client: Any, name: str, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """PATCH on the server, then follow the jobs it started until they end (a failed one fails the command)."""
    from api.progress import watch_jobs

    answer = client.change_source(name, body)
    jobs = watch_jobs(client.job, [j["id"] for j in answer["jobs"]], err, enabled=not as_json) \
        if answer["jobs"] else []
    failed = [j for j in jobs if j["state"] != "succeeded"]
    if failed:
        _fail(f"job {failed[0]['id']} ({failed[0]['kind']}) {failed[0]['state']}: {failed[0].get('error')}", 1)
    return {"source": name, "changed": answer["changed"], "jobs": {j["kind"]: j["counts"] for j in jobs}}


@sources_app.command("set")
def set_source(ctx: typer.Context, name: str = typer.Argument(..., help="Source to change."),
               access: list[str] = typer.Option([], "--access", help="Who may read it (repeatable; replaces the "
                                                "list). A git source's documents are rewritten at once."),
               no_access: bool = typer.Option(False, "--no-access", help="Admins only."),
               ref: str | None = typer.Option(None, "--ref", help="Branch, tag or commit (git, GitLab)."),
               location: str | None = typer.Option(None, "--location", help="Repository path or clone URL (git); "
                                                   "base URL (remote sources)."),
               interval: str = INTERVAL, token_env: str = TOKEN_ENV, token_file: str = TOKEN_FILE,
               as_json: bool = AS_JSON, url: str | None = SERVER) -> None:
    """Change a source's access, ref, location, schedule or credential reference; only the options given change."""
    if access and no_access:
        _fail("give --access or --no-access, not both")
    if location is not None and "://" not in location and Path(location).expanduser().exists():
        location = str(Path(location).expanduser().resolve())
    body = change_body(access, no_access, ref, location, interval, token_env, token_file)
    if not body:
        _fail("nothing to change: give --access, --no-access, --ref, --location, --interval, --token-env or "
              "--token-file")
    client = _client(url, ctx.obj)
    result = change_remotely(client, name, body, as_json) if client else change_locally(ctx.obj, name, body, as_json)
    if as_json:
        print(json.dumps(result))
    elif result["changed"]:
        out.print(f"source [bold]{name}[/bold]: changed {', '.join(result['changed'])}")
    else:
        out.print(f"source [bold]{name}[/bold]: already as asked, nothing changed")


@sources_app.command("remove")
def remove_source(ctx: typer.Context, name: str = typer.Argument(..., help="Source to remove."),
                  yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
                  as_json: bool = AS_JSON, url: str | None = SERVER) -> None:
    """Remove a source: its jobs are cancelled and every document leaves the index and the catalog."""
    if not yes and not typer.confirm(f"Remove source {name!r} and everything indexed from it?"):
        _fail("not removed", 1)
    client = _client(url, ctx.obj)
    removed = client.remove_source(name)["removed"] if client else _remove_locally(ctx.obj, name)
    if as_json:
        print(json.dumps({"source": name, "removed": removed}))
    else:
        out.print(f"source [bold]{name}[/bold] removed: {removed.get('documents', 0)} documents, "
                  f"{removed.get('chunks', 0)} chunks")


def _remove_locally(settings: Settings, name: str) -> dict[str, int]:
    from workers.lifecycle import remove_source as remove

    services = _services(settings)
    try:
        catalog = services.catalog
        if catalog.get_source(name) is None:
            no_source(name)
        # No server owns this index (its stores opened here), so no job of the source can be running.
        for job in catalog.list_jobs(source=name, state=("queued", "running", "cancelling"), limit=10_000):
            catalog.update_job(job.id, state="cancelled", error="its source was removed")
        return remove(services, name)
    finally:
        services.close()


@sources_app.command("webhook")
def webhook(ctx: typer.Context, name: str = typer.Argument(..., help="Source name."),
            rotate: bool = typer.Option(False, "--rotate", help="Replace the secret (the old one stops working)."),
            url: str | None = typer.Option(None, "--url", help="A running server (default: CAIRN_URL)."),
            as_json: bool = AS_JSON) -> None:
    """Print the webhook URL to configure in GitLab, Jira or Confluence, and its secret once (kept hashed)."""
    from api.client import CairnClient
    from api.webhooks import make_secret, webhook_url

    settings: Settings = ctx.obj
    target = url or settings.url
    if target:
        shown = CairnClient(target, settings.token).webhook(name, rotate)
    else:
        from api.errors import BadRequest, NotFound

        catalog = _store(settings, [])
        try:
            row, secret = make_secret(catalog, name, rotate)
        except NotFound:
            no_source(name)
        except BadRequest as exc:
            _fail(str(exc), code=1)
        base = settings.public_url or f"http://{settings.host}:{settings.port}"
        shown = {"source": name, "kind": row.kind, "url": webhook_url(base, name, row.kind, secret),
                 "secret": secret, "created": secret is not None}
    if as_json:
        print(json.dumps(shown))
        return
    out.print(f"URL:    {shown['url']}", soft_wrap=True)
    if shown["secret"] is None:
        out.print("secret: already set and not shown again (only its hash is kept); --rotate makes a new one")
    elif shown["kind"] == "gitlab":
        out.print(f"secret: {shown['secret']}  (GitLab: the webhook's Secret token)", soft_wrap=True)
    else:
        out.print(f"secret: {shown['secret']}  (in the URL; also paste it as the webhook's Secret so "
                  "deliveries are signed)", soft_wrap=True)
    if shown["secret"] is not None:
        out.print("It is shown only this once.")
