"""SCIM 2.0 provisioning: the users and groups the organization's IdP provisions, and group members.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 13:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scim_users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('user_key', sa.String(length=255), nullable=False),
    sa.Column('email_key', sa.String(length=320), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('resource', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject'),
    sa.UniqueConstraint('user_key')
    )
    op.create_index(op.f('ix_scim_users_email_key'), 'scim_users', ['email_key'], unique=False)
    op.create_index(op.f('ix_scim_users_external_id'), 'scim_users', ['external_id'], unique=False)
    op.create_table('scim_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('display_name', sa.String(length=255), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('display_name')
    )
    op.create_table('scim_group_members',
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('group_id', 'user_id')
    )
    op.create_index(op.f('ix_scim_group_members_user_id'), 'scim_group_members', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_scim_group_members_user_id'), table_name='scim_group_members')
    op.drop_table('scim_group_members')
    op.drop_table('scim_groups')
    op.drop_index(op.f('ix_scim_users_external_id'), table_name='scim_users')
    op.drop_index(op.f('ix_scim_users_email_key'), table_name='scim_users')
    op.drop_table('scim_users')
