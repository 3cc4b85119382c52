"""The catalog's tables, the frozen records its queries return, and the row conversions between them."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from indexer.catalog.db import metadata
from indexer.models import Chunk, Document


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


@dataclass(frozen=True)
class SourceRecord:
    name: str
    kind: str
    config: dict[str, Any]
    access: tuple[str, ...]  # sorted principals; Access.of(*record.access) rebuilds the Access
    checkpoint: dict[str, Any] | None
    state: str
    last_sync_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    created_at: datetime


@dataclass(frozen=True)
class ChunkRecord:
    """A stored chunk plus its document's title and url: what a search hit is hydrated from."""

    id: str
    doc_id: str
    source: str
    path: str
    ordinal: int
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    content: str
    header: str
    acl: tuple[str, ...]
    occurrence: int
    content_hash: str
    title: str
    url: str

    def to_chunk(self) -> Chunk:
        """The Chunk this row was written from (same id, same embedded text)."""
        return Chunk(doc_id=self.doc_id, source=self.source, path=self.path, ordinal=self.ordinal,
                     start_line=self.start_line, end_line=self.end_line, content=self.content, header=self.header,
                     symbol=self.symbol, kind=self.kind, language=self.language, acl=self.acl,
                     occurrence=self.occurrence)


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    source: str
    path: str
    title: str
    kind: str
    language: str
    version: str
    access_digest: str
    url: str
    content: str
    n_chunks: int
    state: str
    indexed_at: datetime


