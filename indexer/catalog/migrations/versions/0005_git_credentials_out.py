"""Git sources' clone-URL credentials out of the catalog: `user:token@` cut from `location`, the source
flagged `credentials_removed` (state `error` saying how to give a token by reference); no data left behind.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from indexer.catalog.credentials import scrub_storage, strip_credentials

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if strip_credentials(op.get_bind()):
        with op.get_context().autocommit_block():
            scrub_storage(op.get_bind())


def downgrade() -> None:
    pass  # the secret is gone for good; the flag does no harm to an older version
