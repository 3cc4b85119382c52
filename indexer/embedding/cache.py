"""Vectors cached in the catalog database by (model key, hash of the embedded text)."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping

import numpy as np
from sqlalchemy import Column, Connection, Engine, Insert, LargeBinary, Table, Text, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from indexer.catalog.db import metadata

log = logging.getLogger(__name__)

# Rows per statement: keeps `IN (...)` lists and multi-row inserts under SQLite's variable limit
# (999 before SQLite 3.32) and statements small on PostgreSQL.
BATCH = 400
_DTYPE = np.dtype("<f4")  # stored as little-endian float32 bytes whatever the host

embedding_cache = Table(
    "embedding_cache",
    metadata,
    Column("model", Text, primary_key=True),
    Column("content_hash", Text, primary_key=True),
    Column("vector", LargeBinary, nullable=False),
)


class EmbeddingCache:
    """Vectors keyed by model key and the hash of exactly the embedded text."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[embedding_cache])

    def get_many(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        t = embedding_cache.c
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), BATCH):
                query = select(t.content_hash, t.vector).where(
                    t.model == model, t.content_hash.in_(wanted[start:start + BATCH]))
                for content_hash, blob in conn.execute(query):
                    found[content_hash] = np.frombuffer(blob, dtype=_DTYPE).astype(np.float32)
        return found

    def put_many(self, model: str, items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors; rows already present are left as they are (idempotent, race-safe)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = {h: np.ascontiguousarray(v, dtype=_DTYPE).tobytes() for h, v in pairs}
        records = [{"model": model, "content_hash": h, "vector": blob} for h, blob in rows.items()]
        with self.engine.begin() as conn:
            for start in range(0, len(records), BATCH):
                batch = records[start:start + BATCH]
                insert = _insert_ignoring_duplicates(conn.dialect.name)
                if insert is not None:
                    conn.execute(insert, batch)
                else:
                    _insert_missing(conn, batch)


def _insert_ignoring_duplicates(dialect: str) -> Insert | None:
    if dialect == "sqlite":
        return sqlite.insert(embedding_cache).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(embedding_cache).on_conflict_do_nothing()
    return None


def _insert_missing(conn: Connection, batch: list[dict]) -> None:
    """Other databases: look the keys up first and insert only the absent ones."""
    t = embedding_cache.c
    keys = [(r["model"], r["content_hash"]) for r in batch]
    present = set(conn.execute(select(t.model, t.content_hash).where(tuple_(t.model, t.content_hash).in_(keys))))
    missing = [r for r in batch if (r["model"], r["content_hash"]) not in present]
    if missing:
        conn.execute(embedding_cache.insert(), missing)


def text_hash(text: str) -> str:
    """The cache key of a text; equals Chunk.content_hash for the chunk's embed_text()."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
