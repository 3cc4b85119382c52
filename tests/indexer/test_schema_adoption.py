"""Migrations own the schema of every catalog, on SQLite and PostgreSQL: each revision has its fingerprint line,
a fresh catalog is created and stamped, and catalogs made by earlier versions — stamped at an old revision, or
made by `create_all` without `alembic_version` (whole, mixed across versions, or partial) — are recognized,
stamped and upgraded to exactly the schema the migrations build, keeping their rows."""
from __future__ import annotations

import datetime as dt
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, insert, text
from test_migrations import new_url, pg_database, schema  # noqa: F401 - fixtures and the schema reader

from indexer.catalog import Catalog, SchemaError, open_catalog
from indexer.catalog.db import make_engine, metadata
from indexer.catalog.fingerprints import FINGERPRINTS, adoption, present, schema_at
from indexer.catalog.migrate import _script, alembic_config, head, prepare_schema, schema_state, upgrade

OLD = Path(__file__).with_name("old_schemas")
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def old_metadata(revision: str) -> MetaData:
    """The tables as the code of `revision`'s era declared them (tests/indexer/old_schemas)."""
    spec = importlib.util.spec_from_file_location(f"old_schema_{revision}", OLD / f"schema_{revision}.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.metadata


def revisions() -> list[str]:
    """Base to head, as the packaged migrations chain them."""
    return [s.revision for s in reversed(list(_script().walk_revisions()))]


def migrations_only(url: str, revision: str = "head") -> None:
    """Run the migration scripts themselves (no fresh-catalog shortcut, no adoption)."""
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(url, engine), revision)
    finally:
        engine.dispose()


def with_engine(url: str, work: Callable[[Engine], Any]) -> Any:
    engine = make_engine(url)
    try:
        return work(engine)
    finally:
        engine.dispose()


def settled(url: str) -> tuple[dict[str, Any], list[Any], str | None]:
    """Schema, autogenerate's diffs against today's metadata, and the stamped revision."""
    def read(engine: Engine) -> tuple[dict[str, Any], list[Any], str | None]:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            return schema(engine), compare_metadata(context, metadata), context.get_current_revision()
    return with_engine(url, read)


_REFERENCE: dict[str, dict[str, Any]] = {}


def reference(make_url: Callable[[], str]) -> dict[str, Any]:
    """The schema every migration run from an empty database builds: what each catalog must end at
    (built once per dialect)."""
    url = make_url()
    dialect = url.split(":", 1)[0]
    if dialect not in _REFERENCE:
        migrations_only(url)
        _REFERENCE[dialect] = settled(url)[0]
    return _REFERENCE[dialect]


def fill(url: str, meta: MetaData) -> None:
    """Rows an old version wrote: a source, a job, a token (and a person when the era had users)."""
    tables = meta.tables

    def write(engine: Engine) -> None:
        with engine.begin() as conn:
            conn.execute(insert(tables["sources"]).values(name="docs", kind="git", config={"location": "/srv/d.git"},
                                                          access=["group:eng"], state="idle", last_error="",
                                                          created_at=NOW))
            conn.execute(insert(tables["api_tokens"]).values(id="t1", token_hash="h" * 64, user="ops", groups=["eng"],
                                                             admin=True, name="ci", created_at=NOW))
            if "jobs" in tables:
                conn.execute(insert(tables["jobs"]).values(id="j1", source="docs", kind="sync", state="succeeded",
                                                           counts={"files_seen": 3}, error="", created_at=NOW,
                                                           done=3, total=3))
            if "users" in tables:
                conn.execute(insert(tables["users"]).values(subject="s1", username="ada", email="a@x",
                                                            email_verified=True, created_at=NOW, last_login_at=NOW))
    with_engine(url, write)


def assert_rows_kept(url: str, people: bool, jobs: bool = True) -> None:
    def read(engine: Engine) -> None:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM sources")).scalars().all() == ["docs"]
            token = conn.execute(text("SELECT \"user\", subject FROM api_tokens WHERE id = 't1'")).one()
            assert tuple(token) == ("ops", None)  # the new column, empty for a service token
            if jobs:
                assert conn.execute(text("SELECT state FROM jobs WHERE id = 'j1'")).scalar_one() == "succeeded"
            if people:  # 0007's columns with their defaults for a person signed in before they existed
                person = conn.execute(text("SELECT username, admin, active FROM users")).one()
                assert (person[0], bool(person[1]), bool(person[2])) == ("ada", False, True)
    with_engine(url, read)


def test_every_revision_has_one_fingerprint_line_in_order() -> None:
    assert [f.revision for f in FINGERPRINTS] == revisions()


def test_each_fingerprint_line_describes_its_revision(new_url) -> None:  # noqa: F811
    url = new_url()
    for i, revision in enumerate(revisions()):  # one database, upgraded a revision at a time
        migrations_only(url, revision)
        assert with_engine(url, present) == schema_at(revision), revision
        plan = adoption(with_engine(url, present))
        # A data-only revision leaves no trace: the newest revision with tables or columns is recognized.
        assert plan is not None and plan.missing == ()
        assert plan.revision == [f.revision for f in FINGERPRINTS[:i + 1] if f.added][-1]


def test_a_fresh_catalog_is_created_and_stamped_like_the_migrations_build_it(new_url) -> None:  # noqa: F811
    url = new_url()
    state = upgrade(url)  # the fresh-catalog path: create_all, then stamp head
    assert state.current and state.revision == head()
    got, diffs, revision = settled(url)
    assert (got, diffs, revision) == (reference(new_url), [], head())


