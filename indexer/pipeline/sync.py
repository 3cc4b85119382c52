"""The one sync loop both deployments run: a connector's items counted, checked and batched into a sink."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar, Protocol

from connectors.base import Checkpoint, Connector, SyncItem
from indexer.catalog import Catalog
from indexer.chunking.limits import ChunkLimits, oversize_skip
from indexer.models import Access, Deletion, Document, Skipped, SyncFailure
from indexer.pipeline.apply import BatchCounts, Pipeline
from indexer.pipeline.prepare import Pending
from indexer.secrets.screen import SecretScreen

log = logging.getLogger(__name__)
IN_FLIGHT = 2  # batches cut and being prepared while the one before is written
BATCH_DOCS = 200
BATCH_BYTES = 4_000_000


@dataclass
class SyncCounts:
    """The job counts an admin sees, and `cairn index --json` prints."""

    files_seen: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    files_skipped: int = 0  # of which secret files and quarantined document versions
    files_failed: int = 0
    files_quarantined: int = 0
    secret_files: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    # The part of these counts that a sync resumed after this one died will not do again (kept by the
    # loop after every landed batch, and by the dense phase): a resumed job adds it to its own counts.
    # Stays empty in a full sync, which a resumed full sync redoes from the start.
    carried: dict[str, int] = field(default_factory=dict)

    LANDED: ClassVar[tuple[str, ...]] = ("files_changed", "files_deleted", "chunks_written", "chunks_deleted",
                                         "chunks_embedded", "secret_files")  # counted once written

    def absorb(self, batch: BatchCounts) -> None:
        self.files_changed += batch.docs_changed
        self.files_deleted += batch.docs_deleted
        self.chunks_written += batch.chunks_written
        self.chunks_deleted += batch.chunks_deleted
        self.chunks_embedded += batch.chunks_embedded
        secret = batch.extra.get("secret_files", 0)  # screened out where the batch went
        self.files_skipped += secret
        self.secret_files += secret

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["carried"]
        return out

    def read_so_far(self) -> dict[str, int]:
        """The counts made as items are read (not as batches land)."""
        return {"files_seen": self.files_seen, "files_skipped": self.files_skipped - self.secret_files,
                "files_failed": self.files_failed, "files_quarantined": self.files_quarantined}


Observer = Callable[[str, SyncCounts], None]  # (phase, counts) after every batch; raising stops the sync
Landed = Callable[[BatchCounts], None]  # told what a batch changed, once it is written (or sent)


class BatchSink(Protocol):
    """Where the loop's batches go: written here (`PipelineSink`) or sent to the embed queue
    (workers/distributed.py). Batches land strictly in the order they were submitted."""

    phase: str  # what a landed batch has reached, as the observer is told

    def reading(self, size: int) -> None:
        """A batch with at least `size` characters of text is being read (a head start, if it helps)."""
        ...

    def submit(self, docs: list[Document], landed: Landed) -> None:
        """Take a batch; call `landed` once it is written (or sent), maybe during a later call."""
        ...

    def keep(self, source: str, checkpoint: Checkpoint, resume: dict[str, int]) -> None:
        """Called from `landed`: the connector's partial checkpoint at the end of the batch that just
        landed, to store as the source's checkpoint once that batch and every batch before it is applied
        (at once, when landing is writing), never before. `resume`: the read counts up to it."""
        ...

    def finish(self, deletions: list[str]) -> BatchCounts:
        """Land every batch submitted, then remove `deletions`; returns what the removal changed."""
        ...

    def close(self) -> None:
        """Drop the batches that have not landed (a stop or an error); nothing is left after `finish`."""
        ...


class SyncLoop:
    """One pass over a connector's sync into a sink; one bad item never stops it.

    The loop counts, skips documents over the size limit and document versions quarantined by the
    embed queue, records skips and failures, cuts batches by documents and bytes, hands the sink the
    connector's partial checkpoint with the batch it covers (the sink stores it once that batch is
    applied), and prunes after a full sync.
    `counts` and `failed` (items whose failure records stay) are readable after a stop or an error."""

    def __init__(self, catalog: Catalog, sink: BatchSink, limits: ChunkLimits, batch_docs: int = BATCH_DOCS,
                 batch_bytes: int = BATCH_BYTES, secrets: SecretScreen | None = None) -> None:
        self.catalog = catalog
        self.sink = sink
        self.limits = limits
        self.secrets = secrets or SecretScreen()  # skip and failure records keep redacted paths only
        self.batch_docs = batch_docs
        self.batch_bytes = batch_bytes
        self.counts = SyncCounts()
        self.failed: set[str] = set()
        self.full = False
        self.docs_landed = 0

    def run(self, connector: Connector, full: bool = False, observe: Observer | None = None,
            known: Mapping[str, str] | None = None) -> SyncCounts:
        """Everything the sync yields, landed; the caller stores `connector.next_checkpoint()`.
        `known`: the indexed versions to compare with, when the caller read them (else read here)."""
        source = connector.name
        self.full = full
        checkpoint = None if full else self.catalog.get_checkpoint(source)
        if known is None:
            known = {} if full else known_versions(self.catalog, source, connector)
        quarantined = self.catalog.quarantined(source)
        deletions: list[str] = []
        try:
            self._consume(connector, connector.sync(checkpoint, known), quarantined, deletions, observe)
            if full:
                deletions += self._gone(connector, source)
            self.counts.absorb(self.sink.finish(list(dict.fromkeys(deletions))))
        finally:
            self.sink.close()  # a stop or an error: batches read ahead are dropped unapplied
        return self.counts

    def run_items(self, connector: Connector, items: Iterable[SyncItem], observe: Observer | None = None) -> SyncCounts:
        """Items the caller got from the connector (e.g. `connector.refresh(ids)` for a webhook), landed the
        same way. No checkpoint is read or stored and nothing is pruned: the source's sync resumes where
        it was."""
        deletions: list[str] = []
        try:
            self._consume(connector, items, self.catalog.quarantined(connector.name), deletions, observe,
                          checkpoints=False)
            self.counts.absorb(self.sink.finish(list(dict.fromkeys(deletions))))
        finally:
            self.sink.close()
        return self.counts

    def _consume(self, connector: Connector, items: Iterable, quarantined: Mapping[str, str],
                 deletions: list[str], observe: Observer | None, checkpoints: bool = True) -> None:
        batch: list[Document] = []
        size = 0
        for read in items:
            item = self._admitted(read, quarantined, deletions) if isinstance(read, Document) else read
            if isinstance(item, Document):
                self.counts.files_seen += 1
                batch.append(item)
                size += len(item.content)
                self.sink.reading(size)
                if len(batch) >= self.batch_docs or size >= self.batch_bytes:
                    # how far the connector got: this batch (stored once it is applied, never before)
                    partial = connector.partial_checkpoint() if checkpoints else None
                    self.sink.submit(batch, self._landed(connector.name, partial, observe, len(batch)))
                    batch, size = [], 0
            elif isinstance(item, Deletion):
                deletions.append(item.doc_id)
            elif isinstance(item, Skipped):
                self.counts.files_seen += 1
                self.counts.files_skipped += 1
                self.catalog.record_skipped(replace(item, path=self.secrets.safe_path(item.path)))
            elif isinstance(item, SyncFailure):
                self.counts.files_seen += 1
                self.counts.files_failed += 1
                item = replace(item, item=self.secrets.safe_path(item.item))
                self.catalog.record_failure(item)
                self.failed.add(item.item)
                log.warning("sync %s: item %s failed: %s", item.source, item.item, item.error)
        if batch:
            self.sink.submit(batch, self._landed(connector.name, None, observe, len(batch)))

    def _admitted(self, doc: Document, quarantined: Mapping[str, str],
                  deletions: list[str]) -> Document | Skipped | None:
        """The document, its skip record when it is over the size limit, or None for a quarantined version."""
        if too_large := oversize_skip(doc, self.limits):
            deletions.append(doc.id)  # an older version of it must no longer be searchable
            return too_large
        if quarantined.get(doc.id) == doc.version:  # it kept failing in the embed queue: not again until it changes
            self.counts.files_seen += 1
            self.counts.files_skipped += 1
            self.counts.files_quarantined += 1
            self.failed.add(doc.path)  # its failure record (the quarantine's error) stays
            return None
        return doc

    def _landed(self, source: str, checkpoint: Checkpoint | None, observe: Observer | None, docs: int) -> Landed:
        read_at_cut = self.counts.read_so_far()  # what was read up to this batch's end

        def landed(changed: BatchCounts) -> None:
            self.counts.absorb(changed)
            self.docs_landed += docs
            if checkpoint is not None:  # a sync resumed from it starts after the items read up to this batch
                secret = self.counts.secret_files
                self.sink.keep(source, checkpoint, read_at_cut | {
                    "files_skipped": read_at_cut["files_skipped"] + secret, "secret_files": secret})
            self._carry(read_at_cut if checkpoint is not None else None)
            if observe:
                observe(self.sink.phase, self.counts)
        return landed

    def _carry(self, read_at_cut: dict[str, int] | None) -> None:
        """After a batch landed: what a sync resumed from here would not do again. With a checkpoint stored
        past the batch (`read_at_cut`), it starts after everything read up to the batch; without one it
        reads the source again and finds the landed documents indexed already (skips and failures it
        meets again). A full sync carries nothing: resumed, it reads and writes everything again."""
        if self.full:
            return
        counts = self.counts
        carried = {name: getattr(counts, name) for name in SyncCounts.LANDED}
        read = read_at_cut or {"files_seen": self.docs_landed, "files_skipped": 0}
        carried |= read | {"files_skipped": read["files_skipped"] + counts.secret_files}
        counts.carried = carried

    def _gone(self, connector: Connector, source: str) -> list[str]:
        """After a full sync: documents the catalog holds that the source no longer lists."""
        present = connector.list_ids()
        return [doc_id for doc_id in self.catalog.document_versions(source) if doc_id not in present]


class PipelineSink:
    """Batches written in this process. Each is prepared (screened, chunked) ahead, in worker processes
    when there are any, while the batch before is written; at most `in_flight` wait."""

    phase = "lexical"  # a landed batch is searchable by keyword

    def __init__(self, pipeline: Pipeline, rewrite: bool, in_flight: int = IN_FLIGHT) -> None:
        self.pipeline = pipeline
        self.rewrite = rewrite  # a full sync writes every chunk again, repairing drift
        self.in_flight = in_flight
        self.preparer = pipeline.preparer()
        self.waiting: deque[tuple[Pending, list[Document], Landed]] = deque()

    def reading(self, size: int) -> None:
        self.preparer.expect(size)

    def submit(self, docs: list[Document], landed: Landed) -> None:
        self.waiting.append((self.preparer.submit(docs), docs, landed))
        while len(self.waiting) > self.in_flight:
            self._apply_next()

    def finish(self, deletions: list[str]) -> BatchCounts:
        while self.waiting:
            self._apply_next()
        return self.pipeline.delete(deletions)

    def close(self) -> None:
        while self.waiting:
            self.preparer.discard(self.waiting.popleft()[0])

    def keep(self, source: str, checkpoint: Checkpoint, resume: dict[str, int]) -> None:
        self.pipeline.catalog.set_checkpoint(source, checkpoint)  # landed here is written, in order

    def _apply_next(self) -> None:
        pending, docs, landed = self.waiting.popleft()
        changed = self.pipeline.apply_prepared(self.preparer.result(pending), rewrite=self.rewrite)
        for source in {doc.source for doc in docs}:
            self.pipeline.catalog.clear_failures(source, [doc.path for doc in docs if doc.source == source])
        landed(changed)


class SyncRunner:
    """A sync in this process: the loop into the pipeline, then the dense phase, checkpoint and cleanup."""

    def __init__(self, pipeline: Pipeline, batch_docs: int = BATCH_DOCS, batch_bytes: int = BATCH_BYTES,
                 in_flight: int = IN_FLIGHT) -> None:
        self.pipeline = pipeline
        self.catalog = pipeline.catalog
        self.batch_docs = batch_docs
        self.batch_bytes = batch_bytes
        self.in_flight = in_flight

    def run(self, connector: Connector, full: bool = False, observe: Observer | None = None) -> SyncCounts:
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC)
        source = connector.name
        sink = PipelineSink(self.pipeline, rewrite=full, in_flight=self.in_flight)
        loop = SyncLoop(self.catalog, sink, self.pipeline.chunking.limits, self.batch_docs, self.batch_bytes,
                        self.pipeline.secrets)
        counts = loop.run(connector, full, observe)
        if observe:
            observe("embedding", counts)  # everything changed is searchable by keyword from here on
        self.pipeline.embed_pending(source, progress=self._embed_progress(counts, observe, carry=not full))
        self.catalog.set_checkpoint(source, connector.next_checkpoint())
        self.catalog.clear_skipped(source, before=started_at)
        self._clear_resolved_failures(source, loop.failed)
        counts.seconds = round(time.monotonic() - started, 3)
        log.info("sync %s done: %s", source, counts.as_dict())
        return counts

    def run_items(self, connector: Connector, items: Iterable[SyncItem], observe: Observer | None = None) -> SyncCounts:
        """Named items (a webhook's `connector.refresh(ids)`) through the same loop, then embedded; the
        source's checkpoint, skips and other failures are left as they are."""
        started = time.monotonic()
        sink = PipelineSink(self.pipeline, rewrite=False, in_flight=self.in_flight)
        loop = SyncLoop(self.catalog, sink, self.pipeline.chunking.limits, self.batch_docs, self.batch_bytes,
                        self.pipeline.secrets)
        counts = loop.run_items(connector, items, observe)
        if observe:
            observe("embedding", counts)
        self.pipeline.embed_pending(connector.name, progress=self._embed_progress(counts, observe))
        counts.seconds = round(time.monotonic() - started, 3)
        return counts

    def _clear_resolved_failures(self, source: str, failed: set[str]) -> None:
        """A completed sync retried every failing item (and whole scopes): those that did not fail
        again are resolved or gone, whatever their record names (an item or a project)."""
        for failure in self.catalog.list_failures(source):
            if failure.item not in failed:
                self.catalog.clear_failure(source, failure.item)

    @staticmethod
    def _embed_progress(counts: SyncCounts, observe: Observer | None,
                        carry: bool = False) -> Callable[[int, int], None]:
        def progress(processed: int, embedded: int) -> None:
            counts.chunks_embedded += embedded
            if carry:  # embedded chunks are marked indexed: a resumed sync does not embed them again
                counts.carried["chunks_embedded"] = counts.chunks_embedded
            if observe:
                observe("dense", counts)
        return progress


def known_versions(catalog: Catalog, source: str, connector: Connector) -> dict[str, str]:
    """Indexed versions, minus documents indexed under another access list (they are rewritten)."""
    if connector.access_from_source:
        # Each document's access comes from the source and is part of its version: the connector compares.
        return catalog.document_versions(source)
    row = catalog.get_source(source)
    want = Access.of(*row.access).digest() if row else ""
    digests = catalog.access_digests(source)
    return {doc_id: v for doc_id, v in catalog.document_versions(source).items() if digests.get(doc_id) == want}
