"""Alembic environment: the database URL comes from the caller (`indexer.catalog.migrate.upgrade`), never the env."""
from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData

# Importing these modules registers every table on `metadata` (autogenerate compares against it);
# plain imports, so the layer contracts see that migrations depend on the indexer alone.
import indexer.catalog.schema
import indexer.embedding.cache  # noqa: F401
from indexer.catalog.db import make_engine, metadata


def _target_metadata() -> MetaData:
    return metadata


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=_target_metadata(), literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online(url: str) -> None:
    given = context.config.attributes.get("engine")  # the caller's open engine (upgrade_engine); never disposed here
    engine = given or make_engine(url)
    try:
        with engine.connect() as connection:
            # One transaction per revision: a failed upgrade leaves the catalog at the last revision that
            # completed (and stamped), never between two.
            context.configure(connection=connection, target_metadata=_target_metadata(),
                              transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if given is None:
            engine.dispose()


_url = context.config.get_main_option("sqlalchemy.url")
if not _url:
    raise RuntimeError("set sqlalchemy.url on the Alembic config (indexer.catalog.migrate.upgrade does)")
if context.is_offline_mode():
    run_offline(_url)
else:
    run_online(_url)