@pytest.mark.parametrize("revision", ["0003", "0005"])
def test_a_stamped_old_catalog_is_refused_by_a_server_then_upgraded(new_url, revision) -> None:  # noqa: F811
    url = new_url()
    migrations_only(url, revision)
    fill(url, old_metadata("0003" if revision == "0003" else "0006"))  # 0005 and 0006 share these tables
    with pytest.raises(SchemaError, match=f"revision {revision}, this version needs {head()}: run `cairn db upgrade`"):
        with_engine(url, lambda e: prepare_schema(e, upgrade=False))
    assert upgrade(url).current
    assert settled(url) == (reference(new_url), [], head())
    assert_rows_kept(url, people=revision == "0005")


@pytest.mark.parametrize("era", ["0003", "0006"])
def test_a_catalog_made_without_migrations_is_recognized_stamped_and_upgraded(new_url, era) -> None:  # noqa: F811
    url = new_url()
    old = old_metadata(era)
    with_engine(url, old.create_all)  # what every start of that version did
    fill(url, old)
    state = with_engine(url, schema_state)
    assert state.revision is None and state.adopt is not None
    assert (state.adopt.revision, state.adopt.missing) == (era, ())
    with pytest.raises(SchemaError, match=f"without migrations .*revision {era}.*run `cairn db upgrade`"):
        with_engine(url, lambda e: prepare_schema(e, upgrade=False))
    assert upgrade(url).current
    assert settled(url) == (reference(new_url), [], head())
    assert_rows_kept(url, people=era == "0006")
    assert upgrade(url).current and settled(url)[0] == reference(new_url)  # again: nothing to do


def test_a_catalog_two_versions_made_gets_the_columns_the_newer_one_never_added(new_url) -> None:  # noqa: F811
    """Made at 0003, then started by a version at head (0007 or later): create_all added users (with 0007's
    columns) and every later table but left api_tokens without `subject` and queue_batches/queue_crawls without
    0010's columns — the catalog is at 0011 (the newest revision that made a table) except for those columns."""
    url = new_url()
    with_engine(url, old_metadata("0003").create_all)
    fill(url, old_metadata("0003"))
    with_engine(url, metadata.create_all)
    plan = adoption(with_engine(url, present))
    assert plan is not None and (plan.revision, plan.missing) == (
        "0011", ("api_tokens.subject", "queue_batches.seq", "queue_batches.checkpoint", "queue_crawls.stored"))
    assert upgrade(url).current
    assert settled(url) == (reference(new_url), [], head())
    assert_rows_kept(url, people=False)


def test_a_partial_catalog_gets_the_tables_it_never_had(new_url) -> None:  # noqa: F811
    """`cairn tokens create` before any other command made api_tokens alone."""
    url = new_url()
    old = old_metadata("0003")
    with_engine(url, lambda e: old.create_all(e, tables=[old.tables["api_tokens"]]))
    tokens_only = MetaData()
    old.tables["api_tokens"].to_metadata(tokens_only)
    old.tables["sources"].to_metadata(tokens_only)
    with_engine(url, tokens_only.tables["sources"].create)  # a second table, still no jobs
    fill(url, tokens_only)
    plan = adoption(with_engine(url, present))
    assert plan is not None and plan.revision == "0001" and "jobs" in plan.missing
    assert upgrade(url).current
    assert settled(url) == (reference(new_url), [], head())
    assert_rows_kept(url, people=False, jobs=False)


def test_open_catalog_upgrades_the_embedded_catalog_and_refuses_a_shared_one(new_url) -> None:  # noqa: F811
    url = new_url()
    with_engine(url, old_metadata("0006").create_all)
    if url.startswith("sqlite"):
        catalog = open_catalog(url)  # the embedded default: one command, one data dir
        try:
            assert with_engine(url, schema_state).current
            assert catalog.list_sources() == []
        finally:
            catalog.engine.dispose()
    else:
        with pytest.raises(SchemaError, match="cairn db upgrade"):
            open_catalog(url)
        assert with_engine(url, schema_state).revision is None  # nothing was changed


def test_a_catalog_migrated_by_a_newer_version_is_refused_everywhere(new_url) -> None:  # noqa: F811
    url = new_url()
    upgrade(url)
    with_engine(url, _stamp_unknown)
    for allowed in (True, False):
        with pytest.raises(SchemaError, match=r"which this Cairn does not know .*newer version"):
            with_engine(url, lambda e, a=allowed: prepare_schema(e, upgrade=a))


def _stamp_unknown(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))


def test_concurrent_upgrades_of_one_catalog_all_succeed(new_url) -> None:  # noqa: F811
    url = new_url()
    with_engine(url, old_metadata("0003").create_all)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert settled(url) == (reference(new_url), [], head())


def test_catalog_create_all_is_the_migrations(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    engine = make_engine(url)
    try:
        old_metadata("0006").create_all(engine)
        Catalog(engine).create_all()
        assert schema_state(engine).current
    finally:
        engine.dispose()


def test_a_failed_upgrade_stops_at_the_last_revision_that_completed(new_url) -> None:  # noqa: F811
    url = new_url()
    migrations_only(url, "0004")

    def squat(engine: Engine) -> None:  # a table in the way of 0006's
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE memberships (x INTEGER)"))
    with_engine(url, squat)
    with pytest.raises(Exception, match="memberships"):
        upgrade(url)
    assert with_engine(url, schema_state).revision == "0005"  # 0005 committed and stamped, 0006 not
    if url.startswith("postgresql"):  # transactional DDL: 0006 rolled back whole (pysqlite commits each DDL)
        assert "identity_links" not in with_engine(url, present)
