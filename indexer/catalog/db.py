"""The catalog's SQLAlchemy metadata, shared by the catalog and the embedding cache tables."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Engine, MetaData, create_engine, event

metadata = MetaData()
ID_BATCH = 400  # ids per `IN (...)`, under SQLite's bound-variable limit


def id_batches(items: Sequence[str], size: int = ID_BATCH) -> Iterator[Sequence[str]]:
    """`items` in slices of at most `size`, for `IN (...)` queries over many ids."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def make_engine(url: str) -> Engine:
    """An engine for the catalog URL; SQLite gets WAL and a busy timeout so threads can share it."""
    if url.startswith("sqlite"):
        # Enough connections for the API's worker threads (anyio's default pool is 40), so requests
        # never queue behind the pool under load; SQLite connections are cheap.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=16, max_overflow=32)

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
