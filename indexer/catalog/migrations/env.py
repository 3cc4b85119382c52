"""Alembic environment: the database URL comes from the caller (`indexer.catalog.migrate.upgrade`), never the env."""
from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import MetaData

from indexer.catalog.db import make_engine, metadata

# Importing these modules registers their tables on `metadata` (autogenerate compares against it).
_TABLE_MODULES = ("indexer.catalog.schema", "indexer.embedding.cache", "api.tokens", "api.audit")


def _target_metadata() -> MetaData:
    for module in _TABLE_MODULES:
        importlib.import_module(module)
    return metadata


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=_target_metadata(), literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=_target_metadata())
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


_url = context.config.get_main_option("sqlalchemy.url")
if not _url:
    raise RuntimeError("set sqlalchemy.url on the Alembic config (indexer.catalog.migrate.upgrade does)")
if context.is_offline_mode():
    run_offline(_url)
else:
    run_online(_url)
