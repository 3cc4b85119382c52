"""Redaction counts per indexed document and rule, and the per-source summaries admins see.

Counts are read back from the markers in the redacted text the pipeline writes, so every write path
(in-process batches, ready batches from workers) records them the same way. Nothing here ever holds
a secret, a hash of one or its length: only the rule, the document and line numbers."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select

from indexer.catalog.db import id_batches
from indexer.catalog.schema import documents, redactions, skipped
from indexer.models import Document, SkipReason
from indexer.secrets.detector import MARKER_PATTERN

MAX_LINES = 50  # line numbers kept per document and rule


@dataclass(frozen=True)
class RuleCount:
    redactions: int
    files: int


@dataclass(frozen=True)
class RedactionSummary:
    """One source: secrets redacted, files they were in, files skipped as secrets, and per rule."""

    total: int = 0
    files: int = 0
    secret_files: int = 0
    rules: dict[str, RuleCount] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "files": self.files, "secret_files": self.secret_files,
                "rules": {name: {"redactions": c.redactions, "files": c.files} for name, c in sorted(self.rules.items())}}


@dataclass(frozen=True)
class RedactedFile:
    path: str
    rule: str
    count: int
    lines: tuple[int, ...]


def redacted_lines(doc: Document) -> dict[str, list[int]]:
    """rule → the lines of its markers in the document's text (0 for markers in the title)."""
    out: dict[str, list[int]] = {}
    text = doc.content
    if "[REDACTED:" in text:
        line, counted = 1, 0
        for match in MARKER_PATTERN.finditer(text):
            line, counted = line + text.count("\n", counted, match.start()), match.start()
            out.setdefault(match.group(1), []).append(line)
    for match in MARKER_PATTERN.finditer(doc.title or ""):
        out.setdefault(match.group(1), []).append(0)
    return out



class RedactionLog:
    """The `redactions` table (catalog database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, docs: Sequence[Document]) -> int:
        """Replace the rows of these (redacted) documents with what their markers say; returns the total."""
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = [{"doc_id": doc.id, "rule": rule, "source": doc.source, "path": doc.path, "count": len(lines),
                 "lines": lines[:MAX_LINES], "recorded_at": now}
                for doc in docs for rule, lines in redacted_lines(doc).items()]
        with self.engine.begin() as conn:
            for batch in id_batches(sorted({doc.id for doc in docs})):
                conn.execute(delete(redactions).where(redactions.c.doc_id.in_(batch)))
            if rows:
                conn.execute(redactions.insert(), rows)
        return sum(row["count"] for row in rows)

    def forget(self, doc_ids: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                conn.execute(delete(redactions).where(redactions.c.doc_id.in_(batch)))

    def summaries(self, source: str | None = None) -> dict[str, RedactionSummary]:
        """source → summary, for sources with redactions or secret files (of documents still indexed)."""
        r = redactions.c
        live = redactions.join(documents, documents.c.id == r.doc_id)
        per_rule = select(r.source, r.rule, func.sum(r.count), func.count(r.doc_id)).select_from(live) \
            .group_by(r.source, r.rule)
        per_source = select(r.source, func.count(func.distinct(r.doc_id))).select_from(live).group_by(r.source)
        secret = select(skipped.c.source, func.count()) \
            .where(skipped.c.reason.in_([SkipReason.SECRET_FILE.value, SkipReason.SECRET_PATH.value])) \
            .group_by(skipped.c.source)
        if source is not None:
            per_rule, per_source = per_rule.where(r.source == source), per_source.where(r.source == source)
            secret = secret.where(skipped.c.source == source)
        with self.engine.connect() as conn:
            rules: dict[str, dict[str, RuleCount]] = {}
            for name, rule, total, docs in conn.execute(per_rule):
                rules.setdefault(name, {})[rule] = RuleCount(int(total), int(docs))
            files: dict[str, int] = dict(conn.execute(per_source).all())
            secret_files: dict[str, int] = dict(conn.execute(secret).all())
        return {name: RedactionSummary(total=sum(c.redactions for c in rules.get(name, {}).values()),
                                       files=int(files.get(name, 0)), secret_files=int(secret_files.get(name, 0)),
                                       rules=rules.get(name, {}))
                for name in set(rules) | set(secret_files)}

    def summary(self, source: str) -> RedactionSummary:
        return self.summaries(source).get(source, RedactionSummary())

    def files(self, source: str, limit: int = 50) -> list[RedactedFile]:
        """The documents of a source with redactions (paths, rules, counts and lines; never values)."""
        r = redactions.c
        query = (select(r.path, r.rule, r.count, r.lines).select_from(redactions.join(documents, documents.c.id == r.doc_id))
                 .where(r.source == source).order_by(r.path, r.rule).limit(limit))
        with self.engine.connect() as conn:
            return [RedactedFile(path, rule, count, tuple(lines)) for path, rule, count, lines in conn.execute(query)]
