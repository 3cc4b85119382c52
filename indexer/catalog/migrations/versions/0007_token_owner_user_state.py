"""Personal tokens name their owner (api_tokens.subject); users keep the IdP's groups and admin flag from
the last sign-in and whether they are active (SCIM deprovisioning).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:50:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens') as batch:
        batch.add_column(sa.Column('subject', sa.String(length=255), nullable=True))
        batch.create_index(batch.f('ix_api_tokens_subject'), ['subject'], unique=False)
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('groups', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('admin', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('active', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('active')
        batch.drop_column('admin')
        batch.drop_column('groups')
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_index(batch.f('ix_api_tokens_subject'))
        batch.drop_column('subject')
