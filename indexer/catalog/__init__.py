"""The catalog: what is indexed, from where, for whom, and every job (SQLAlchemy: SQLite or PostgreSQL).

Contract: `Catalog(engine)` (sources, document versions, chunk rows, skips, failures, jobs, checkpoints);
every table lives on `metadata` in `schema.py` (and `embedding/cache.py`); Alembic migrations own the
schema (`upgrade(url)`)."""
from indexer.catalog.catalog import Catalog, CatalogError
from indexer.catalog.db import make_engine, metadata

__all__ = ["Catalog", "CatalogError", "make_engine", "metadata"]
