"""Feature weights learned per source from its own commit history (ranker_weights).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ranker_weights',
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('fitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pairs', sa.Integer(), nullable=False),
    sa.Column('held_out', sa.Integer(), nullable=False),
    sa.Column('mrr_default', sa.Float(), nullable=False),
    sa.Column('mrr_learned', sa.Float(), nullable=False),
    sa.Column('kept', sa.Boolean(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )


def downgrade() -> None:
    op.drop_table('ranker_weights')
