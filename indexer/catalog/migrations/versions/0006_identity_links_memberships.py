"""One person across systems: identity links (a Cairn user's account in each realm) and the group
memberships each source's permissions pass reads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:45:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('identity_links',
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('realm', sa.String(length=32), nullable=False),
    sa.Column('account', sa.String(length=255), nullable=False),
    sa.Column('display', sa.String(length=255), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subject', 'realm'),
    sa.UniqueConstraint('realm', 'account', name='uq_identity_links_account')
    )
    op.create_table('memberships',
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('principal', sa.String(length=512), nullable=False),
    sa.Column('realm', sa.String(length=32), nullable=False),
    sa.Column('account', sa.String(length=255), nullable=False),
    sa.Column('level', sa.Integer(), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'principal', 'realm', 'account')
    )
    op.create_index('ix_memberships_account', 'memberships', ['realm', 'account'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_memberships_account', table_name='memberships')
    op.drop_table('memberships')
    op.drop_table('identity_links')
