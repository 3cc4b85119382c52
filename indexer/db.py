"""The catalog's SQLAlchemy metadata, shared by the catalog and the embedding cache tables."""
from __future__ import annotations

from sqlalchemy import Engine, MetaData, create_engine, event

metadata = MetaData()


def make_engine(url: str) -> Engine:
    """An engine for the catalog URL; SQLite gets WAL and a busy timeout so threads can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # noqa: ANN001 - DBAPI connection
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