@dataclass(frozen=True)
class ChunkDiff:
    """What replace_document changed: chunk ids that are new and ids that were removed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailureRecord:
    source: str
    item: str
    error: str
    attempts: int
    last_seen_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: str
    source: str
    kind: str
    state: str
    counts: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    done: int = 0
    total: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # what the job was asked to do (jobs section below)


def pack_text(text: str) -> bytes:
    # Level 1: 3.4x faster than 6 for ~25% more bytes; the writing process sets the pace of a sync's
    # keyword phase, and any level decompresses the same way.
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def unpack_text(data: bytes) -> str:
    return zlib.decompress(data).decode("utf-8", "surrogatepass")


def chunk_row(chunk: Chunk) -> dict[str, Any]:
    return {"id": chunk.id, "doc_id": chunk.doc_id, "source": chunk.source, "ordinal": chunk.ordinal,
            "start_line": chunk.start_line, "end_line": chunk.end_line, "symbol": chunk.symbol,
            "kind": chunk.kind, "language": chunk.language, "path": chunk.path, "content": chunk.content,
            "header": chunk.header, "acl": list(chunk.acl), "occurrence": chunk.occurrence,
            "content_hash": chunk.content_hash}


def document_row(doc: Document, n_chunks: int, content: str, state: str) -> dict[str, Any]:
    return {"id": doc.id, "source": doc.source, "path": doc.path, "title": doc.title or doc.path,
            "kind": doc.kind, "language": doc.language, "version": doc.version,
            "access_digest": doc.access.digest(), "url": doc.url, "content": pack_text(content),
            "n_chunks": n_chunks, "state": state, "indexed_at": datetime.now(UTC)}


def chunk_record(row: Any) -> ChunkRecord:
    values = row._asdict()
    values.update(acl=tuple(row.acl), title=row.title or row.path, url=row.url or "")
    return ChunkRecord(**values)


def source_record(row: Any) -> SourceRecord:
    values = row._asdict()
    values.update(config=dict(row.config), access=tuple(sorted(row.access)))
    return SourceRecord(**values)


# -- jobs and schedules (admin jobs, cancel, per-source sync intervals) ---------------------------

# A source's own sync interval (seconds; 0 = never scheduled). No row: the default interval applies.
source_schedules = Table(
    "source_schedules", metadata,
    Column("source", String, primary_key=True),
    Column("interval_seconds", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# -- permissions passes (indexer/pipeline/permissions.py) -------------------------------------------

# Per source: when its last permissions pass ran and last succeeded (no failed item), and its last error.
# With the source's last successful sync this says how fresh its documents' access is (fail closed).
permission_syncs = Table(
    "permission_syncs", metadata,
    Column("source", String, primary_key=True),
    Column("last_attempt_at", UTCDateTime, nullable=False),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text, nullable=False),
)


@dataclass(frozen=True)
class PermissionSyncRecord:
    source: str
    last_attempt_at: datetime
    last_success_at: datetime | None
    last_error: str


# -- learned ranking (retrieval/learned_ranking.py) ------------------------------------------------

# Per source: the feature weights `cairn ranker fit` learned from the source's own commits, with what the
# fit measured on its held-out commits; `kept` is false when the learned weights did not beat the defaults
# (the record then says so and search keeps the default weights).
ranker_weights = Table(
    "ranker_weights", metadata,
    Column("source", String, primary_key=True),
    Column("weights", JSON, nullable=False),
    Column("fitted_at", UTCDateTime, nullable=False),
    Column("pairs", Integer, nullable=False),
    Column("held_out", Integer, nullable=False),
    Column("mrr_default", Float, nullable=False),
    Column("mrr_learned", Float, nullable=False),
    Column("kept", Boolean, nullable=False),
    Column("seconds", Float, nullable=False),
)


@dataclass(frozen=True)
class RankerFitRecord:
    source: str
    weights: dict[str, float]
    fitted_at: datetime
    pairs: int  # (commit message, touched files) pairs used, training and held out
    held_out: int
    mrr_default: float  # held-out MRR of the touched files with the default weights
    mrr_learned: float
    kept: bool
    seconds: float


# -- index generations (zero-downtime rebuilds, indexer/generations/state.py) ---------------------------

# The chunk rows of a generation being built, kept apart so `chunks` keeps matching the serving
# stores until the swap replaces `chunks` with them (same columns as `chunks`).
generation_chunks = Table(
    "generation_chunks", metadata,
    Column("generation", Integer, primary_key=True),
    *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in chunks.columns),
    Index("ix_generation_chunks_generation_doc", "generation", "doc_id"),
)

# Which documents a building generation holds, stamped with the `documents.indexed_at` they were
# built from: a document rewritten since (a sync during the build) is built again before the swap.
generation_documents = Table(
    "generation_documents", metadata,
    Column("generation", Integer, primary_key=True),
    Column("doc_id", String, primary_key=True),
    Column("stamp", UTCDateTime, nullable=False),
    Column("n_chunks", Integer, nullable=False),
)


# -- distributed indexing (index queue, job accounting, quarantine: workers/queue_state.py) -------

# One row per batch a distributed sync sent: the job is done when its crawl finished sending and
# every batch it sent is applied. Applying a batch twice counts once (state flips once).
queue_batches = Table(
    "queue_batches", metadata,
    Column("job_id", String, primary_key=True),
    Column("batch_id", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("kind", String, nullable=False),  # "documents" (embed → index) or "deletions" (index only)
    Column("docs", Integer, nullable=False),
    # "sent" → "applied" (or "dropped": its job was cancelled, or had finished when the batch came)
    Column("state", String, nullable=False),
    Column("counts", JSON, nullable=False),
    Column("started_by", String, nullable=False, default=""),  # worker that last began embedding it
    Column("started_at", UTCDateTime),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),
    # The crawl's order of its batches (None: a retry or deletions batch), and the partial checkpoint a
    # batch's end reached with the read counts up to it: stored once it and every batch before it applied.
    Column("seq", Integer),
    Column("checkpoint", JSON),
)

# A distributed sync's crawl: what it saw, and what to record once every batch is applied.
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
    Column("stored", JSON),  # the partial checkpoint stored last: its batch's seq and the read counts up to it
)

# The index owner (workers/index_owner.py): the one `cairn serve` node that consumes `index` and owns the
# Edge shard, for as long as it renews its lease. `index_id` names the copy of the index it serves (a file in
# its data dir), so only a node holding that same copy (a shared volume) may take over.
index_leases = Table(
    "index_leases", metadata,
    Column("name", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("url", String, nullable=False),
    Column("index_id", String, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("renewed_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Tasks running on Celery workers, renewed by a heartbeat while they run (workers/task_leases.py): a task
# whose heartbeat stopped died with its worker and is redelivered without waiting for the broker's
# visibility timeout.
task_leases = Table(
    "task_leases", metadata,
    Column("task_id", String, primary_key=True),
    Column("task", String, nullable=False),
    Column("worker", String, nullable=False),
    Column("job_id", String, index=True),
    Column("state", String, nullable=False),  # "running" → "redelivered" (its worker died)
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)

# Processing attempts per document version, counted *before* processing so a batch that kills its
# worker still counts; at `quarantine_after` attempts the version is quarantined until it changes.
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


# -- secret redactions (indexer/secrets/screen.py writes them through indexer/secrets/redaction_log.py) ------

# How many secrets were redacted from each indexed document, per rule, and on which lines: never the
# secret, nor its hash or length. Rows of deleted documents are removed with them (and ignored by the
# per-source summaries if a source is dropped wholesale).
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


# -- API tokens, audit log and result feedback (api/tokens.py and api/audit.py read and write them) ----------
# They live on the catalog's metadata, so the catalog's migrations own them; the api reads and writes them.

# Only the SHA-256 hash of a token is kept: the clear token is shown once, when it is created.
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
    # A personal token's owner (users.subject): it acts as that person, resolved when each request arrives,
    # and stops when the person is deactivated. NULL for service tokens made with `cairn tokens create`.
    Column("subject", String(255), nullable=True, index=True),
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


# -- identity: people signed in through the organization's IdP, and web sessions (api/sessions.py) ------

# One row per person the IdP signed in, keyed by the IdP's stable subject (`sub`). Later identity work
# links these to each source's accounts; today it names the user of a JWT access token without a name.
users = Table(
    "users", metadata,
    Column("subject", String(255), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("email", String(320), nullable=False),
    Column("email_verified", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime, nullable=False),
    # What the IdP said at the last sign-in (groups claim, admin by CAIRN_ADMIN_GROUPS); requests made with
    # the person's JWTs or personal tokens use these when the request itself carries no groups.
    Column("groups", JSON, nullable=False, default=list),
    Column("admin", Boolean, nullable=False, default=False),
    # False once the IdP deprovisions the person (SCIM): their sessions and tokens stop at once.
    Column("active", Boolean, nullable=False, default=True),
)

# A web UI session: the browser's cookie holds a random id, this table only its SHA-256. The principal
# is fixed at sign-in (OIDC: from the ID token and userinfo) or read again from the token it was opened
# with (`token_id`: revoking the token ends the session). Signing out deletes the row.
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

# An OIDC sign-in under way: keyed by the SHA-256 of a random id in a short-lived cookie (so the answer
# must come back to the browser that started it), with its state, nonce and PKCE verifier. Used once.
login_requests = Table(
    "login_requests", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("state", String(128), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", Text, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# -- One person across systems (indexer/identity) ---------------------------------------------------------
# A Cairn user (users.subject: the OIDC `sub`) linked to one account per identity realm (gitlab, atlassian,
# ...): found by verified email through a source's API at sync time (`method` = email) or set by an admin
# (`cairn users link`, method = admin; an admin link is never replaced by an email match). An account is
# linked to at most one Cairn user.
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

# Group memberships read from a source on the permissions schedule: account (of `realm`) is a member of
# `principal` (a namespaced group or role principal such as gitlab:group:a/b, atlassian:group:devs), as
# synced by `source`. Each source's pass replaces its own rows, so a removal at the source stops granting
# access after one pass. `level` keeps GitLab's access level where it matters (NULL elsewhere).
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

# -- SCIM 2.0 provisioning (api/scim.py, api/provisioning.py) ---------------------------------------------
# A user the organization's IdP provisioned over SCIM, keyed by the id Cairn gave it. `subject` names the
# `users` row (the OIDC `sub`) once known: at provisioning when the person already signed in (matched by
# externalId = sub, userName = username, or a verified email), else at their first sign-in. `resource` keeps
# the attributes as the IdP sent them (echoed back: IdPs compare them). Deactivating one ends the person's
# sessions and revokes their personal tokens at once.
scim_users = Table(
    "scim_users", metadata,
    Column("id", String(36), primary_key=True),
    Column("subject", String(255), nullable=True, unique=True),
    Column("user_key", String(255), nullable=False, unique=True),  # userName, lower case (caseExact false)
    Column("email_key", String(320), nullable=True, index=True),  # the primary (else first) email, lower case
    Column("external_id", String(255), nullable=True, index=True),
    Column("active", Boolean, nullable=False),
    Column("resource", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A group the IdP provisioned, and its members (scim_users ids). Its display name is the group name that
# feeds `idp:group:<name>`: members' `users.groups` follow every membership change at once.
scim_groups = Table(
    "scim_groups", metadata,
    Column("id", String(36), primary_key=True),
    Column("display_name", String(255), nullable=False, unique=True),
    Column("external_id", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

scim_group_members = Table(
    "scim_group_members", metadata,
    Column("group_id", String(36), primary_key=True),
    Column("user_id", String(36), primary_key=True, index=True),
)
