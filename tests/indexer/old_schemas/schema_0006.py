"""The catalog tables as revision 0006's code declared them (commit a133e67 I), for tests of
catalogs made by `metadata.create_all` before migrations owned the schema. Generated from git history; do
not edit (a later revision gets a file of its own)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData()

class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

sources = Table(
    "sources", metadata,
    Column("name", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("config", JSON, nullable=False),
    Column("access", JSON, nullable=False),
    Column("checkpoint", JSON),
    Column("state", String, nullable=False, default="idle"),
    Column("last_sync_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
)

documents = Table(
    "documents", metadata,
    Column("id", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("path", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("kind", String, nullable=False),
    Column("language", String, nullable=False),
    Column("version", String, nullable=False),
    Column("access_digest", String, nullable=False),
    Column("url", Text, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("n_chunks", Integer, nullable=False),
    # "lexical": chunks written to the full-text index, embeddings pending; "indexed": both done.
    Column("state", String, nullable=False),
    Column("indexed_at", UTCDateTime, nullable=False),
    Index("ix_documents_source_state", "source", "state"),
)

chunks = Table(
    "chunks", metadata,
    Column("id", String, primary_key=True),
    Column("doc_id", String, nullable=False, index=True),
    Column("source", String, nullable=False, index=True),
    Column("ordinal", Integer, nullable=False),
    Column("start_line", Integer, nullable=False),
    Column("end_line", Integer, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("kind", String, nullable=False),
    Column("language", String, nullable=False),
    Column("path", Text, nullable=False),
    Column("content", Text, nullable=False),
    # header, acl and occurrence make the stored row rebuild a Chunk with the same id.
    Column("header", Text, nullable=False),
    Column("acl", JSON, nullable=False),
    Column("occurrence", Integer, nullable=False),
    Column("content_hash", String, nullable=False),
)

skipped = Table(
    "skipped", metadata,
    Column("source", String, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("reason", String, nullable=False),
    Column("detail", Text, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
)

failures = Table(
    "failures", metadata,
    Column("source", String, primary_key=True),
    Column("item", Text, primary_key=True),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("state", String, nullable=False),
    Column("counts", JSON, nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("done", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=False, default=0),
    # What a job was asked to do ({"full": true}, {"since_seconds": 172800}, ...), to resume it as submitted.
    Column("params", JSON, nullable=True),
    Index("ix_jobs_source_created", "source", "created_at"),
)

meta = Table(
    "meta", metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

source_schedules = Table(
    "source_schedules", metadata,
    Column("source", String, primary_key=True),
    Column("interval_seconds", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

permission_syncs = Table(
    "permission_syncs", metadata,
    Column("source", String, primary_key=True),
    Column("last_attempt_at", UTCDateTime, nullable=False),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text, nullable=False),
)

generation_chunks = Table(
    "generation_chunks", metadata,
    Column("generation", Integer, primary_key=True),
    *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in chunks.columns),
    Index("ix_generation_chunks_generation_doc", "generation", "doc_id"),
)

generation_documents = Table(
    "generation_documents", metadata,
    Column("generation", Integer, primary_key=True),
    Column("doc_id", String, primary_key=True),
    Column("stamp", UTCDateTime, nullable=False),
    Column("n_chunks", Integer, nullable=False),
)

queue_batches = Table(
    "queue_batches", metadata,
    Column("job_id", String, primary_key=True),
    Column("batch_id", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("kind", String, nullable=False),  # "documents" (embed → index) or "deletions" (index only)
    Column("docs", Integer, nullable=False),
    Column("state", String, nullable=False),  # "sent" → "applied"
    Column("counts", JSON, nullable=False),
    Column("started_by", String, nullable=False, default=""),  # worker that last began embedding it
    Column("started_at", UTCDateTime),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),
)

queue_crawls = Table(
    "queue_crawls", metadata,
    Column("job_id", String, primary_key=True),
    Column("source", String, nullable=False, index=True),
    Column("state", String, nullable=False),  # "crawling" → "sent" (or "stopped") → "finished"
    Column("attempt", Integer, nullable=False),
    Column("full", Integer, nullable=False),
    Column("counts", JSON, nullable=False),  # files_seen/skipped/failed/quarantined of the crawl
    Column("failed_items", JSON, nullable=False),  # failure items this crawl saw (kept at the end)
    Column("checkpoint", JSON),  # the connector's next checkpoint, stored when the job finishes
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

document_attempts = Table(
    "document_attempts", metadata,
    Column("doc_id", String, primary_key=True),
    Column("source", String, nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("version", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

redactions = Table(
    "redactions", metadata,
    Column("doc_id", String, primary_key=True),
    Column("rule", String, primary_key=True),
    Column("source", String, nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("lines", JSON, nullable=False),  # 1-based lines of the first redactions (0 = in the title)
    Column("recorded_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(36), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True, index=True),
    Column("user", String(255), nullable=False),
    Column("groups", JSON, nullable=False),
    Column("admin", Boolean, nullable=False, default=False),
    Column("name", String(255), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", String(36), primary_key=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("user", String(255), nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("action", String(64), nullable=False),  # search, context, mcp.grep, sources.add, ...
    Column("target", Text, nullable=False),  # e.g. the source an admin action was about
    Column("scope", JSON, nullable=False),
    Column("result_count", Integer, nullable=False),
    Column("result_ids", JSON, nullable=False),  # what the caller was shown, so feedback can be checked
    Column("query_id", String(36), nullable=True, unique=True),
    Column("query_text", Text, nullable=True),  # only with audit_query_text
)

feedback = Table(
    "feedback", metadata,
    Column("id", String(36), primary_key=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("query_id", String(36), nullable=False, index=True),
    Column("hit_id", String(64), nullable=False),
    Column("user", String(255), nullable=False),
    Column("useful", Boolean, nullable=False),
    Column("comment", Text, nullable=False),
)

users = Table(
    "users", metadata,
    Column("subject", String(255), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("email", String(320), nullable=False),
    Column("email_verified", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime, nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # oidc | token
    Column("subject", String(255), nullable=True),
    Column("token_id", String(36), nullable=True),
    Column("user", String(255), nullable=False),
    Column("groups", JSON, nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

login_requests = Table(
    "login_requests", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("state", String(128), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", Text, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

identity_links = Table(
    "identity_links", metadata,
    Column("subject", String(255), primary_key=True),
    Column("realm", String(32), primary_key=True),
    Column("account", String(255), nullable=False),  # GitLab numeric id, Atlassian user key or accountId
    Column("display", String(255), nullable=False, default=""),  # username / display name, for listings
    Column("method", String(16), nullable=False),  # email | admin
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("realm", "account", name="uq_identity_links_account"),
)

memberships = Table(
    "memberships", metadata,
    Column("source", String(255), primary_key=True),
    Column("principal", String(512), primary_key=True),
    Column("realm", String(32), primary_key=True),
    Column("account", String(255), primary_key=True),
    Column("level", Integer, nullable=True),
    Column("synced_at", UTCDateTime, nullable=False),
    Index("ix_memberships_account", "realm", "account"),
)

embedding_cache = Table(
    "embedding_cache",
    metadata,
    Column("model", Text, primary_key=True),
    Column("content_hash", Text, primary_key=True),
    Column("vector", LargeBinary, nullable=False),
)
