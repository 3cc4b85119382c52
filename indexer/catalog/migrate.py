"""The catalog's schema belongs to its Alembic migrations: upgrade (adopting catalogs an earlier version made
without them), and the check a server or worker makes before it touches the catalog.

The embedded default (a SQLite catalog in the data dir, one host) upgrades itself when opened; a PostgreSQL
catalog is shared by API nodes and workers of several versions during a rollout, so it is only ever upgraded by
`cairn db upgrade` (a compose one-shot service, a Helm hook Job) and every process refuses to start on a
catalog that is not at this version's head (docs/operating.md, "Upgrading")."""
from __future__ import annotations

import fcntl
import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

import indexer.catalog.schema
import indexer.embedding.cache  # noqa: F401 - every table on `metadata`, as the migrations know them
from indexer.catalog.catalog import SchemaError
from indexer.catalog.db import make_engine, metadata
from indexer.catalog.fingerprints import Adoption, adoption, complete, present
from indexer.locks import lock_key

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_HINT = "run `cairn db upgrade` once (with the same CAIRN_DATABASE_URL) before starting servers and workers"


def alembic_config(url: str, engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations and the given catalog URL (or an open engine)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser treats % as interpolation; URLs may carry percent-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@functools.cache
def _script() -> ScriptDirectory:
    """The packaged migrations (read once per process: every catalog open asks for the head)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head() -> str:
    """The newest revision this version of Cairn ships."""
    revision = _script().get_current_head()
    assert revision is not None, "the packaged migrations have no head"
    return revision


def _known(revision: str) -> bool:
    return any(s.revision == revision for s in _script().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """Where a catalog stands: its stamped revision, or (unstamped) what its tables show."""

    revision: str | None  # alembic_version; None when the catalog was never stamped
    adopt: Adoption | None  # unstamped with Cairn tables: the revision they match and what they lack
    head: str

    @property
    def fresh(self) -> bool:
        return self.revision is None and self.adopt is None

    @property
    def current(self) -> bool:
        return self.revision == self.head

    def problem(self) -> str:
        """Why a process that may not upgrade cannot start on this catalog ('' when it can)."""
        if self.current:
            return ""
        if self.fresh:
            return f"the catalog has no tables yet: {UPGRADE_HINT}"
        if self.revision is None:
            assert self.adopt is not None
            return (f"the catalog was made by an earlier Cairn without migrations (its tables match revision "
                    f"{self.adopt.revision}; this version needs {self.head}): {UPGRADE_HINT}")
        if not _known(self.revision):
            return (f"the catalog is at revision {self.revision}, which this Cairn does not know (a newer version "
                    f"migrated it; this one needs {self.head}): run the newer version here too")
        return f"the catalog is at revision {self.revision}, this version needs {self.head}: {UPGRADE_HINT}"


def schema_state(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    return SchemaState(revision, adoption(present(engine)) if revision is None else None, head())


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One upgrade at a time per catalog (two pods' hook jobs, a server and a CLI command starting at once):
    a PostgreSQL advisory lock, or flock on a file in `locks/` next to the SQLite database (never on the
    database file: closing any descriptor of it would drop SQLite's own locks). Both die with their holder."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key("catalog-migrations")})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("catalog-migrations")})
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    locks = Path(database).parent / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "catalog-migrations.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _stamp(engine: Engine, revision: str) -> None:
    """Record `revision` in alembic_version without running anything (the scripts are not loaded)."""
    with engine.begin() as conn:
        MigrationContext.configure(conn).stamp(_script(), revision)


def _adopt(engine: Engine, plan: Adoption) -> None:
    """Complete and stamp a catalog an earlier start made with create_all (no alembic_version)."""
    if plan.missing:
        log.warning("catalog without alembic_version matches revision %s but lacks %s: adding them",
                    plan.revision, ", ".join(plan.missing))
        complete(engine, plan)
    _stamp(engine, plan.revision)
    log.warning("catalog without alembic_version recognized as revision %s and stamped", plan.revision)


def upgrade_engine(engine: Engine, revision: str = "head") -> SchemaState:
    """Bring the catalog to `revision`; safe on any catalog (fresh, unstamped old, stamped old, current)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False), engine)
    with _migration_lock(engine):
        state = schema_state(engine)
        if state.revision is not None and not _known(state.revision):
            raise SchemaError(state.problem())
        if state.fresh and revision in ("head", state.head):
            # Equivalent to running every migration on an empty database (tests/indexer/test_migrations.py
            # proves the schemas equal) and much faster: what tests and first starts do.
            metadata.create_all(engine)
            _stamp(engine, state.head)
        else:
            if state.adopt is not None:
                _adopt(engine, state.adopt)
            command.upgrade(config, revision)
        return schema_state(engine)


def upgrade(url: str, revision: str = "head") -> SchemaState:
    """`upgrade_engine` on a catalog URL (the `cairn db upgrade` command)."""
    engine = make_engine(url)
    try:
        return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def auto_upgrades(url: str) -> bool:
    """Whether opening this catalog upgrades it: the embedded SQLite catalog yes, a shared PostgreSQL no."""
    return url.startswith("sqlite")


def prepare_schema(engine: Engine, upgrade: bool) -> None:
    """Upgrade the catalog (embedded) or make sure it is current (distributed), before anything uses it."""
    if upgrade:
        try:
            upgrade_engine(engine)
        except SchemaError:
            raise
        except Exception as exc:  # a failed migration: said in one line, where the process stops
            raise SchemaError(f"upgrading the catalog failed: {type(exc).__name__}: {exc}") from exc
        return
    problem = schema_state(engine).problem()
    if problem:
        raise SchemaError(problem)
