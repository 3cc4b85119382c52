"""Alembic migrations of the catalog schema (tables declared on `indexer.db.metadata`)."""
