"""Permissions passes and how fresh each source's access is.

A pass asks a source's connector for the current access of what is indexed (`access_pass`: ids and
ACL-relevant state, never content) and applies it in batches: an access change rewrites the document
from the catalog's text under the new ACL (chunk ids carry the ACL; vectors come from the embedding
cache, nothing is embedded again), a deletion removes it from both stores and the catalog, a failing
item is recorded and leaves the document as it was.

Identities: after the ACLs, the pass syncs the source's group memberships and links accounts by email
(pipeline/identities.py); a group whose members cannot be read counts as a failed item.

Freshness: a source's access was last known good at its last successful sync or permissions pass,
whichever is later. Past `max_staleness` its restricted documents (ACL without `public`) are not served."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from connectors.base import Connector
from connectors.registry import access_from_source
from indexer.catalog import Catalog
from indexer.models import Access, AccessChange, Deletion, SyncFailure
from indexer.pipeline.apply import BatchCounts, Pipeline
from indexer.pipeline.identities import sync_identities

log = logging.getLogger(__name__)

PASS_BATCH = 200  # documents per write: one reapply/delete per batch, not one per document


@dataclass
class PassCounts:
    """What one permissions pass did. `chunks_embedded` stays 0 unless the embedding cache lost vectors."""

    checked: int = 0  # indexed documents whose access the pass was asked about
    changed: int = 0  # documents rewritten under a new access
    deleted: int = 0
    failed: int = 0  # items (documents or scopes) whose state could not be read
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    memberships: int = 0  # membership rows the source holds after the pass
    linked: int = 0  # Cairn users linked to an account of the source's realm by email

    def add(self, counts: BatchCounts) -> None:
        self.chunks_written += counts.chunks_written
        self.chunks_deleted += counts.chunks_deleted
        self.chunks_embedded += counts.chunks_embedded

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


Progress = Callable[[PassCounts], None]


def run_permission_pass(pipeline: Pipeline, connector: Connector, batch: int = PASS_BATCH,
                        progress: Progress | None = None) -> PassCounts:
    """Apply one source's permissions pass, then sync its memberships and links; a connector that raises
    stops it (what was applied stays)."""
    catalog = pipeline.catalog
    known = catalog.access_digests(connector.name)
    counts = PassCounts(checked=len(known))
    changes: dict[str, Access] = {}
    deletions: list[str] = []

    def flush() -> None:
        if changes:
            applied = pipeline.reapply_access(dict(changes))
            counts.changed += applied.docs_changed
            counts.add(applied)
            catalog.clear_failures(connector.name, list(changes))
            changes.clear()
        if deletions:
            removed = pipeline.delete(list(deletions))
            counts.deleted += removed.docs_deleted
            counts.add(removed)
            catalog.clear_failures(connector.name, deletions)
            deletions.clear()
        if progress:
            progress(counts)

    for item in connector.access_pass(known):
        if isinstance(item, AccessChange):
            if item.doc_id in known and item.access.digest() != known[item.doc_id]:
                changes[item.doc_id] = item.access
        elif isinstance(item, Deletion):
            if item.doc_id in known:
                deletions.append(item.doc_id)
                changes.pop(item.doc_id, None)
        elif isinstance(item, SyncFailure):
            catalog.record_failure(item)
            counts.failed += 1
        if len(changes) + len(deletions) >= batch:
            flush()
    flush()
    identities = sync_identities(catalog, connector)
    counts.memberships, counts.linked = identities.memberships, identities.linked
    counts.failed += identities.failed
    log.info("permissions pass of %s: %s", connector.name, counts.as_dict())
    return counts


# -- freshness ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Freshness:
    """How fresh one source's access is. `last_good_at`: its last successful sync or permissions pass."""

    source: str
    tracked: bool  # documents take their access from the source (permissions passes apply)
    last_good_at: dt.datetime | None
    last_pass_at: dt.datetime | None  # last successful permissions pass
    age_seconds: float | None
    stale: bool
    error: str  # the last permissions pass's error ("" when it succeeded or never ran)

    def as_dict(self) -> dict[str, object]:
        return {"last_success_at": self.last_pass_at.isoformat() if self.last_pass_at else None,
                "last_good_at": self.last_good_at.isoformat() if self.last_good_at else None,
                "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
                "stale": self.stale, "error": self.error}


def freshness(catalog: Catalog, max_staleness: float, now: dt.datetime | None = None) -> dict[str, Freshness]:
    """source → how fresh its access is. A tracked source never known good is stale (fail closed)."""
    now = now or dt.datetime.now(dt.UTC)
    passes = catalog.permission_syncs()
    out: dict[str, Freshness] = {}
    for row in catalog.list_sources():
        record = passes.get(row.name)
        last_pass = record.last_success_at if record else None
        good = max((t for t in (row.last_success_at, last_pass) if t is not None), default=None)
        age = (now - good).total_seconds() if good else None
        tracked = access_from_source(row.kind)
        stale = tracked and (age is None or age > max_staleness)
        out[row.name] = Freshness(row.name, tracked, good, last_pass, age, stale, record.last_error if record else "")
    return out


def stale_sources(catalog: Catalog, max_staleness: float, now: dt.datetime | None = None) -> frozenset[str]:
    """Sources whose restricted documents must not be served now."""
    return frozenset(name for name, f in freshness(catalog, max_staleness, now).items() if f.stale)

