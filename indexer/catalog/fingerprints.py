"""What each schema revision added, to recognize the revision of a catalog that has no `alembic_version`.

Before migrations owned the schema, every start created missing tables with `metadata.create_all` (never
adding a column to a table that existed) and stamped nothing. Such a catalog is the union of tables made by
one or more older versions. `FINGERPRINTS` names, one line per revision, the tables (`name`) and the columns
(`table.column`) that revision added; `adoption` finds the newest revision the catalog shows evidence of, and
what it lacks of that revision (tables never made, columns never added when a newer version met an older
table); `complete` adds those, so the catalog can be stamped at that revision and upgraded from there.

A new migration adds its line here; tests/indexer/test_schema_adoption.py fails until it does (it builds
every revision with the migrations and checks that its line describes it). A migration that drops or
retypes something needs a richer line than this table holds."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, Connection, Engine, Index, MetaData, Table, UniqueConstraint, false, inspect, true
from sqlalchemy.sql.elements import ColumnElement

from indexer.catalog.catalog import SchemaError
from indexer.catalog.db import metadata


@dataclass(frozen=True)
class Fingerprint:
    """The tables and `table.column`s one revision added (empty: a data-only revision)."""

    revision: str
    added: tuple[str, ...]

    @classmethod
    def of(cls, revision: str, added: str = "") -> Fingerprint:
        return cls(revision, tuple(added.split()))


# Oldest first; one line per revision in indexer/catalog/migrations/versions.
FINGERPRINTS = (
    Fingerprint.of("0001", "sources documents chunks skipped failures jobs meta embedding_cache api_tokens "
                           "audit_log feedback"),
    Fingerprint.of("0002", "document_attempts generation_chunks generation_documents queue_batches queue_crawls "
                           "redactions source_schedules jobs.params"),
    Fingerprint.of("0003", "permission_syncs"),
    Fingerprint.of("0004", "users sessions login_requests"),
    Fingerprint.of("0005"),  # data only: git clone-URL credentials moved out (idempotent, rerun after adoption)
    Fingerprint.of("0006", "identity_links memberships"),
    Fingerprint.of("0007", "api_tokens.subject users.groups users.admin users.active"),
    Fingerprint.of("0008", "scim_users scim_groups scim_group_members"),
    Fingerprint.of("0009", "index_leases task_leases"),  # the index owner's lease, heartbeats of Celery tasks
    Fingerprint.of("0010", "queue_batches.seq queue_batches.checkpoint queue_crawls.stored"),  # applied checkpoints
    Fingerprint.of("0011", "ranker_weights"),  # feature weights learned from a source's commits
)


class AdoptionError(SchemaError):
    """An unstamped catalog whose tables no revision explains (or that cannot be completed safely)."""


@dataclass(frozen=True)
class Adoption:
    """How to stamp an unstamped catalog: at `revision`, once `missing` (tables and columns) are added."""

    revision: str
    missing: tuple[str, ...]


def _revisions_upto(revision: str) -> list[Fingerprint]:
    names = [f.revision for f in FINGERPRINTS]
    if revision not in names:
        raise AdoptionError(f"revision {revision!r} has no fingerprint (indexer/catalog/fingerprints.py)")
    return list(FINGERPRINTS[:names.index(revision) + 1])


def later_columns(revision: str) -> dict[str, set[str]]:
    """Per table, the columns revisions after `revision` added (absent from the table at `revision`)."""
    later = FINGERPRINTS[len(_revisions_upto(revision)):]
    out: dict[str, set[str]] = {}
    for item in (i for f in later for i in f.added if "." in i):
        table, column = item.split(".", 1)
        out.setdefault(table, set()).add(column)
    return out


def schema_at(revision: str) -> dict[str, set[str]]:
    """Table -> column names of the catalog at `revision`, from the fingerprints and the current metadata."""
    tables = {i for f in _revisions_upto(revision) for i in f.added if "." not in i}
    dropped = later_columns(revision)
    return {t: {c.name for c in metadata.tables[t].columns} - dropped.get(t, set()) for t in tables}


def present(engine: Engine) -> dict[str, set[str]]:
    """The catalog's tables that Cairn declares, with their column names."""
    insp = inspect(engine)
    names = set(insp.get_table_names()) & set(metadata.tables)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in names}


