"""Migration 0005 (and every catalog open) moves clone-URL credentials out of an old catalog:
the URL loses its user info, the source waits in `error` for a token reference, and no byte of the
token is left in the SQLite file or in any PostgreSQL row; a clean catalog is left as it is."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text
from test_migrations import new_url, pg_database  # noqa: F401 - fixtures

from connectors.config import CREDENTIALS_REMOVED_HINT
from indexer.catalog import Catalog
from indexer.catalog.credentials import HINT, without_credentials
from indexer.catalog.db import make_engine
from indexer.catalog.migrate import upgrade
from indexer.catalog.schema import sources

TOKEN = "glpat-Wm2xKq9pLzVf3T8sRd4Y"
OLD = [("leaky", "git", f"https://oauth2:{TOKEN}@gitlab.example.com/g/p.git"),
       ("bare-token", "git", f"https://{TOKEN}@github.com/o/r.git"),
       ("ssh", "git", "ssh://git@gitlab.example.com/g/p.git"),
       ("local", "git", "/srv/repos/p.git")]


def _fill(url: str) -> None:
    engine = make_engine(url)
    now = dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            for name, kind, location in OLD:
                conn.execute(insert(sources).values(name=name, kind=kind, config={"location": location, "ref": ""},
                                                    access=["group:eng"], state="idle", last_error="",
                                                    created_at=now))
            for i in range(200):  # rewritten rows: old copies of the config in free pages / dead tuples
                conn.execute(text("UPDATE sources SET last_error = :e WHERE name = 'leaky'"), {"e": f"x{i}" * 50})
    finally:
        engine.dispose()


def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        catalog = Catalog(engine)
        rows = {r.name: r for r in catalog.list_sources()}
        assert rows["leaky"].config["location"] == "https://gitlab.example.com/g/p.git"
        assert rows["bare-token"].config["location"] == "https://github.com/o/r.git"
        for name in ("leaky", "bare-token"):
            assert rows[name].config["credentials_removed"] is True and rows[name].state == "error"
            assert f"cairn sources set {name} --token-env" in rows[name].last_error
        for name in ("ssh", "local"):  # nothing secret: untouched
            assert rows[name].config == {"location": {n: loc for n, _, loc in OLD}[name], "ref": ""}
            assert rows[name].state == "idle"
        with engine.connect() as conn:
            everything = " ".join(str(r) for r in conn.execute(text("SELECT * FROM sources")))
        assert TOKEN not in everything
    finally:
        engine.dispose()


def _file_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_the_migration_moves_stored_credentials_out(new_url) -> None:  # noqa: F811
    url = new_url()
    upgrade(url, "0003")
    _fill(url)
    upgrade(url, "0005")
    _check(url)
    if url.startswith("sqlite"):
        assert TOKEN.encode() not in _file_bytes(url)
    else:  # no dead tuple keeps the old row either (VACUUM FULL rewrote the table)
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            pages = conn.execute(text("SELECT pg_relation_size('sources') / current_setting('block_size')::int")).scalar()
            raw = b"".join(bytes(conn.execute(text("SELECT get_raw_page('sources', :p)"), {"p": p}).scalar())
                           for p in range(pages))
        engine.dispose()
        assert TOKEN.encode() not in raw


def test_opening_an_old_embedded_catalog_moves_them_out_too(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    upgrade(url, "0003")
    _fill(url)
    engine = make_engine(url)
    Catalog(engine).create_all()  # what IndexServices.open does
    engine.dispose()
    _check(url)
    assert TOKEN.encode() not in _file_bytes(url)


def test_the_url_rules_and_the_hint_agree_with_the_connector() -> None:
    assert HINT == CREDENTIALS_REMOVED_HINT
    assert without_credentials(f"https://oauth2:{TOKEN}@h:8443/g/p.git?x=1") == "https://h:8443/g/p.git?x=1"
    assert without_credentials("ssh://deploy:pw@h/r.git") == "ssh://deploy@h/r.git"
    assert without_credentials("git@h:g/p.git") == "git@h:g/p.git"


@pytest.mark.parametrize("location", ["https://h/p.git", "/srv/p.git"])
def test_a_clean_catalog_is_not_touched(tmp_path, location) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    engine = make_engine(url)
    catalog = Catalog(engine)
    catalog.create_all()
    catalog.upsert_source("s", "git", {"location": location, "ref": ""}, [])
    catalog.create_all()
    assert catalog.get_source("s").config == {"location": location, "ref": ""}
    assert catalog.get_source("s").state == "idle"
    engine.dispose()
