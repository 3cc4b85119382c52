"""Distributed indexing, admin jobs, secret redactions and index generations.

- queue_batches / queue_crawls / document_attempts: the index queue's job accounting and quarantine;
- jobs.params and source_schedules: what a job was asked to do, per-source sync intervals;
- redactions: per-document counts of redacted secrets (never the secret);
- generation_chunks / generation_documents: the chunk rows of an index generation being built.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:59:15.760414
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('document_attempts',
    sa.Column('doc_id', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('version', sa.String(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('quarantined', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('doc_id')
    )
    op.create_index(op.f('ix_document_attempts_source'), 'document_attempts', ['source'], unique=False)
    op.create_table('generation_chunks',
    sa.Column('generation', sa.Integer(), nullable=False),
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
    sa.PrimaryKeyConstraint('generation', 'id')
    )
    op.create_index('ix_generation_chunks_generation_doc', 'generation_chunks', ['generation', 'doc_id'], unique=False)
    op.create_table('generation_documents',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('doc_id', sa.String(), nullable=False),
    sa.Column('stamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('n_chunks', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'doc_id')
    )
    op.create_table('queue_batches',
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('batch_id', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('docs', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('started_by', sa.String(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('job_id', 'batch_id')
    )
    op.create_table('queue_crawls',
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('full', sa.Integer(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('failed_items', sa.JSON(), nullable=False),
    sa.Column('checkpoint', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job_id')
    )
    op.create_index(op.f('ix_queue_crawls_source'), 'queue_crawls', ['source'], unique=False)
    op.create_table('redactions',
    sa.Column('doc_id', sa.String(), nullable=False),
    sa.Column('rule', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('doc_id', 'rule')
    )
    op.create_index(op.f('ix_redactions_source'), 'redactions', ['source'], unique=False)
    op.create_table('source_schedules',
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('interval_seconds', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )
    op.add_column('jobs', sa.Column('params', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'params')
    op.drop_table('source_schedules')
    op.drop_index(op.f('ix_redactions_source'), table_name='redactions')
    op.drop_table('redactions')
    op.drop_index(op.f('ix_queue_crawls_source'), table_name='queue_crawls')
    op.drop_table('queue_crawls')
    op.drop_table('queue_batches')
    op.drop_table('generation_documents')
    op.drop_index('ix_generation_chunks_generation_doc', table_name='generation_chunks')
    op.drop_table('generation_chunks')
    op.drop_index(op.f('ix_document_attempts_source'), table_name='document_attempts')
    op.drop_table('document_attempts')
