"""The audit log (searches and admin actions) and result feedback, kept in the catalog database."""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from indexer.catalog.schema import audit_log, feedback
from indexer.models import Principal
from retrieval.permissions import Scope

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 2000


class FeedbackError(LookupError):
    """Feedback about a query the caller did not make, or a hit that query did not return."""


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: dt.datetime
    user: str
    admin: bool
    action: str
    target: str
    scope: dict
    result_count: int
    result_ids: tuple[str, ...]
    query_id: str | None
    query_text: str | None


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    at: dt.datetime
    query_id: str
    hit_id: str
    user: str
    useful: bool
    comment: str


def scope_dict(scope: Scope | None) -> dict[str, list[str]]:
    """The non-empty parts of a scope, as stored in the audit row."""
    if scope is None:
        return {}
    parts = {"sources": scope.sources, "path_prefixes": scope.path_prefixes, "languages": scope.languages,
             "kinds": scope.kinds}
    return {name: list(values) for name, values in parts.items() if values}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog:
    """Appends audit rows and feedback; query text is kept only when the operator asked for it."""

    def __init__(self, engine: Engine, keep_query_text: bool = False) -> None:
        self.engine = engine
        self.keep_query_text = keep_query_text

    def record(self, who: Principal, action: str, *, target: str = "", scope: Scope | None = None,
               result_ids: Sequence[str] = (), query_id: str | None = None, query_text: str | None = None) -> str:
        row: dict[str, Any] = {"id": str(uuid.uuid4()), "at": _now(), "user": who.user, "admin": who.admin, "action": action,
               "target": target, "scope": scope_dict(scope), "result_count": len(result_ids),
               "result_ids": list(result_ids), "query_id": query_id,
               "query_text": query_text if self.keep_query_text else None}
        with self.engine.begin() as conn:
            conn.execute(insert(audit_log).values(**row))
        return row["id"]

    def entries(self, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
        """Newest first."""
        query = select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id).limit(limit)
        if action:
            query = query.where(audit_log.c.action == action)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query).mappings()]

    def query(self, query_id: str) -> AuditEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_log).where(audit_log.c.query_id == query_id)).mappings().first()
        return _entry(row) if row else None

    def add_feedback(self, who: Principal, query_id: str, hit_id: str, useful: bool,
                     comment: str = "") -> FeedbackRecord:
        """Store feedback on one hit of one of the caller's own queries."""
        asked = self.query(query_id)
        if asked is None or asked.user != who.user:
            raise FeedbackError(f"no query {query_id!r} of yours")
        if hit_id not in asked.result_ids:
            raise FeedbackError(f"query {query_id!r} did not return hit {hit_id!r}")
        row: dict[str, Any] = {"id": str(uuid.uuid4()), "at": _now(), "query_id": query_id, "hit_id": hit_id, "user": who.user,
               "useful": useful, "comment": comment[:MAX_COMMENT_CHARS]}
        with self.engine.begin() as conn:
            conn.execute(insert(feedback).values(**row))
        log.info("feedback %s on query %s (useful=%s)", row["id"], query_id, useful)
        return FeedbackRecord(**row)

    def feedback(self, limit: int = 100) -> list[FeedbackRecord]:
        """Newest first."""
        query = select(feedback).order_by(feedback.c.at.desc(), feedback.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [FeedbackRecord(**dict(r)) for r in conn.execute(query).mappings()]


def _entry(row) -> AuditEntry:
    values = dict(row)
    values.update(scope=dict(values["scope"] or {}), result_ids=tuple(values["result_ids"] or ()))
    return AuditEntry(**values)
