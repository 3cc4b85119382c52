"""Alembic migrations of the catalog schema (tables declared on `indexer.catalog.db.metadata`)."""
