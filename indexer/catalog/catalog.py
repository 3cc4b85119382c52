"""The catalog: sources, document versions, chunk rows, skips, failures and jobs (SQLite or PostgreSQL)."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from indexer.catalog.db import id_batches
from indexer.catalog.schema import (
    ChunkDiff,
    ChunkRecord,
    DocumentRecord,
    FailureRecord,
    JobRecord,
    PermissionSyncRecord,
    RankerFitRecord,
    SourceRecord,
    UTCDateTime,
    chunk_record,
    chunk_row,
    chunks,
    document_attempts,
    document_row,
    documents,
    failures,
    generation_chunks,
    generation_documents,
    jobs,
    meta,
    permission_syncs,
    queue_batches,
    queue_crawls,
    ranker_weights,
    redactions,
    skipped,
    source_record,
    source_schedules,
    sources,
    unpack_text,
)
from indexer.models import ADMINS, Access, AccessError, Chunk, Document, Skipped, SkipReason, SyncFailure

log = logging.getLogger(__name__)

SOURCE_STATES = ("idle", "syncing", "degraded", "error")
DOCUMENT_STATES = ("lexical", "indexed")
# `partial`: finished, but some items failed (a permissions pass whose connector could not read some).
JOB_STATES = ("queued", "running", "cancelling", "cancelled", "interrupted", "succeeded", "partial", "failed")
ACTIVE_JOB_STATES = ("queued", "running", "cancelling")
# Stopped for good, or until resumed (interrupted): finished_at is stamped.
FINISHED_JOB_STATES = ("succeeded", "partial", "failed", "cancelled", "interrupted")
# Keeps every IN (...) well under SQLite's bound-variable limit (999 on old builds).


class CatalogError(RuntimeError):
    """A catalog operation referred to something that does not exist or cannot be stored."""


class SchemaError(CatalogError):
    """The catalog's schema is not the one this version of Cairn runs on (the message says what to do)."""


def _now() -> datetime:
    return datetime.now(UTC)


# Columns of `Catalog.search_rows`, in order (title and url come from the chunk's document).
SEARCH_COLUMNS = ("id", "doc_id", "source", "path", "start_line", "end_line", "content", "symbol", "kind",
                  "language", "title", "url")



def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT construct, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise CatalogError(f"unsupported catalog database: {conn.dialect.name}")


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str],
            columns: Sequence[str] | None = None) -> None:
    """Insert rows; on a key conflict overwrite `columns` (default: every non-key column)."""
    if not rows:
        return
    stmt = _insert(conn, table)
    names = columns if columns is not None else [c.name for c in table.c if c.name not in keys]
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={n: stmt.excluded[n] for n in names})
    conn.execute(stmt, rows)


def _job_record(row: Any) -> JobRecord:
    values = row._asdict()
    values["params"] = values.get("params") or {}
    return JobRecord(**values)


