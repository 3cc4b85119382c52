"""Turn result feedback (useful / not useful on hits of logged queries) into a `cairn eval` query file.

A query becomes one line {"query", "source", "expected_paths"} when its text was logged
(audit_query_text on) and at least one of its hits has more "useful" than "not useful" votes and
still resolves to a chunk in the catalog. Everything else is counted, not guessed."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import JSON, Column, Engine, MetaData, Table, inspect, select

from indexer.catalog import Catalog
from indexer.catalog.schema import UTCDateTime

# The API owns these tables (api/audit.py); they are read by reflection because nothing imports api.
AUDIT_TABLE = "audit_log"
FEEDBACK_TABLE = "feedback"


class FeedbackExportError(LookupError):
    """The catalog holds no audit log or feedback table: no API has ever run against it."""


@dataclass
class ExportStats:
    """Why feedback did or did not become eval queries."""

    queries: int = 0  # exported lines
    feedback_rows: int = 0
    without_text: int = 0  # queries whose text the audit log did not keep
    without_useful: int = 0  # only "not useful" (or tied) votes
    unresolved_hits: int = 0  # useful hits whose chunk is gone (the file changed since)
    skipped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"queries": self.queries, "feedback_rows": self.feedback_rows, "without_text": self.without_text,
                "without_useful": self.without_useful, "unresolved_hits": self.unresolved_hits}


def export_feedback(engine: Engine, catalog: Catalog, since: dt.datetime | None = None,
                    stats: ExportStats | None = None) -> Iterator[dict]:
    """Eval lines from feedback given at or after `since`, oldest query first."""
    stats = stats if stats is not None else ExportStats()
    missing = [t for t in (AUDIT_TABLE, FEEDBACK_TABLE) if not inspect(engine).has_table(t)]
    if missing:
        raise FeedbackExportError(f"the catalog has no {' or '.join(missing)} table: feedback is collected by "
                                  "the API (`cairn serve`) on this catalog")
    meta = MetaData()
    # Types the reflection cannot know: zone-aware timestamps (SQLite stores them naive) and JSON.
    audit_log = Table(AUDIT_TABLE, meta, Column("at", UTCDateTime), Column("scope", JSON), autoload_with=engine)
    feedback = Table(FEEDBACK_TABLE, meta, Column("at", UTCDateTime), autoload_with=engine)
    fb, log = feedback.c, audit_log.c
    query = (select(fb.query_id, fb.hit_id, fb.useful, fb.at, log.query_text, log.scope, log.at.label("asked_at"))
             .select_from(feedback.join(audit_log, log.query_id == fb.query_id))
             .order_by(log.at, fb.query_id, fb.at))
    if since is not None:
        query = query.where(fb.at >= _aware(since))
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    asked: dict[str, tuple[str | None, dict]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            stats.feedback_rows += 1
            votes[row.query_id][row.hit_id] += 1 if row.useful else -1
            asked[row.query_id] = (row.query_text, dict(row.scope or {}))
    for query_id, tally in votes.items():
        text, scope = asked[query_id]
        if not text or not text.strip():
            stats.without_text += 1
            continue
        useful = [hit for hit, net in tally.items() if net > 0]
        if not useful:
            stats.without_useful += 1
            continue
        chunks = catalog.get_chunks(useful)
        stats.unresolved_hits += sum(hit not in chunks for hit in useful)
        found = [chunks[hit] for hit in useful if hit in chunks]
        if not found:
            stats.without_useful += 1
            continue
        sources = list(scope.get("sources") or [])
        hit_sources = {c.source for c in found}
        source = sources[0] if len(sources) == 1 else (next(iter(hit_sources)) if len(hit_sources) == 1 else "")
        paths = list(dict.fromkeys(c.path for c in found if not source or c.source == source))
        stats.queries += 1
        yield {"query": text, "source": source, "expected_paths": paths, "query_id": query_id}


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
