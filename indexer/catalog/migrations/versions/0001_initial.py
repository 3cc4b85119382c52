"""Initial catalog schema: every table on indexer.catalog.db.metadata as of the embedded core and connectors.

Timestamps are plain DateTime(timezone=True): UTCDateTime is a Python-side TypeDecorator over it,
so the stored schema is the same and this revision never depends on application code.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 05:56:08.909039
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_tokens',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user', sa.String(length=255), nullable=False),
        sa.Column('groups', sa.JSON(), nullable=False),
        sa.Column('admin', sa.Boolean(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_api_tokens_token_hash'), 'api_tokens', ['token_hash'], unique=True)
    op.create_table('audit_log',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('user', sa.String(length=255), nullable=False),
        sa.Column('admin', sa.Boolean(), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.Text(), nullable=False),
        sa.Column('scope', sa.JSON(), nullable=False),
        sa.Column('result_count', sa.Integer(), nullable=False),
        sa.Column('result_ids', sa.JSON(), nullable=False),
        sa.Column('query_id', sa.String(length=36), nullable=True),
        sa.Column('query_text', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('query_id')
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)
    op.create_table('chunks',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('doc_id', sa.String(), nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('ordinal', sa.Integer(), nullable=False),
        sa.Column('start_line', sa.Integer(), nullable=False),
        sa.Column('end_line', sa.Integer(), nullable=False),
        sa.Column('symbol', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('language', sa.String(), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.Column('header', sa.Text(), nullable=False),
        sa.Column('acl', sa.JSON(), nullable=False),
        sa.Column('occurrence', sa.Integer(), nullable=False),
        sa.Column('content_hash', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_chunks_doc_id'), 'chunks', ['doc_id'], unique=False)
    op.create_index(op.f('ix_chunks_source'), 'chunks', ['source'], unique=False)
    op.create_table('documents',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('language', sa.String(), nullable=False),
        sa.Column('version', sa.String(), nullable=False),
        sa.Column('access_digest', sa.String(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('n_chunks', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(), nullable=False),
        sa.Column('indexed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_documents_source_state', 'documents', ['source', 'state'], unique=False)
    op.create_table('embedding_cache',
        sa.Column('model', sa.Text(), nullable=False),
        sa.Column('content_hash', sa.Text(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('model', 'content_hash')
    )
    op.create_table('failures',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('item', sa.Text(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', 'item')
    )
    op.create_table('feedback',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('query_id', sa.String(length=36), nullable=False),
        sa.Column('hit_id', sa.String(length=64), nullable=False),
        sa.Column('user', sa.String(length=255), nullable=False),
        sa.Column('useful', sa.Boolean(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_feedback_at'), 'feedback', ['at'], unique=False)
    op.create_index(op.f('ix_feedback_query_id'), 'feedback', ['query_id'], unique=False)
    op.create_table('jobs',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('state', sa.String(), nullable=False),
        sa.Column('counts', sa.JSON(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_jobs_source_created', 'jobs', ['source', 'created_at'], unique=False)
    op.create_table('meta',
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('key')
    )
    op.create_table('skipped',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('reason', sa.String(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', 'path')
    )
    op.create_table('sources',
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('access', sa.JSON(), nullable=False),
        sa.Column('checkpoint', sa.JSON(), nullable=True),
        sa.Column('state', sa.String(), nullable=False),
        sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('sources')
    op.drop_table('skipped')
    op.drop_table('meta')
    op.drop_index('ix_jobs_source_created', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index(op.f('ix_feedback_query_id'), table_name='feedback')
    op.drop_index(op.f('ix_feedback_at'), table_name='feedback')
    op.drop_table('feedback')
    op.drop_table('failures')
    op.drop_table('embedding_cache')
    op.drop_index('ix_documents_source_state', table_name='documents')
    op.drop_table('documents')
    op.drop_index(op.f('ix_chunks_source'), table_name='chunks')
    op.drop_index(op.f('ix_chunks_doc_id'), table_name='chunks')
    op.drop_table('chunks')
    op.drop_index(op.f('ix_audit_log_at'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_api_tokens_token_hash'), table_name='api_tokens')
    op.drop_table('api_tokens')
