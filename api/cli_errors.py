"""How the `cairn` command fails: one line saying what is wrong and one saying what to do, exit code 2 for
a usage mistake and 1 for a failure; never a traceback unless `-v` asked for it.

Every command of the root group runs inside `CairnGroup.invoke`, so a command added later gets the same
treatment without doing anything: raise `CliError` (through `fail`) for a mistake it can name, and let the
typed errors of the lower packages through; `explain` turns those into a message and a hint."""
from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

err = Console(stderr=True)
USAGE = 2  # the command was asked something it cannot do as given
FAILURE = 1  # the command was fine but the work failed
VERBOSE = "cairn.verbose"  # key of ctx.meta set by the root callback
VERBOSE_FLAGS = ("-v", "--verbose")
TRACE_HINT = "run it again with -v for the traceback (`cairn -v ...`)"


class CliError(Exception):
    """A failure the command can explain: what is wrong (`message`) and what to do about it (`hint`)."""

    def __init__(self, message: str, hint: str = "", code: int = FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def fail(message: str, code: int = FAILURE, hint: str = "") -> NoReturn:
    """Stop the command: the error line (and hint) are printed by `CairnGroup`, then it exits with `code`."""
    raise CliError(message, hint, code)


def no_source(name: str) -> NoReturn:
    fail(f"no source named {name!r}", FAILURE, "`cairn sources` lists them")


@dataclass(frozen=True)
class Known:
    """How a typed error of the lower packages reads at the terminal."""

    code: int
    hint: str = ""


def _known() -> dict[type[Exception], Known]:
    """Built on first use: importing every package's errors at start-up would slow `cairn --help`."""
    from api.client import RemoteError
    from connectors.base import AuthFailed, ConnectorError, RefNotFound, SourceNotFound, Unavailable
    from connectors.config import SourceConfigError
    from indexer.catalog.catalog import CatalogError
    from indexer.embedding import EmbeddingError
    from indexer.models import AccessError
    from indexer.stores import StoreError
    from workers.outcome import SyncFailed

    # Order matters: the first class the error is an instance of wins (subclasses before their bases).
    return {
        SourceNotFound: Known(FAILURE, "give the path of a git repository (a folder holding .git) or a clone URL"),
        RefNotFound: Known(FAILURE, "give --ref a branch, tag or commit the repository has "
                                    "(`git ls-remote LOCATION` lists them)"),
        AuthFailed: Known(FAILURE, "give the token by reference: --token-env VAR or --token-file FILE"),
        Unavailable: Known(FAILURE, "check the URL and the network, then run the command again"),
        ConnectorError: Known(FAILURE),
        SyncFailed: Known(FAILURE, "`cairn jobs` and `cairn jobs show ID` say what failed"),
        AccessError: Known(USAGE, "--access takes public, user:NAME or group:NAME (repeatable)"),
        SourceConfigError: Known(USAGE),
        RemoteError: Known(FAILURE),
        StoreError: Known(FAILURE, "if a Cairn server owns this data directory, stop it or give the command "
                                   "--url (or set CAIRN_URL)"),
        CatalogError: Known(FAILURE),
        EmbeddingError: Known(FAILURE, "check CAIRN_EMBEDDING_MODEL, or run `cairn model prepare`"),
        LookupError: Known(FAILURE),
    }


def explain(exc: BaseException) -> CliError | None:
    """The message and hint for an error a user can cause; None for anything else (a bug, most likely)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ValidationError):
        return _bad_settings(exc)
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        return CliError(f"cannot open the catalog database: {exc.orig}", "check CAIRN_DATA_DIR (or "
                        "CAIRN_DATABASE_URL and that the database is up)")
    if isinstance(exc, OSError) and exc.filename is not None:
        return CliError(f"{exc.strerror}: {exc.filename}", "check the path and its permissions")
    if isinstance(exc, KeyError | IndexError):
        return None  # LookupErrors, but a program's mistake rather than a name the user gave
    for cls, known in _known().items():
        if isinstance(exc, cls):
            hint = getattr(exc, "hint", "") or known.hint
            return CliError(str(exc).strip() or type(exc).__name__, hint, known.code)
    return None


def _bad_settings(exc: ValidationError) -> CliError:
    """A CAIRN_* environment variable (or .env entry) Settings refused: name the variable."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    return CliError(f"bad setting CAIRN_{field.upper()}: {first['msg']}",
                    "fix that environment variable (docs/configuration.md lists them)", USAGE)


def report(error: CliError) -> None:
    """The error line and its hint, each one logical line (the terminal wraps, rich does not)."""
    err.print(f"[red]error:[/red] {escape(error.message)}", soft_wrap=True, highlight=False)
    if error.hint:
        err.print(f"  {escape(error.hint)}", soft_wrap=True, highlight=False)


class CairnGroup(TyperGroup):
    """The root command group: `-v` accepted anywhere on the line, and failures reported as `report` does."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # `-v` is a global option; people also type it after the command (`cairn index . -v`).
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
        rest = [a for a in args[:end] if a not in VERBOSE_FLAGS] + args[end:]
        return super().parse_args(ctx, flags[:1] + rest)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exit codes and usage errors: click reports those itself
        except Exception as exc:  # noqa: BLE001 - the one place a failure becomes a message and an exit code
            verbose = bool(ctx.meta.get(VERBOSE))
            error = explain(exc)
            shown = (exc.__cause__ or exc.__context__) if isinstance(exc, CliError) else exc  # what went wrong
            if verbose and shown is not None:
                traceback.print_exception(shown, file=sys.stderr)
            if error is None:
                error = CliError(f"unexpected {type(exc).__name__}: {exc}",
                                 "" if verbose else f"{TRACE_HINT}; if it looks like a bug in Cairn, report it")
            report(error)
            raise typer.Exit(error.code) from None


class _NoTracebacks(logging.Filter):
    """Without -v, a record carrying a traceback is not printed: the command reports that failure itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


def hide_tracebacks() -> None:
    """Without -v, the command's own log handler (api.log_setup) prints no record carrying a traceback."""
    from api.log_setup import QueryScrubber

    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, QueryScrubber) and not any(isinstance(f, _NoTracebacks)
                                                                    for f in handler.filters):
            handler.addFilter(_NoTracebacks())