def _chunk_ids_by_doc(conn: Connection, doc_ids: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for batch in id_batches(sorted(set(doc_ids))):
        query = select(chunks.c.doc_id, chunks.c.id).where(chunks.c.doc_id.in_(batch))
        for doc_id, chunk_id in conn.execute(query.order_by(chunks.c.doc_id, chunks.c.ordinal)):
            out.setdefault(doc_id, []).append(chunk_id)
    return out


class Catalog:
    """All catalog reads and writes; every method runs in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_all(self) -> None:
        """Create or upgrade the schema with the migrations, whatever the catalog holds (fresh, made by an
        earlier version without `alembic_version`, stamped old, current). Servers and workers go through
        `open_catalog`, which upgrades only the embedded catalog (indexer/catalog/migrate.py)."""
        from indexer.catalog.migrate import upgrade_engine

        upgrade_engine(self.engine)

    # -- sources -------------------------------------------------------------------------------

    def upsert_source(self, name: str, kind: str, config: dict[str, Any], access: Access | Iterable[str]) -> None:
        """Create a source, or change its kind/config/access (its checkpoint and state are kept)."""
        access = access if isinstance(access, Access) else Access.of(*access)
        row = {"name": name, "kind": kind, "config": config, "access": sorted(access.principals),
               "state": "idle", "last_error": "", "created_at": _now()}
        with self.engine.begin() as conn:
            _upsert(conn, sources, [row], ["name"], ["kind", "config", "access"])

    def get_source(self, name: str) -> SourceRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(sources).where(sources.c.name == name)).first()
        return source_record(row) if row else None

    def list_sources(self) -> list[SourceRecord]:
        with self.engine.connect() as conn:
            return [source_record(r) for r in conn.execute(select(sources).order_by(sources.c.name))]

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        """The source's last recorded checkpoint (None when it has none or does not exist)."""
        with self.engine.connect() as conn:
            return conn.execute(select(sources.c.checkpoint).where(sources.c.name == name)).scalar_one_or_none()

    def set_checkpoint(self, name: str, checkpoint: dict[str, Any] | None) -> None:
        self._update_source(name, checkpoint=checkpoint)

    def set_source_state(self, name: str, state: str, error: str = "", listed_all: bool | None = None) -> None:
        """`syncing` stamps last_sync_at; `idle` stamps last_success_at; `degraded` (a partial sync) and
        `error` record the reason. last_success_at is the last sync that listed the whole source: a
        degraded sync whose listings all succeeded (`listed_all`, only items failed) stamps it too, one
        with a failed listing never does (permission freshness reads it: unlisted scopes are not fresh)."""
        if state not in SOURCE_STATES:
            raise CatalogError(f"unknown source state {state!r}")
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == "syncing":
            values = {"state": state, "last_sync_at": _now()}
        elif state == "idle" or (state == "degraded" and listed_all):
            values["last_success_at"] = _now()
        self._update_source(name, **values)

    def delete_source(self, name: str) -> dict[str, int]:
        """Forget a source and everything the catalog holds about it, in one transaction: its documents,
        chunks, skips, failures, redaction counts, checkpoint, schedule, queue state (batches, crawls,
        document attempts) and the rows a building generation copied. Its job history stays (pruned by
        retention). Returns how many rows of each kind were removed; the stores are the caller's."""
        removed: dict[str, int] = {}
        with self.engine.begin() as conn:
            removed["checkpoint"] = int(conn.execute(select(func.count()).select_from(sources).where(
                sources.c.name == name, sources.c.checkpoint.is_not(None))).scalar_one())
            doc_ids = list(conn.execute(select(documents.c.id).where(documents.c.source == name)).scalars())
            for batch in id_batches(doc_ids):
                conn.execute(delete(generation_documents).where(generation_documents.c.doc_id.in_(batch)))
            for label, table in (("chunks", chunks), ("documents", documents), ("skipped", skipped),
                                 ("failures", failures), ("redactions", redactions), ("permission_syncs", permission_syncs),
                                 ("generation_chunks", generation_chunks), ("queue_batches", queue_batches),
                                 ("queue_crawls", queue_crawls), ("document_attempts", document_attempts),
                                 ("ranker_weights", ranker_weights)):
                removed[label] = conn.execute(delete(table).where(table.c.source == name)).rowcount
            removed["schedule"] = conn.execute(delete(source_schedules).where(
                source_schedules.c.source == name)).rowcount
            removed["source"] = conn.execute(delete(sources).where(sources.c.name == name)).rowcount
        log.info("deleted source %s: %s", name, removed)
        return removed

    def reset_index(self) -> None:
        """Forget every indexed document, chunk, skip, failure and checkpoint; sources and jobs stay."""
        with self.engine.begin() as conn:
            for table in (chunks, documents, skipped, failures, redactions):
                conn.execute(delete(table))
            conn.execute(update(sources).values(checkpoint=None))
        log.info("catalog index state reset")

    def _update_source(self, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(update(sources).where(sources.c.name == name).values(**values))
        if result.rowcount == 0:
            raise CatalogError(f"unknown source {name!r}")

    # -- documents and chunks ------------------------------------------------------------------

    def document_versions(self, source: str) -> dict[str, str]:
        """doc id → indexed version: exactly the `known` mapping a connector's sync takes."""
        return self._document_column(source, documents.c.version)

    def access_digests(self, source: str) -> dict[str, str]:
        """doc id → digest of the Access it was indexed with (drop changed ones from `known`)."""
        return self._document_column(source, documents.c.access_digest)

    def acl_principals(self, source: str) -> set[str]:
        """Every principal the ACLs of the source's indexed chunks name (whose memberships matter)."""
        out: set[str] = set()
        with self.engine.connect() as conn:
            for (acl,) in conn.execute(select(chunks.c.acl).where(chunks.c.source == source)):
                out.update(json.loads(acl) if isinstance(acl, str) else acl or [])
        return out

    def _document_column(self, source: str, column: Any) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(documents.c.id, column).where(documents.c.source == source))
            return dict(rows.all())

    def sources_of(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """doc id → source, for the ids the catalog holds."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                query = select(documents.c.id, documents.c.source).where(documents.c.id.in_(batch))
                out.update(dict(conn.execute(query).all()))
        return out

    def chunk_ids_for(self, doc_ids: Iterable[str]) -> dict[str, list[str]]:
        """doc id → its chunk ids in ordinal order (documents without chunks are absent)."""
        with self.engine.connect() as conn:
            return _chunk_ids_by_doc(conn, doc_ids)

    def replace_document(self, doc: Document, doc_chunks: Sequence[Chunk], content: str | None = None,
                         state: str = "indexed") -> ChunkDiff:
        """Make the stored document and its chunk rows exactly these; applying it twice changes nothing.

        `content` is the text served for the document (default doc.content; pass redacted text).
        `state` is `lexical` while embeddings are pending (see pending_chunks) or `indexed`."""
        return self.replace_documents([(doc, doc_chunks, content)], state)[doc.id]

    def replace_documents(self, items: Sequence[tuple[Document, Sequence[Chunk], str | None]],
                          state: str = "indexed") -> dict[str, ChunkDiff]:
        """replace_document for a batch of (document, chunks, content) in one transaction."""
        if state not in DOCUMENT_STATES:
            raise CatalogError(f"unknown document state {state!r}")
        latest = {doc.id: (doc, doc_chunks, content) for doc, doc_chunks, content in items}
        new = {doc_id: {c.id: chunk_row(c) for c in item[1]} for doc_id, item in latest.items()}
        doc_rows = [document_row(doc, len(new[doc.id]), doc.content if text is None else text, state)
                    for doc, _, text in latest.values()]
        with self.engine.begin() as conn:
            old = _chunk_ids_by_doc(conn, list(new))
            removed = {doc_id: sorted(set(old.get(doc_id, ())) - rows.keys()) for doc_id, rows in new.items()}
            for batch in id_batches([cid for ids in removed.values() for cid in ids]):
                conn.execute(delete(chunks).where(chunks.c.id.in_(batch)))
            _upsert(conn, documents, doc_rows, ["id"])
            _upsert(conn, chunks, [row for rows in new.values() for row in rows.values()], ["id"])
        return {doc_id: ChunkDiff(added=tuple(sorted(rows.keys() - set(old.get(doc_id, ())))),
                                  removed=tuple(removed[doc_id])) for doc_id, rows in new.items()}

    def pending_chunks(self, source: str, limit: int) -> tuple[list[str], list[Chunk]]:
        """Some `lexical` documents of a source (whole documents, about `limit` chunks) and their chunks."""
        query = (select(documents.c.id, documents.c.n_chunks)
                 .where(documents.c.source == source, documents.c.state == "lexical")
                 .order_by(documents.c.id).limit(max(limit, 1)))
        doc_ids: list[str] = []
        total = 0
        with self.engine.connect() as conn:
            for doc_id, n_chunks in conn.execute(query):
                if doc_ids and total + n_chunks > limit:
                    break
                doc_ids.append(doc_id)
                total += n_chunks
        records = self._chunk_records(chunks.c.doc_id, doc_ids)
        ordered = sorted(records.values(), key=lambda r: (r.doc_id, r.ordinal))
        return doc_ids, [r.to_chunk() for r in ordered]

    def mark_indexed(self, doc_ids: Iterable[str]) -> None:
        """Embeddings are written for these documents."""
        with self.engine.begin() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                conn.execute(update(documents).where(documents.c.id.in_(batch)).values(state="indexed"))

    def chunk_ids_of_source(self, source: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(chunks.c.id).where(chunks.c.source == source)).scalars())

    def delete_documents(self, doc_ids: Iterable[str]) -> list[str]:
        """Delete documents and their chunk rows; returns the chunk ids that were removed."""
        removed: list[str] = []
        with self.engine.begin() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                removed += conn.execute(select(chunks.c.id).where(chunks.c.doc_id.in_(batch))).scalars()
                conn.execute(delete(chunks).where(chunks.c.doc_id.in_(batch)))
                conn.execute(delete(documents).where(documents.c.id.in_(batch)))
        return removed

    def get_chunks(self, chunk_ids: Iterable[str]) -> dict[str, ChunkRecord]:
        """Chunk rows with their document's title and url, by id (unknown ids are absent)."""
        return self._chunk_records(chunks.c.id, chunk_ids)

    def search_rows(self, chunk_ids: Iterable[str]) -> dict[str, tuple]:
        """What a search shows of each chunk, as plain tuples in `SEARCH_COLUMNS` order, by id.

        The search path's hydration, run for ~100 candidates of every query: one narrow indexed
        lookup per batch of ids and no record objects (`get_chunks` costs ~5x more). On SQLite the
        rows come back as one JSON array from one statement step: Python's sqlite3 releases and
        re-takes the GIL for every row it steps, and under concurrent searches each re-take waits
        for whichever thread holds the GIL (a vector search holds it for milliseconds), so 100 rows
        meant 100 waits (bench/scale_1m.py: hydration p50 99 ms at 8 clients)."""
        columns = [*(chunks.c[name] for name in SEARCH_COLUMNS[:-2]), documents.c.title, documents.c.url]
        joined = chunks.outerjoin(documents, documents.c.id == chunks.c.doc_id)
        out: dict[str, tuple] = {}
        with self.engine.connect() as conn:
            as_json = conn.dialect.name == "sqlite"
            query = (select(func.json_group_array(func.json_array(*columns))) if as_json
                     else select(*columns)).select_from(joined)
            for batch in id_batches(sorted(set(chunk_ids))):
                result = conn.execute(query.where(chunks.c.id.in_(batch)))
                rows = json.loads(result.scalar_one()) if as_json else result
                out.update((row[0], tuple(row)) for row in rows)
        return out

    def _chunk_records(self, column: Any, values: Iterable[str]) -> dict[str, ChunkRecord]:
        query = select(chunks, documents.c.title, documents.c.url).select_from(
            chunks.outerjoin(documents, documents.c.id == chunks.c.doc_id))
        out: dict[str, ChunkRecord] = {}
        with self.engine.connect() as conn:
            for batch in id_batches(sorted(set(values))):
                out.update((row.id, chunk_record(row)) for row in conn.execute(query.where(column.in_(batch))))
        return out

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        """A stored document with its full (decompressed) text."""
        with self.engine.connect() as conn:
            row = conn.execute(select(documents).where(documents.c.id == doc_id)).first()
        if row is None:
            return None
        return DocumentRecord(**{**row._asdict(), "content": unpack_text(row.content)})

    def document_texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """Stored documents' full (decompressed) text by id, in one read per batch (unknown ids are absent)."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                rows = conn.execute(select(documents.c.id, documents.c.content).where(documents.c.id.in_(batch)))
                out.update((doc_id, unpack_text(content)) for doc_id, content in rows)
        return out

    def document_acl(self, doc_id: str) -> tuple[str, ...] | None:
        """Who may read a stored document (None when there is no such document).

        The ACL is the one written on its chunks, checked against the document's access digest;
        a document without chunks takes its source's access when the digests agree. Anything
        inconsistent fails closed to admins only."""
        with self.engine.connect() as conn:
            digest = conn.execute(select(documents.c.access_digest, documents.c.source)
                                  .where(documents.c.id == doc_id)).first()
            if digest is None:
                return None
            acl = conn.execute(select(chunks.c.acl).where(chunks.c.doc_id == doc_id).limit(1)).scalar_one_or_none()
            if acl is None:
                acl = conn.execute(select(sources.c.access).where(sources.c.name == digest.source)).scalar_one_or_none()
        try:
            candidate = Access.of(*(p for p in (acl or ()) if p != ADMINS))
        except AccessError:
            return (ADMINS,)
        return tuple(candidate.acl()) if candidate.digest() == digest.access_digest else (ADMINS,)

    def counts(self, source: str | None = None) -> dict[str, int]:
        """How many documents, chunks, skipped files and failing items (of one source, or all)."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for label, table in (("documents", documents), ("chunks", chunks), ("skipped", skipped),
                                 ("failures", failures)):
                query = select(func.count()).select_from(table)
                if source is not None:
                    query = query.where(table.c.source == source)
                out[label] = conn.execute(query).scalar_one()
        return out

    # -- skipped files and failing items -------------------------------------------------------

    def record_skipped(self, *items: Skipped) -> None:
        """Record skipped files (stamped now; re-recording refreshes reason and time)."""
        now = _now()
        rows = {(s.source, s.path): {"source": s.source, "path": s.path, "reason": SkipReason(s.reason).value,
                                     "detail": s.detail, "seen_at": now} for s in items}
        with self.engine.begin() as conn:
            _upsert(conn, skipped, list(rows.values()), ["source", "path"])

    def clear_skipped(self, source: str, paths: Iterable[str] | None = None, before: datetime | None = None) -> int:
        """Forget skips of a source: the given paths and/or those not seen since `before`, or all."""
        conds = [skipped.c.source == source]
        if before is not None:
            conds.append(skipped.c.seen_at < literal(before, UTCDateTime))
        with self.engine.begin() as conn:
            if paths is None:
                return conn.execute(delete(skipped).where(*conds)).rowcount
            return sum(conn.execute(delete(skipped).where(*conds, skipped.c.path.in_(batch))).rowcount
                       for batch in id_batches(sorted(set(paths))))

    def list_skipped(self, source: str) -> list[Skipped]:
        query = select(skipped).where(skipped.c.source == source).order_by(skipped.c.path)
        with self.engine.connect() as conn:
            return [Skipped(r.source, r.path, SkipReason(r.reason), r.detail) for r in conn.execute(query)]

    def record_failure(self, failure: SyncFailure) -> None:
        """Record a failing item; a repeat failure increments its attempts."""
        row = {"source": failure.source, "item": failure.item, "error": failure.error, "attempts": 1,
               "last_seen_at": _now()}
        with self.engine.begin() as conn:
            stmt = _insert(conn, failures)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["source", "item"],
                set_={"error": stmt.excluded.error, "last_seen_at": stmt.excluded.last_seen_at,
                      "attempts": failures.c.attempts + 1}), [row])

    def clear_failure(self, source: str, item: str) -> None:
        self.clear_failures(source, [item])

    def clear_failures(self, source: str, items: Iterable[str]) -> None:
        """Forget the failures of these items (one transaction for a whole batch)."""
        with self.engine.begin() as conn:
            for batch in id_batches(sorted(set(items))):
                conn.execute(delete(failures).where(failures.c.source == source, failures.c.item.in_(batch)))

    def list_failures(self, source: str) -> list[FailureRecord]:
        query = select(failures).where(failures.c.source == source).order_by(failures.c.item)
        with self.engine.connect() as conn:
            return [FailureRecord(**r._asdict()) for r in conn.execute(query)]

    def quarantined(self, source: str) -> dict[str, str]:
        """doc id → version of the source's document versions the embed queue quarantined: a sync
        skips them until they change (the queue's workers record them, workers/queue_state.py)."""
        t = document_attempts.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.doc_id, t.version).where(t.source == source, t.quarantined == 1))
            return {r.doc_id: r.version for r in rows}

    # -- permissions passes ---------------------------------------------------------------------

    def record_permission_pass(self, source: str, error: str = "") -> None:
        """A permissions pass of the source ended: without `error` it succeeded (stamps last_success_at);
        with one it failed or some items failed (the last success is kept)."""
        now = _now()
        row = {"source": source, "last_attempt_at": now, "last_success_at": None if error else now,
               "last_error": error}
        columns = ["last_attempt_at", "last_error"] + ([] if error else ["last_success_at"])
        with self.engine.begin() as conn:
            _upsert(conn, permission_syncs, [row], ["source"], columns)

    def permission_syncs(self) -> dict[str, PermissionSyncRecord]:
        """source → its permissions pass record (sources never passed are absent)."""
        with self.engine.connect() as conn:
            return {r.source: PermissionSyncRecord(**r._asdict()) for r in conn.execute(select(permission_syncs))}

    # -- learned ranking ------------------------------------------------------------------------

    def save_ranker_fit(self, fit: RankerFitRecord) -> None:
        """Store a source's latest fit, replacing the one before."""
        row = {**fit.__dict__, "weights": dict(fit.weights)}
        with self.engine.begin() as conn:
            _upsert(conn, ranker_weights, [row], ["source"])

    def ranker_fits(self) -> dict[str, RankerFitRecord]:
        """source → its latest fit (sources never fitted are absent)."""
        with self.engine.connect() as conn:
            return {r.source: RankerFitRecord(**{**r._asdict(), "kept": bool(r.kept)})
                    for r in conn.execute(select(ranker_weights))}

    def clear_ranker_fit(self, source: str) -> bool:
        """Forget a source's fit; False if it had none."""
        with self.engine.begin() as conn:
            return conn.execute(delete(ranker_weights).where(ranker_weights.c.source == source)).rowcount > 0

    def document_kinds(self, source: str) -> dict[str, str]:
        """doc id → kind of every document of the source (code, doc, commit, ...)."""
        return self._document_column(source, documents.c.kind)

    # -- jobs -----------------------------------------------------------------------------------

    def create_job(self, job_id: str | None, source: str, kind: str, total: int = 0,
                   params: dict[str, Any] | None = None) -> str:
        """A new `queued` job (under the given id, e.g. a task id, or a fresh uuid); returns its id.

        `params` is what the job was asked to do (e.g. {"full": true} or {"since_seconds": 172800}),
        so a job interrupted by a shutdown can be resumed as it was submitted."""
        job_id = job_id or str(uuid.uuid4())
        row = {"id": job_id, "source": source, "kind": kind, "state": "queued", "counts": {}, "error": "",
               "created_at": _now(), "done": 0, "total": total, "params": params or {}}
        with self.engine.begin() as conn:
            conn.execute(jobs.insert(), [row])
        return job_id

    def update_job(self, job_id: str, *, state: str | None = None, counts: dict[str, Any] | None = None,
                   error: str | None = None, done: int | None = None, total: int | None = None) -> None:
        """Change a job; `running` stamps started_at once, a finished state stamps finished_at."""
        fields = {"counts": counts, "error": error, "done": done, "total": total}
        values: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if state is not None:
            if state not in JOB_STATES:
                raise CatalogError(f"unknown job state {state!r}")
            values["state"] = state
            if state == "running":
                values["started_at"] = func.coalesce(jobs.c.started_at, literal(_now(), UTCDateTime))
            if state in FINISHED_JOB_STATES:
                values["finished_at"] = _now()
        if not values:
            return
        with self.engine.begin() as conn:
            if conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values)).rowcount == 0:
                raise CatalogError(f"unknown job {job_id!r}")

    def start_job(self, job_id: str) -> str:
        """Mark a job `running` unless a cancel was asked for; returns its state afterwards.

        One conditional UPDATE, so a cancel requested while the job waited in a queue is never
        overwritten by the worker picking it up. A cancelling job becomes `cancelled`."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state.not_in(("cancelling", "cancelled")))
                         .values(state="running", finished_at=None, error="",
                                 started_at=func.coalesce(jobs.c.started_at, literal(_now(), UTCDateTime))))
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "cancelling")
                         .values(state="cancelled", finished_at=_now()))
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one_or_none()
        if state is None:
            raise CatalogError(f"unknown job {job_id!r}")
        return state

    def job_state(self, job_id: str) -> str | None:
        """Just the state (read after every batch to notice a cancel request)."""
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one_or_none()

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Ask a queued or running job to stop: it becomes `cancelling`, and its runner stops after the
        batch it is applying (state `cancelled`). Finished jobs are left as they are. None: no such job."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(("queued", "running")))
                         .values(state="cancelling"))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return _job_record(row) if row else None

    def job_ids_starting(self, prefix: str, limit: int = 20) -> list[str]:
        """Ids of jobs that start with `prefix` (people type the first characters of an id)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = select(jobs.c.id).where(jobs.c.id.like(f"{escaped}%", escape="\\")).order_by(jobs.c.id).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def list_jobs(self, source: str | None = None, limit: int = 50, state: str | Sequence[str] | None = None,
                  kind: str | None = None) -> list[JobRecord]:
        """Newest first; optionally of one source, in one state (or any of several), of one kind."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
        if source is not None:
            query = query.where(jobs.c.source == source)
        if state is not None:
            query = query.where(jobs.c.state.in_([state] if isinstance(state, str) else list(state)))
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        with self.engine.connect() as conn:
            return [_job_record(r) for r in conn.execute(query)]

    def active_job_sources(self, kinds: Sequence[str] | None = None) -> set[str]:
        """Sources with a queued, running or cancelling job (of these kinds)."""
        query = select(jobs.c.source).where(jobs.c.state.in_(ACTIVE_JOB_STATES)).distinct()
        if kinds is not None:
            query = query.where(jobs.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def job_state_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
            return dict(rows.all())

    def prune_jobs(self, before: datetime) -> int:
        """Delete finished jobs that finished before `before`; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(jobs).where(jobs.c.state.in_(FINISHED_JOB_STATES),
                                                   jobs.c.finished_at < literal(before, UTCDateTime))).rowcount

    def release_source(self, name: str) -> None:
        """Back to `idle` after a sync that stopped early (cancelled/interrupted): not a success."""
        self._update_source(name, state="idle", last_error="")

    def pending_chunk_count(self, source: str) -> int:
        """Chunks of the source's `lexical` documents: what is left to embed (a job's ETA)."""
        query = select(func.coalesce(func.sum(documents.c.n_chunks), 0)).where(
            documents.c.source == source, documents.c.state == "lexical")
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def skip_reasons_since(self, source: str, since: datetime) -> dict[str, int]:
        """reason → how many of the source's files were skipped for it since `since` (a job's start)."""
        query = (select(skipped.c.reason, func.count()).where(
            skipped.c.source == source, skipped.c.seen_at >= literal(since, UTCDateTime)).group_by(skipped.c.reason))
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            _upsert(conn, meta, [{"key": key, "value": value}], ["key"])
