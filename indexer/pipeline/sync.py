"""Runs one connector sync into the pipeline: batching, skips, failures, pruning, checkpoint, job counts."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from connectors.base import Connector
from indexer.catalog import Catalog
from indexer.chunking.limits import oversize_skip
from indexer.models import Access, Deletion, Document, Skipped, SyncFailure
from indexer.pipeline.apply import BatchCounts, Pipeline
from indexer.pipeline.prepare import Pending, PreparedBatch

log = logging.getLogger(__name__)
IN_FLIGHT = 2  # batches cut and being prepared while the one before is written


@dataclass
class SyncCounts:
    """The job counts an admin sees, and `cairn index --json` prints."""

    files_seen: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0

    def absorb(self, batch: BatchCounts) -> None:
        self.files_changed += batch.docs_changed
        self.files_deleted += batch.docs_deleted
        self.chunks_written += batch.chunks_written
        self.chunks_deleted += batch.chunks_deleted
        self.chunks_embedded += batch.chunks_embedded
        self.files_skipped += batch.extra.get("secret_files", 0)  # screened out by the pipeline

    def as_dict(self) -> dict:
        return asdict(self)


Observer = Callable[[str, SyncCounts], None]  # (phase, counts) after every batch


class SyncRunner:
    """Feeds a connector's items to the pipeline in batches; one bad item never stops the sync."""

    def __init__(self, pipeline: Pipeline, batch_docs: int = 200, batch_bytes: int = 4_000_000,
                 in_flight: int = IN_FLIGHT) -> None:
        self.pipeline = pipeline
        self.catalog = pipeline.catalog
        self.batch_docs = batch_docs
        self.batch_bytes = batch_bytes
        self.in_flight = in_flight

    def run(self, connector: Connector, full: bool = False, observe: Observer | None = None) -> SyncCounts:
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC)
        counts = SyncCounts()
        source = connector.name
        checkpoint = None if full else self.catalog.get_checkpoint(source)
        known = {} if full else self._known(source, connector)
        failed = self._consume(connector.sync(checkpoint, known), counts, observe, rewrite=full,
                               partial=self._checkpoint_reader(connector), source=source)
        if full:
            self._prune(connector, source, counts)
        if observe:
            observe("embedding", counts)  # everything changed is searchable by keyword from here on
        self.pipeline.embed_pending(source, progress=self._embed_progress(counts, observe))
        self.catalog.set_checkpoint(source, connector.next_checkpoint())
        self.catalog.clear_skipped(source, before=started_at)
        self._clear_resolved_failures(source, failed)
        counts.seconds = round(time.monotonic() - started, 3)
        log.info("sync %s done: %s", source, counts.as_dict())
        return counts

    def _known(self, source: str, connector: Connector) -> dict[str, str]:
        return known_versions(self.catalog, source, connector)

    def _checkpoint_reader(self, connector: Connector) -> Callable[[], object] | None:
        """For connectors that can say mid-sync how far they got (ticket/page sources): read when a
        batch is cut and stored once that batch is applied, so a sync killed part-way resumes there
        instead of from the start (and never past a batch read ahead but not yet applied)."""
        return getattr(connector, "partial_checkpoint", None)

    def _consume(self, items: Iterable, counts: SyncCounts, observe: Observer | None, rewrite: bool,
                 partial: Callable[[], object] | None = None, source: str = "") -> set[str]:
        """Apply the items; returns the names of the items that failed.

        Batches are prepared (screened, chunked) ahead, in worker processes when there are any, while
        the batch before is written; they are applied strictly in the order they were cut, at most
        IN_FLIGHT waiting. A stop (an observer raising between batches) drops the waiting ones."""
        batch: list[Document] = []
        failed: set[str] = set()
        size = 0
        deletions: list[str] = []
        preparer = self.pipeline.preparer()
        waiting: deque[tuple[Pending, list[Document], object]] = deque()

        def apply_next() -> None:
            pending, docs, checkpoint = waiting.popleft()
            self._flush(preparer.result(pending), docs, counts, observe, rewrite,
                        saved=None if checkpoint is None else lambda: self.catalog.set_checkpoint(source, checkpoint))

        try:
            for item in items:
                if isinstance(item, Document) and (too_large := oversize_skip(item, self.pipeline.chunking.limits)):
                    deletions.append(item.id)  # any source's document over the size limit: skipped, and an
                    item = too_large  # older version of it no longer searchable
                if isinstance(item, Document):
                    counts.files_seen += 1
                    batch.append(item)
                    size += len(item.content)
                    preparer.expect(size)
                    if len(batch) >= self.batch_docs or size >= self.batch_bytes:
                        checkpoint = partial() if partial else None  # how far the connector got: this batch
                        waiting.append((preparer.submit(batch), batch, checkpoint))
                        batch, size = [], 0
                        while len(waiting) > self.in_flight:
                            apply_next()
                elif isinstance(item, Deletion):
                    deletions.append(item.doc_id)
                elif isinstance(item, Skipped):
                    counts.files_seen += 1
                    counts.files_skipped += 1
                    self.catalog.record_skipped(item)
                elif isinstance(item, SyncFailure):
                    counts.files_seen += 1
                    counts.files_failed += 1
                    self.catalog.record_failure(item)
                    failed.add(item.item)
                    log.warning("sync %s: item %s failed: %s", item.source, item.item, item.error)
            if batch:
                waiting.append((preparer.submit(batch), batch, None))
            while waiting:
                apply_next()
        finally:
            for pending, _, _ in waiting:  # a stop or an error: batches read ahead are dropped unapplied
                preparer.discard(pending)
        if deletions:
            counts.absorb(self.pipeline.delete(deletions))
        return failed

    def _flush(self, prepared: PreparedBatch, batch: list[Document], counts: SyncCounts, observe: Observer | None,
               rewrite: bool, saved: Callable[[], None] | None = None) -> None:
        counts.absorb(self.pipeline.apply_prepared(prepared, rewrite=rewrite))
        for source in {doc.source for doc in batch}:
            self.catalog.clear_failures(source, [doc.path for doc in batch if doc.source == source])
        if saved:
            saved()
        if observe:
            observe("lexical", counts)

    def _clear_resolved_failures(self, source: str, failed: set[str]) -> None:
        """A completed sync retried every failing item (and whole scopes): those that did not fail
        again are resolved or gone, whatever their record names (an item or a project)."""
        for failure in self.catalog.list_failures(source):
            if failure.item not in failed:
                self.catalog.clear_failure(source, failure.item)

    def _prune(self, connector: Connector, source: str, counts: SyncCounts) -> None:
        """After a full sync: documents the catalog holds that the source no longer lists."""
        present = connector.list_ids()
        gone = [doc_id for doc_id in self.catalog.document_versions(source) if doc_id not in present]
        if gone:
            counts.absorb(self.pipeline.delete(gone))

    @staticmethod
    def _embed_progress(counts: SyncCounts, observe: Observer | None) -> Callable[[int, int], None]:
        def progress(processed: int, embedded: int) -> None:
            counts.chunks_embedded += embedded
            if observe:
                observe("dense", counts)
        return progress


def known_versions(catalog: Catalog, source: str, connector: Connector) -> dict[str, str]:
    """Indexed versions, minus documents indexed under another access list (they are rewritten)."""
    if getattr(connector, "access_from_source", False):
        # Each document's access comes from the source and is part of its version: the connector compares.
        return catalog.document_versions(source)
    row = catalog.get_source(source)
    want = Access.of(*row.access).digest() if row else ""
    digests = catalog.access_digests(source)
    return {doc_id: v for doc_id, v in catalog.document_versions(source).items() if digests.get(doc_id) == want}
