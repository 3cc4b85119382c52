"""The schema at the edges: `cairn db upgrade` and `cairn db status` on catalogs earlier versions made, the
embedded default upgrading itself on the first command, and a distributed deployment (`cairn serve`, Celery
workers and beat on PostgreSQL) refusing to start on an unmigrated catalog with what to run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from test_cli_jobs import CAIRN, PG_ADMIN_URL, cairn

from indexer.catalog.db import make_engine
from indexer.catalog.migrate import head

sys.path.insert(0, str(Path(__file__).parents[1] / "indexer"))
from test_schema_adoption import old_metadata  # the old eras' tables live with the indexer tests

from tests.conftest import KEPT_ENV

CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_URL = "redis://127.0.0.1:6379/13"


def _make_old(url: str, era: str) -> None:
    """A catalog as a start of that era left it: its tables, a token, no alembic_version."""
    engine = make_engine(url)
    try:
        old = old_metadata(era)
        old.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO api_tokens (id, token_hash, \"user\", groups, admin, name, created_at) "
                              "VALUES ('t1', :h, 'ops', '[]', true, 'old', CURRENT_TIMESTAMP)"), {"h": "h" * 64})
    finally:
        engine.dispose()


def _status(env: dict[str, str]) -> tuple[int, dict]:
    proc = cairn("db", "status", "--json", env=env)
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    name = f"cairn_dbup_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_db_upgrade_adopts_an_old_embedded_catalog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'catalog.sqlite3'}"
    _make_old(url, "0003")
    env = {"CAIRN_DATA_DIR": str(data)}
    code, before = _status(env)
    assert code == 1 and before["revision"] is None and before["matches"] == "0003"
    proc = cairn("db", "upgrade", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"catalog at revision {head()}" in proc.stdout
    assert "recognized as revision 0003" in proc.stderr  # the operator sees what was adopted
    assert _status(env) == (0, {"revision": head(), "head": head(), "current": True, "matches": None, "problem": ""})
    assert "subject" in _columns(url, "api_tokens")
    again = cairn("db", "upgrade", env=env)
    assert again.returncode == 0 and f"catalog at revision {head()}" in again.stdout


def test_the_first_command_on_an_old_embedded_data_dir_upgrades_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'catalog.sqlite3'}"
    _make_old(url, "0006")
    proc = cairn("tokens", "list", "--json", env={"CAIRN_DATA_DIR": str(data)})
    assert proc.returncode == 0, proc.stderr
    assert [t["id"] for t in json.loads(proc.stdout)] == ["t1"]
    assert _status({"CAIRN_DATA_DIR": str(data)})[0] == 0
    assert {"groups", "admin", "active"} <= _columns(url, "users")


def _refused(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    return subprocess.run(argv, capture_output=True, text=True, env={**clean, **env}, timeout=120, check=False)


def test_a_distributed_deployment_refuses_an_unmigrated_catalog_until_db_upgrade(tmp_path: Path, pg_url: str) -> None:
    _make_old(pg_url, "0006")
    env = {"CAIRN_DATA_DIR": str(tmp_path / "node"), "CAIRN_DATABASE_URL": pg_url, "CAIRN_CELERY_BROKER_URL": REDIS_URL}
    code, before = _status(env)
    assert code == 1 and before["matches"] == "0006" and "cairn db upgrade" in before["problem"]
    starts = {"serve": [CAIRN, "serve", "--port", "1"],
              "worker": [CELERY, "-A", "workers.celery_app", "worker", "-Q", "embed", "-c", "1", "--without-gossip",
                         "--without-mingle", "--without-heartbeat"],
              "beat": [CELERY, "-A", "workers.celery_app", "beat", "-s", str(tmp_path / "beat-schedule")]}
    for name, argv in starts.items():
        proc = _refused(argv, env)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, name
        assert "made by an earlier Cairn without migrations" in output and "run `cairn db upgrade`" in output, name
        assert "Traceback" not in output, name
    assert "subject" not in _columns(pg_url, "api_tokens")  # nobody but `cairn db upgrade` changes it
    proc = cairn("db", "upgrade", env=env)
    assert proc.returncode == 0, proc.stderr
    assert _status(env)[0] == 0
    assert "subject" in _columns(pg_url, "api_tokens")
    proc = cairn("tokens", "list", "--json", env=env)  # and now the catalog serves
    assert proc.returncode == 0 and [t["id"] for t in json.loads(proc.stdout)] == ["t1"]


def test_a_behind_postgresql_catalog_names_its_revision(tmp_path: Path, pg_url: str) -> None:
    from indexer.catalog.migrate import upgrade

    upgrade(pg_url, "0004")
    env = {"CAIRN_DATA_DIR": str(tmp_path), "CAIRN_DATABASE_URL": pg_url}
    proc = cairn("tokens", "list", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"at revision 0004, this version needs {head()}" in " ".join(proc.stderr.split())
