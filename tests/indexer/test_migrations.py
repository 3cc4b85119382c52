"""The Alembic migrations build exactly the schema `metadata.create_all` builds, on SQLite and PostgreSQL."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

# Importing these registers every catalog table on `metadata` (as the app does before create_all).
import indexer.catalog.schema
import indexer.embedding.cache  # noqa: F401
from indexer.catalog.db import make_engine, metadata
from indexer.catalog.migrate import MIGRATIONS, alembic_config, upgrade

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VERSION_TABLE = "alembic_version"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes uniquely named PostgreSQL databases (autocommit) and drops them all afterwards."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no PostgreSQL here"
        admin.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {type(exc).__name__}")
    made: list[str] = []

    def new() -> str:
        name = f"cairn_mig_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield new
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A factory of URLs of fresh, empty databases of one dialect."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database")
    names = iter(range(1_000))
    return lambda: f"sqlite:///{tmp_path / f'catalog{next(names)}.sqlite3'}"


def schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns (type, nullability), primary key, indexes and unique constraints."""
    insp = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {VERSION_TABLE}):
        tables[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        }
    return tables


def created_schema(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
        return schema(engine)
    finally:
        engine.dispose()


def migrated(url: str) -> tuple[dict[str, Any], list[Any], str | None]:
    """The schema after `upgrade`, autogenerate's remaining diffs against the metadata, and the revision."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            return schema(engine), compare_metadata(context, metadata), context.get_current_revision()
    finally:
        engine.dispose()


def run_migrations(url: str) -> None:
    """Every migration script from an empty database (`upgrade` would create_all a fresh catalog instead)."""
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(url, engine), "head")
    finally:
        engine.dispose()


def test_upgrade_builds_the_same_schema_as_create_all(new_url: Callable[[], str]) -> None:
    url = new_url()
    run_migrations(url)
    got, diffs, revision = migrated(url)
    want = created_schema(new_url())
    assert sorted(got) == sorted(metadata.tables)  # every declared table has a migration
    assert got == want
    assert diffs == []
    assert revision is not None


def test_upgrade_twice_is_a_no_op(new_url: Callable[[], str]) -> None:
    url = new_url()
    run_migrations(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO meta (key, value) VALUES ('probe', 'kept')"))
    finally:
        engine.dispose()
    first = migrated(url)
    upgrade(url)
    assert migrated(url) == first
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM meta WHERE key = 'probe'")).scalar_one() == "kept"
    finally:
        engine.dispose()


def test_migrations_ship_with_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert (MIGRATIONS / "versions" / "0001_initial.py").is_file()
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert ('indexer = ["catalog/migrations/*.py", "catalog/migrations/versions/*.py", "catalog/migrations/*.mako"]'
            in pyproject)
