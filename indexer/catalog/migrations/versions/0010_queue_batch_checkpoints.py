"""A distributed sync's partial checkpoints ride with its batches (queue_batches.seq, .checkpoint) and are
stored once applied (queue_crawls.stored).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 16:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('queue_batches') as batch:
        batch.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('checkpoint', sa.JSON(), nullable=True))
    with op.batch_alter_table('queue_crawls') as batch:
        batch.add_column(sa.Column('stored', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('queue_crawls') as batch:
        batch.drop_column('stored')
    with op.batch_alter_table('queue_batches') as batch:
        batch.drop_column('checkpoint')
        batch.drop_column('seq')
