"""The catalog: what is indexed, from where, for whom, and every job (SQLAlchemy: SQLite or PostgreSQL).

Contract: `Catalog(engine)` (sources, document versions, chunk rows, skips, failures, jobs, checkpoints);
every table lives on `metadata` in `schema.py` (and `embedding/cache.py`); Alembic migrations own the
schema (`migrate.py`): `open_catalog(url)` is how a process starts on one (the embedded SQLite catalog is
upgraded, a PostgreSQL one must already be current: `SchemaError` says to run `cairn db upgrade`)."""
from indexer.catalog.catalog import Catalog, CatalogError, SchemaError
from indexer.catalog.db import make_engine, metadata


def open_catalog(url: str) -> Catalog:
    """The catalog at `url`, its schema upgraded (embedded) or checked current (distributed)."""
    from indexer.catalog.migrate import auto_upgrades, prepare_schema

    catalog = Catalog(make_engine(url))
    try:
        prepare_schema(catalog.engine, upgrade=auto_upgrades(url))
    except Exception:
        catalog.engine.dispose()
        raise
    return catalog


__all__ = ["Catalog", "CatalogError", "SchemaError", "make_engine", "metadata", "open_catalog"]
