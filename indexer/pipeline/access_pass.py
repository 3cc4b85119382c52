"""A connector's permissions pass applied to the index: access rewritten from the catalog, deletions removed.

The webhook job's stand-in until the scheduled permissions-pass engine (pipeline/permissions.py) lands:
nothing here reads content or embeds again (`Pipeline.reapply_access` rewrites chunk ids from the
catalog's stored text, vectors come from the embedding cache)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from connectors.base import Connector
from indexer.catalog import Catalog
from indexer.models import Access, AccessChange, Deletion, SyncFailure
from indexer.pipeline.apply import Pipeline

log = logging.getLogger(__name__)


@dataclass
class AccessPassCounts:
    """What a pass changed; `failures` > 0 means partial (the failing items kept their access)."""

    access_changed: int = 0
    deleted: int = 0
    failures: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    failed_items: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def apply_access_pass(pipeline: Pipeline, catalog: Catalog, connector: Connector) -> AccessPassCounts:
    """Run `connector.access_pass` over the source's indexed documents and apply what it yields."""
    source = connector.name
    digests = catalog.access_digests(source)
    changes: dict[str, Access] = {}
    deletions: list[str] = []
    counts = AccessPassCounts()
    for item in connector.access_pass(digests):
        if isinstance(item, AccessChange):
            if digests.get(item.doc_id) not in (None, item.access.digest()):
                changes[item.doc_id] = item.access
        elif isinstance(item, Deletion):
            deletions.append(item.doc_id)
        elif isinstance(item, SyncFailure):
            counts.failures += 1
            counts.failed_items.append(item.item)
            catalog.record_failure(item)
            log.warning("permissions pass %s: %s failed: %s", source, item.item, item.error)
    deletions = [d for d in dict.fromkeys(deletions) if d in digests]
    changed = pipeline.reapply_access({k: v for k, v in changes.items() if k not in deletions})
    gone = pipeline.delete(deletions)
    counts.access_changed = changed.docs_changed
    counts.chunks_written = changed.chunks_written
    counts.deleted = gone.docs_deleted
    counts.chunks_deleted = gone.chunks_deleted + changed.chunks_deleted
    log.info("permissions pass %s: %d access changes, %d deletions, %d failures", source,
             counts.access_changed, counts.deleted, counts.failures)
    return counts
