"""`cairn users`: the people the IdP signed in and their linked accounts in each identity realm, on the
catalog of this data directory or, with `--url`/CAIRN_URL and an admin CAIRN_TOKEN, on a running server."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from api.audit import AuditLog
from api.client import CairnClient, RemoteError
from api.errors import NotFound
from api.users import UserOut, all_users, link_user, show_user, unlink_user
from indexer.identity.people import AmbiguousUser, UnknownUser
from indexer.identity.resolver import IdentityResolver
from indexer.identity.store import IdentityStore, LinkConflict
from indexer.models import AccessError, Principal
from indexer.settings import Settings

users_app = typer.Typer(no_args_is_help=True, help="List users, show what they hold, link them to their "
                                                   "accounts in GitLab, Atlassian, ...")
out = Console()
err = Console(stderr=True)

USER = typer.Argument(..., help="The user: OIDC subject, username or verified email.")
REALM = typer.Option(..., "--realm", help="Identity realm: gitlab, atlassian, or another source's realm.")
URL = typer.Option(None, "--url", help="A running server (default: CAIRN_URL; needs an admin CAIRN_TOKEN).")
AS_JSON = typer.Option(False, "--json", help="Print JSON.")
REFUSED = (UnknownUser, AmbiguousUser, LinkConflict, AccessError, NotFound, RemoteError)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Refusals (unknown or ambiguous user, an account linked to someone else, a bad realm, an
    unreachable server) end the command with one line, never a traceback."""
    try:
        yield
    except REFUSED as exc:
        _fail(str(exc))


@dataclass(frozen=True)
class Local:
    """This data directory's catalog (which need not be free: only the catalog is opened); changes are
    audited as the CLI operator's."""

    identity: IdentityResolver
    audit: AuditLog
    who: Principal


def _run(ctx: typer.Context, url: str | None, local: Callable[[Local], Any],
         remote: Callable[[CairnClient], Any]) -> Any:
    settings: Settings = ctx.obj
    target = url or settings.url
    with _refusals():
        if target:
            return remote(CairnClient(target, settings.token))
        return local(_local(settings))


def _local(settings: Settings) -> Local:
    from api.cli import OPERATOR
    from api.cli_jobs import local_catalog

    url = settings.catalog_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        _fail(f"no index in {settings.data_dir} (set CAIRN_DATA_DIR, or --url for a running server)")
    engine = local_catalog(settings).engine  # upgraded (embedded) or checked current (PostgreSQL)
    return Local(IdentityResolver(IdentityStore(engine), settings.admin_groups, 0), AuditLog(engine), OPERATOR)


def _links(user: dict) -> str:
    return ", ".join(f"{k['realm']}:{k['account']}" + (f" ({k['display']})" if k["display"] else "")
                     for k in user["links"]) or "-"


def _print_user(user: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(user))
        return
    state = "active" if user["active"] else "[red]deactivated[/red]"
    out.print(f"[bold]{user['username'] or user['subject']}[/bold] subject={user['subject']} "
              f"email={user['email'] or '-'}{'' if user['email_verified'] else ' (unverified)'} {state}"
              f"{' admin' if user['admin'] else ''}")
    out.print(f"IdP groups at last sign-in: {', '.join(user['groups']) or '-'}")
    out.print(f"links: {_links(user)}")
    if user.get("principals") is not None:
        out.print("principals now: " + (", ".join(user["principals"]) or "none (deactivated)"))


def _dump(user: UserOut) -> dict:
    return user.model_dump()


@users_app.command("list")
def users_list(ctx: typer.Context, url: str | None = URL, as_json: bool = AS_JSON) -> None:
    """Every user the IdP signed in, with their linked accounts."""
    users = _run(ctx, url, lambda here: [_dump(u) for u in all_users(here.identity)], lambda c: c.users())
    if as_json:
        print(json.dumps(users))
        return
    table = Table("subject", "username", "email", "active", "admin", "links")
    for u in users:
        table.add_row(u["subject"], u["username"], u["email"], str(u["active"]), str(u["admin"]), _links(u))
    out.print(table)


@users_app.command("show")
def users_show(ctx: typer.Context, user: str = USER, url: str | None = URL, as_json: bool = AS_JSON) -> None:
    """A user's links and the principals they resolve to now (with their last sign-in's IdP groups)."""
    _print_user(_run(ctx, url, lambda here: _dump(show_user(here.identity, user)), lambda c: c.user(user)),
                as_json)


@users_app.command("link")
def users_link(ctx: typer.Context, user: str = USER, realm: str = REALM,
               account: str = typer.Option(..., "--account", help="GitLab user id, Atlassian Data Center user "
                                           "key or Cloud accountId."),
               display: str = typer.Option("", "--display", help="A name to show for the account."),
               url: str | None = URL, as_json: bool = AS_JSON) -> None:
    """Link a user to their account in a realm (replacing an earlier one there). An admin's link is never
    replaced by a match by email; an account already linked to another user is refused."""
    found = _run(ctx, url, lambda here: _dump(link_user(here.identity, here.audit, here.who, user, realm, account,
                                                        display)),
                 lambda c: c.link_user(user, realm, account, display))
    _print_user(found, as_json)


@users_app.command("unlink")
def users_unlink(ctx: typer.Context, user: str = USER, realm: str = REALM, url: str | None = URL,
                 as_json: bool = AS_JSON) -> None:
    """Remove a user's link in a realm: they stop holding that account's principals."""
    _print_user(_run(ctx, url, lambda here: _dump(unlink_user(here.identity, here.audit, here.who, user, realm)),
                     lambda c: c.unlink_user(user, realm)), as_json)
