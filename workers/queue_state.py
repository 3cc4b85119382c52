"""Catalog state of distributed syncs: crawls, the batches they sent, and per-document attempts/quarantine.

Shared by every process (API/index node and workers) through the catalog database, so a job's
progress survives any one of them being killed."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, case, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from indexer.catalog.schema import document_attempts, documents, queue_batches, queue_crawls, sources
from indexer.models import Document

ADVANCING = ("crawling", "sent", "stopped")  # crawls whose applied batches still move the source's checkpoint
APPLIED_COUNT_KEYS = ("files_changed", "files_deleted", "files_quarantined", "chunks_written",
                      "chunks_deleted", "chunks_embedded", "docs")


def _now() -> datetime:
    return datetime.now(UTC)


def _insert(engine_or_conn: Any, table: Any) -> Any:
    return (postgresql if engine_or_conn.dialect.name == "postgresql" else sqlite).insert(table)


def _inserted(conn: Any, row: dict[str, Any]) -> bool:
    """Insert a queue_batches row unless it exists; True when it was inserted. RETURNING, not the rowcount:
    PostgreSQL's driver does not report an ON CONFLICT DO NOTHING insert's rows reliably."""
    stmt = _insert(conn, queue_batches).values(**row).on_conflict_do_nothing().returning(queue_batches.c.batch_id)
    return conn.execute(stmt).first() is not None


@dataclass(frozen=True)
class CrawlRecord:
    job_id: str
    source: str
    state: str
    attempt: int
    full: bool
    counts: dict[str, Any]  # read counts (cumulative over attempts), `base` and `resume` (workers.distributed)
    failed_items: list[str]
    checkpoint: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime
    stored: dict[str, Any] | None = None  # the partial checkpoint stored last: {"seq", "resume"} (advance_checkpoint)


@dataclass(frozen=True)
class Attempts:
    version: str
    attempts: int
    quarantined: bool
    error: str


@dataclass(frozen=True)
class Progress:
    sent: int
    applied: int
    docs_sent: int
    counts: dict[str, int]  # summed over applied batches
    docs_pending: int = 0  # in batches sent and not yet applied (nor dropped)
    docs_applied: int = 0  # in applied batches, as they were sent
    first_sent: datetime | None = None  # when the job's first batch was sent: its embedding started


class QueueState:
    """Reads and writes the queue_* and document_attempts tables; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- crawls ---------------------------------------------------------------------------------

    def begin_crawl(self, job_id: str, source: str, full: bool) -> int:
        """Start (or restart after a crash) a job's crawl; returns the attempt number."""
        now = _now()
        row = {"job_id": job_id, "source": source, "state": "crawling", "attempt": 1, "full": int(full),
               "counts": {}, "failed_items": [], "checkpoint": None, "started_at": now, "updated_at": now}
        with self.engine.begin() as conn:
            stmt = _insert(conn, queue_crawls)
            conn.execute(stmt.on_conflict_do_update(index_elements=["job_id"], set_={
                "state": "crawling", "attempt": queue_crawls.c.attempt + 1, "counts": {}, "failed_items": [],
                "updated_at": now}), [row])
            return conn.execute(select(queue_crawls.c.attempt).where(queue_crawls.c.job_id == job_id)).scalar_one()

    def crawl(self, job_id: str) -> CrawlRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(queue_crawls).where(queue_crawls.c.job_id == job_id)).first()
        if row is None:
            return None
        values = row._asdict()
        values.update(full=bool(row.full), counts=dict(row.counts or {}), failed_items=list(row.failed_items or []))
        return CrawlRecord(**values)

    def save_crawl(self, job_id: str, state: str | None = None, counts: dict[str, int] | None = None,
                   failed_items: Iterable[str] | None = None, checkpoint: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"updated_at": _now()}
        if state is not None:
            values["state"] = state
        if counts is not None:
            values["counts"] = dict(counts)
        if failed_items is not None:
            values["failed_items"] = sorted(set(failed_items))
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        with self.engine.begin() as conn:
            conn.execute(update(queue_crawls).where(queue_crawls.c.job_id == job_id).values(**values))

    def touch(self, job_id: str) -> None:
        self.save_crawl(job_id)

    def finish_crawl(self, job_id: str) -> bool:
        """Claim the job's completion: True exactly once, when the crawl sent everything (or stopped)
        and every batch it sent is applied."""
        pending = exists().where(queue_batches.c.job_id == job_id, queue_batches.c.state == "sent")
        with self.engine.begin() as conn:
            result = conn.execute(update(queue_crawls).where(
                queue_crawls.c.job_id == job_id, queue_crawls.c.state.in_(("sent", "stopped")), ~pending)
                .values(state=case((queue_crawls.c.state == "stopped", "stopped-finished"), else_="finished"),
                        updated_at=_now()))
            return result.rowcount == 1

    # -- batches --------------------------------------------------------------------------------

    def register_batch(self, job_id: str, batch_id: str, source: str, kind: str, docs: int,
                       seq: int | None = None) -> None:
        """Record a batch after it was sent (an apply that came first already inserted it as applied).
        `seq`: its place in the crawl's order (a batch sent again by a later attempt takes its new place)."""
        row = {"job_id": job_id, "batch_id": batch_id, "source": source, "kind": kind, "docs": docs,
               "state": "sent", "counts": {}, "started_by": "", "sent_at": _now(), "seq": seq}
        with self.engine.begin() as conn:
            stmt = _insert(conn, queue_batches)
            if seq is None:
                conn.execute(stmt.on_conflict_do_nothing(), [row])
            else:
                conn.execute(stmt.on_conflict_do_update(index_elements=["job_id", "batch_id"],
                                                        set_={"seq": seq}), [row])

    def next_seq(self, job_id: str) -> int:
        """The place after every batch the job's crawl attempts sent so far."""
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(queue_batches.c.seq)).where(queue_batches.c.job_id == job_id)).scalar()
        return int(last or 0) + 1

    def keep_checkpoint(self, job_id: str, batch_id: str, checkpoint: dict[str, Any], resume: dict[str, int]) -> None:
        """The connector's partial checkpoint at the end of this batch, and the read counts up to it;
        `advance_checkpoint` stores it once the batch and every batch sent before it is applied."""
        with self.engine.begin() as conn:
            conn.execute(update(queue_batches).where(queue_batches.c.job_id == job_id,
                                                     queue_batches.c.batch_id == batch_id)
                         .values(checkpoint={"checkpoint": checkpoint, "resume": dict(resume)}))

    def advance_checkpoint(self, job_id: str) -> bool:
        """Store as the source's checkpoint the partial checkpoint of the job's latest batch that is applied
        together with every batch the crawl sent before it; True when it moved. Never past a batch sent and
        not applied (pending, dropped by a cancel, or lost with a node), so a sync after this job reads
        again everything the job did not apply. A retry or deletions batch not applied holds it back
        entirely (it belongs to no place in the order). Only while the job's crawl is unfinished: once
        finished the job stored its final checkpoint, and an abandoned job's late batches move nothing."""
        c, b = queue_crawls.c, queue_batches.c
        with self.engine.begin() as conn:
            # An update that changes nothing locks the crawl's row: advances of a job run one at a time,
            # so the stored checkpoint only moves forward.
            locked = conn.execute(update(queue_crawls).where(c.job_id == job_id, c.state.in_(ADVANCING))
                                  .values(updated_at=c.updated_at)).rowcount
            if not locked:
                return False
            source, stored = conn.execute(select(c.source, c.stored).where(c.job_id == job_id)).one()
            mine = b.job_id == job_id
            unapplied = and_(mine, b.state != "applied")
            if conn.execute(select(exists().where(unapplied, b.seq.is_(None)))).scalar():
                return False
            limit = conn.execute(select(func.min(b.seq)).where(unapplied)).scalar()
            query = select(b.seq, b.checkpoint).where(mine, b.state == "applied", b.checkpoint.is_not(None),
                                                      b.seq > int((stored or {}).get("seq", 0)))
            if limit is not None:
                query = query.where(b.seq < limit)
            best = conn.execute(query.order_by(b.seq.desc()).limit(1)).first()
            if best is None:
                return False
            conn.execute(update(sources).where(sources.c.name == source).values(checkpoint=best.checkpoint["checkpoint"]))
            conn.execute(update(queue_crawls).where(c.job_id == job_id)
                         .values(stored={"seq": best.seq, "resume": best.checkpoint["resume"]}))
            return True

    def batch_started(self, job_id: str, batch_id: str, worker: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(queue_batches).where(queue_batches.c.job_id == job_id,
                                                     queue_batches.c.batch_id == batch_id)
                         .values(started_by=worker, started_at=_now()))

    def mark_applied(self, job_id: str, batch_id: str, source: str, kind: str, counts: dict[str, int]) -> bool:
        """True the first time this batch is applied; a repeat changes nothing (its counts count once)."""
        now = _now()
        row = {"job_id": job_id, "batch_id": batch_id, "source": source, "kind": kind,
               "docs": counts.get("docs", 0), "state": "applied", "counts": counts, "started_by": "",
               "sent_at": now, "applied_at": now}
        with self.engine.begin() as conn:
            first = conn.execute(update(queue_batches).where(
                queue_batches.c.job_id == job_id, queue_batches.c.batch_id == batch_id,
                queue_batches.c.state == "sent").values(state="applied", counts=counts, applied_at=now)).rowcount
            if first:
                return True
            return _inserted(conn, row)

    def batch_state(self, job_id: str, batch_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(queue_batches.c.state).where(
                queue_batches.c.job_id == job_id, queue_batches.c.batch_id == batch_id)).scalar()

    def drop_late(self, job_id: str, batch_id: str, source: str, kind: str, docs: int, reason: str) -> bool:
        """A batch that reached the index after its job finished (cancelled, failed, abandoned): recorded as
        dropped with why, never applied. True when this call recorded it (False: it was applied or dropped
        before, e.g. a repeated message)."""
        now = _now()
        counts = {"late": 1, "reason": reason[:200]}
        row = {"job_id": job_id, "batch_id": batch_id, "source": source, "kind": kind, "docs": docs,
               "state": "dropped", "counts": counts, "started_by": "", "sent_at": now, "applied_at": None}
        with self.engine.begin() as conn:
            if conn.execute(update(queue_batches).where(
                    queue_batches.c.job_id == job_id, queue_batches.c.batch_id == batch_id,
                    queue_batches.c.state == "sent").values(state="dropped", counts=counts)).rowcount:
                return True
            return _inserted(conn, row)

    def late_drops(self, job_id: str) -> int:
        """How many of the job's batches arrived after it finished and were dropped (drop_late)."""
        t = queue_batches.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.counts).where(t.job_id == job_id, t.state == "dropped")).scalars()
            return sum(1 for counts in rows if (counts or {}).get("late"))

    def drop_pending(self, job_id: str) -> int:
        """A cancelled job stops waiting: its crawl counts as stopped and its pending batches are dropped
        (a dropped batch that still arrives is not applied). Returns how many were dropped."""
        with self.engine.begin() as conn:
            conn.execute(update(queue_crawls).where(queue_crawls.c.job_id == job_id, queue_crawls.c.state == "sent")
                         .values(state="stopped", updated_at=_now()))
            return conn.execute(update(queue_batches).where(queue_batches.c.job_id == job_id,
                                                            queue_batches.c.state == "sent")
                                .values(state="dropped")).rowcount

    def progress(self, job_id: str) -> Progress:
        t = queue_batches.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.state, t.docs, t.counts, t.sent_at).where(t.job_id == job_id)).all()
        summed = dict.fromkeys(APPLIED_COUNT_KEYS, 0)
        applied = 0
        for state, _docs, counts, _sent in rows:
            if state == "applied":
                applied += 1
                for key in APPLIED_COUNT_KEYS:
                    summed[key] += int((counts or {}).get(key, 0))
        stamps = [s.replace(tzinfo=UTC) if s.tzinfo is None else s for s in (r.sent_at for r in rows) if s]
        return Progress(sent=len(rows), applied=applied, docs_sent=sum(r.docs for r in rows), counts=summed,
                        docs_pending=sum(r.docs for r in rows if r.state == "sent"),
                        docs_applied=sum(r.docs for r in rows if r.state == "applied"),
                        first_sent=min(stamps, default=None))

    def written_since(self, source: str, since: datetime) -> dict[str, str]:
        """doc id → version of the source's documents written to the index at or after `since`."""
        t = documents.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.id, t.version).where(t.source == source, t.indexed_at >= since))
            return {r.id: r.version for r in rows}

    def batches(self, job_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [r._asdict() for r in conn.execute(select(queue_batches).where(queue_batches.c.job_id == job_id))]

    # -- attempts and quarantine ----------------------------------------------------------------

    def attempts(self, doc_ids: Sequence[str]) -> dict[str, Attempts]:
        t = document_attempts.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.doc_id, t.version, t.attempts, t.quarantined, t.error)
                                .where(t.doc_id.in_(sorted(set(doc_ids)))))
            return {r.doc_id: Attempts(r.version, r.attempts, bool(r.quarantined), r.error) for r in rows}

    def count_attempt(self, docs: Sequence[Document]) -> None:
        """One more attempt for each document's version (a new version starts again at one)."""
        if not docs:
            return
        now = _now()
        rows = [{"doc_id": d.id, "source": d.source, "path": d.path, "version": d.version, "attempts": 1,
                 "error": "", "quarantined": 0, "updated_at": now} for d in {d.id: d for d in docs}.values()]
        t = document_attempts.c
        with self.engine.begin() as conn:
            stmt = _insert(conn, document_attempts)
            same = t.version == stmt.excluded.version
            conn.execute(stmt.on_conflict_do_update(index_elements=["doc_id"], set_={
                "attempts": case((same, t.attempts + 1), else_=1),
                "quarantined": case((same, t.quarantined), else_=0),
                "error": case((same, t.error), else_=""),
                "version": stmt.excluded.version, "path": stmt.excluded.path,
                "updated_at": stmt.excluded.updated_at}), rows)

    def record_error(self, doc_id: str, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(document_attempts).where(document_attempts.c.doc_id == doc_id)
                         .values(error=error[:2000], updated_at=_now()))

    def quarantine(self, doc_ids: Sequence[str], error: str | None = None) -> None:
        values: dict[str, Any] = {"quarantined": 1, "updated_at": _now()}
        if error is not None:
            values["error"] = error[:2000]
        with self.engine.begin() as conn:
            conn.execute(update(document_attempts).where(document_attempts.c.doc_id.in_(list(doc_ids))).values(**values))

    def clear_attempts(self, doc_ids: Sequence[str]) -> None:
        """These documents went through: forget their attempts (a quarantine of another version stays)."""
        if not doc_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(document_attempts).where(and_(document_attempts.c.doc_id.in_(list(doc_ids)),
                                                              document_attempts.c.quarantined == 0)))

    def quarantined(self, source: str) -> dict[str, tuple[str, str, str]]:
        """doc id → (version, path, error) of the source's quarantined document versions."""
        t = document_attempts.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.doc_id, t.version, t.path, t.error)
                                .where(t.source == source, t.quarantined == 1))
            return {r.doc_id: (r.version, r.path, r.error) for r in rows}

    def active_crawls(self, source: str, excluding: str) -> list[CrawlRecord]:
        """Other jobs of the source whose crawl has not finished (still crawling or batches pending)."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(queue_crawls.c.job_id).where(
                queue_crawls.c.source == source, queue_crawls.c.job_id != excluding,
                queue_crawls.c.state.in_(("crawling", "sent", "stopped")))).scalars())
        return [c for c in (self.crawl(i) for i in ids) if c is not None]

    def abandon(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(queue_crawls).where(queue_crawls.c.job_id == job_id)
                         .values(state="abandoned", updated_at=_now()))

    def last_activity(self, job_id: str) -> datetime | None:
        with self.engine.connect() as conn:
            crawl = conn.execute(select(queue_crawls.c.updated_at).where(queue_crawls.c.job_id == job_id)).scalar()
            applied = conn.execute(select(func.max(queue_batches.c.applied_at))
                                   .where(queue_batches.c.job_id == job_id)).scalar()
        stamps = [s.replace(tzinfo=UTC) if s.tzinfo is None else s for s in (crawl, applied) if s is not None]
        return max(stamps) if stamps else None