def _has(tables: dict[str, set[str]], item: str) -> bool:
    table, _, column = item.partition(".")
    return table in tables and (not column or column in tables[table])


def adoption(tables: dict[str, set[str]]) -> Adoption | None:
    """The newest revision any of `tables` shows (None: no Cairn table at all) and what is missing of it."""
    shown = [f.revision for f in FINGERPRINTS if any(_has(tables, i) for i in f.added)]
    if not shown:
        return None
    revision = shown[-1]
    missing = tuple(i for f in _revisions_upto(revision) for i in f.added if not _has(tables, i))
    return Adoption(revision, missing)


def _server_default(column: Column[Any]) -> str | ColumnElement[Any] | None:
    """A DDL default that fills existing rows for a NOT NULL column added after the fact, from its
    declared scalar default (`list` for JSON lists)."""
    default = column.default
    if default is None:
        return None
    value = default.arg if default.is_scalar else None  # type: ignore[attr-defined]
    if value is None and isinstance(column.type, JSON):
        value = "[]"  # `default=list`: the only callable default a catalog column declares
    if isinstance(value, bool):
        return true() if value else false()
    return None if value is None else str(value)


def _add_columns(conn: Connection, table: str, names: Iterable[str]) -> None:
    """Add columns (as declared now) to an existing table, with their indexes."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    declared = metadata.tables[table]
    wanted = set(names)
    ops = Operations(MigrationContext.configure(conn))
    with ops.batch_alter_table(table) as batch:
        # in declared order, the order the migrations add them in (so the result equals a migrated catalog)
        for column in [c for c in declared.columns if c.name in wanted]:
            name = column.name
            fill = None if column.nullable else _server_default(column)
            if not column.nullable and fill is None:
                raise AdoptionError(f"cannot add {table}.{name} to existing rows: it is NOT NULL without a "
                                    "default; upgrade through an intermediate release instead")
            batch.add_column(Column(name, column.type, nullable=column.nullable, server_default=fill))
            if column.index:
                batch.create_index(f"ix_{table}_{name}", [name], unique=bool(column.unique))


def _create_tables(conn: Connection, names: Iterable[str], revision: str) -> None:
    """Create tables as they were at `revision`: today's declaration without columns added later."""
    dropped = later_columns(revision)
    scratch = MetaData()
    for name in sorted(names):
        declared = metadata.tables[name]
        kept = [c._copy() for c in declared.columns if c.name not in dropped.get(name, set())]
        args = [*kept, *(c._copy() for c in declared.constraints if _table_level(c))]
        table = Table(name, scratch, *args)
        for index in declared.indexes:
            if all(c.name in table.c for c in index.columns) and not _column_index(index):
                Index(index.name, *(table.c[c.name] for c in index.columns), unique=bool(index.unique))
    scratch.create_all(conn)


def _table_level(constraint: Any) -> bool:
    """Named multi-column constraints (UniqueConstraint(...)), not ones a column's flags make again."""
    return isinstance(constraint, UniqueConstraint) and constraint.name is not None


def _column_index(index: Any) -> bool:
    """An index made by a column's `index=True` (copied with the column)."""
    return len(index.columns) == 1 and bool(next(iter(index.columns)).index)


def complete(engine: Engine, plan: Adoption) -> None:
    """Add what the catalog lacks of `plan.revision`: whole tables, then columns of existing tables."""
    tables = {i for i in plan.missing if "." not in i}
    columns: dict[str, list[str]] = {}
    for item in (i for i in plan.missing if "." in i):
        table, column = item.split(".", 1)
        if table not in tables:  # a table made now already has it
            columns.setdefault(table, []).append(column)
    with engine.begin() as conn:
        _create_tables(conn, tables, plan.revision)
    for table, names in sorted(columns.items()):
        with engine.begin() as conn:
            _add_columns(conn, table, names)
