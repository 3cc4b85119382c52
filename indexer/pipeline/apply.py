"""Applies batches of documents and deletions to the catalog and both stores, idempotently.

Two phases per document, so code is searchable by keyword long before it is embedded:
  1. lexical: screen secrets (secret files skipped, credentials redacted: indexer/secrets/screen.py),
     chunk, write tantivy (committed), record chunks in the catalog as `lexical`;
  2. dense: embed the pending chunks (cache first), write Qdrant, mark the document `indexed`.
Stores are written before the catalog, so a crash leaves the catalog behind the stores, never
ahead: the next sync sees the old version and applies the document again, which is harmless
because chunk ids are content-derived and every write is an upsert or a delete by id."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from indexer.catalog import Catalog
from indexer.chunking import chunk_document
from indexer.embedding import ChunkEmbedder
from indexer.models import Access, Chunk, Document
from indexer.pipeline.prepare import BatchPreparer, ChunkingOptions, PreparedBatch, prepare_batch
from indexer.secrets.redaction_log import RedactionLog
from indexer.secrets.screen import Screened, SecretScreen
from indexer.stores import FullTextIndex, VectorPoint, VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (chunks processed, chunks embedded) per batch


__all__ = ["BatchCounts", "ChunkingOptions", "Pipeline", "PreparedBatch", "ReadyDocument"]


@dataclass
class BatchCounts:
    """What one batch changed; summed over a sync into the job's counts."""

    docs_changed: int = 0
    docs_deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchCounts) -> None:
        for name in ("docs_changed", "docs_deleted", "chunks_written", "chunks_deleted", "chunks_embedded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class ReadyDocument:
    """A document prepared elsewhere (a worker chunked and embedded it): nothing left but writing."""

    doc: Document
    chunks: Sequence[Chunk]
    vectors: Sequence  # one vector per chunk, in order


class Pipeline:
    """The only writer of indexed content: everything that changes the index goes through here."""

    def __init__(self, catalog: Catalog, fulltext: FullTextIndex, vectors: VectorStore,
                 embedder: ChunkEmbedder, chunking: ChunkingOptions | None = None,
                 embed_batch: int = 256, secrets: SecretScreen | None = None, prepare_workers: int = 0) -> None:
        self.catalog = catalog
        self.secrets = secrets or SecretScreen()
        self.redactions = RedactionLog(catalog.engine)
        self.fulltext = fulltext
        self.vectors = vectors
        self.embedder = embedder
        self.chunking = chunking or ChunkingOptions()
        self.embed_batch = embed_batch
        self.prepare_workers = prepare_workers  # processes preparing a sync's batches (0: in-process)
        # Held by every write (one batch at a time); backup and generation swaps take it to pause writes.
        self.write_lock = threading.RLock()

    def chunk(self, doc: Document) -> list[Chunk]:
        """Chunks of the document's redacted text (none for a secret file), for callers outside a batch."""
        prepared, _ = self.secrets.prepare(doc)
        return self._chunk(prepared) if isinstance(prepared, Document) else []

    def _chunk(self, doc: Document) -> list[Chunk]:
        return chunk_document(doc, max_lines=self.chunking.max_lines, min_lines=self.chunking.min_lines,
                              limits=self.chunking.limits)

    def preparer(self) -> BatchPreparer:
        """Prepares batches for `apply_prepared` (in worker processes when `prepare_workers` > 0)."""
        return BatchPreparer(self.secrets, self.chunking, self.prepare_workers)

    def prepare_lexical(self, docs: Sequence[Document]) -> PreparedBatch:
        """The first half of phase 1, in this process: screen and chunk (reads and writes nothing)."""
        return prepare_batch(self.secrets, self.chunking, docs)

    def apply_lexical(self, docs: Sequence[Document], rewrite: bool = False) -> BatchCounts:
        """Phase 1 for a batch: chunks into tantivy and the catalog; stale chunks out of both stores.

        `rewrite` writes every chunk again (a full reindex repairing drift), not only new ones."""
        if not docs:
            return BatchCounts()
        return self.apply_prepared(self.prepare_lexical(docs), rewrite)

    def apply_prepared(self, prepared: PreparedBatch, rewrite: bool = False) -> BatchCounts:
        """The second half of phase 1: write a prepared batch (secret files out, chunks in)."""
        counts = BatchCounts()
        with self.write_lock:
            return self._apply_prepared(prepared, rewrite, counts)

    def _screened(self, screened: Screened, counts: BatchCounts) -> list[Document]:
        """Secret files out (recorded as skipped, removed if indexed before); the rest redacted."""
        self.secrets.report(screened)
        if screened.skipped:
            self.catalog.record_skipped(*screened.skipped)
            indexed = list(self.catalog.sources_of(screened.skipped_ids))
            if indexed:
                self._delete(indexed, counts)
        counts.extra["secret_files"] = len(screened.skipped)
        counts.extra["secrets_redacted"] = sum(len(found) for found in screened.findings.values())
        return screened.documents

    def _apply_prepared(self, prepared: PreparedBatch, rewrite: bool, counts: BatchCounts) -> BatchCounts:
        docs = self._screened(prepared.screened, counts)
        if not docs:
            return counts
        chunked = prepared.chunks
        old = self.catalog.chunk_ids_for(list(chunked))
        by_source: dict[str, list[str]] = {}
        fresh: list[Chunk] = []
        for doc in docs:
            new_ids = {c.id for c in chunked[doc.id]}
            stale = [cid for cid in old.get(doc.id, []) if cid not in new_ids]
            by_source.setdefault(doc.source, []).extend(stale)
            known = set() if rewrite else set(old.get(doc.id, []))
            fresh.extend(c for c in chunked[doc.id] if c.id not in known)
        for source, stale in by_source.items():
            if stale:
                self.fulltext.delete(source, stale)
                self.vectors.delete(stale)
                counts.chunks_deleted += len(stale)
        self.fulltext.upsert(fresh, prepared.expansions)
        self.fulltext.commit()
        self.catalog.replace_documents([(doc, chunked[doc.id], None) for doc in docs], state="lexical")
        self.redactions.record(docs)
        counts.docs_changed = len(docs)
        counts.chunks_written = len(fresh)
        log.info("lexical batch: %d documents, %d chunks written, %d removed",
                 len(docs), len(fresh), counts.chunks_deleted)
        return counts

    def embed_pending(self, source: str, progress: Progress | None = None) -> BatchCounts:
        """Phase 2: embed every chunk of the source's `lexical` documents and mark them `indexed`."""
        counts = BatchCounts()
        while True:
            doc_ids, chunks = self.catalog.pending_chunks(source, limit=self.embed_batch)
            if not doc_ids:
                return counts
            embedded = 0
            points: list[VectorPoint] = []
            if chunks:
                vectors, embedded = self.embedder.embed_chunks(chunks)
                points = [VectorPoint(c, v) for c, v in zip(chunks, vectors, strict=True)]
            with self.write_lock:
                if points:
                    self.vectors.upsert(points)
                self.catalog.mark_indexed(doc_ids)
            counts.chunks_embedded += embedded
            if progress:
                progress(len(chunks), embedded)

    def apply_ready(self, ready: Sequence[ReadyDocument], rewrite: bool = False) -> BatchCounts:
        """Both phases at once for documents chunked and embedded by a worker (the index queue).

        Same order as the two phases: stale chunks out, new chunks into tantivy and Qdrant, then the
        catalog, so a repeat or a crash part-way leaves nothing wrong."""
        counts = BatchCounts()
        if not ready:
            return counts
        with self.write_lock:
            old = self.catalog.chunk_ids_for([r.doc.id for r in ready])
            fresh: list[Chunk] = []
            points: list[VectorPoint] = []
            for item in ready:
                new_ids = {c.id for c in item.chunks}
                stale = [cid for cid in old.get(item.doc.id, []) if cid not in new_ids]
                if stale:
                    self.fulltext.delete(item.doc.source, stale)
                    self.vectors.delete(stale)
                    counts.chunks_deleted += len(stale)
                known = set() if rewrite else set(old.get(item.doc.id, []))
                fresh.extend(c for c in item.chunks if c.id not in known)
                points.extend(VectorPoint(c, v) for c, v in zip(item.chunks, item.vectors, strict=True))  # upserts by id
                counts.docs_changed += set(old.get(item.doc.id, [])) != new_ids or item.doc.id not in old
            self.fulltext.upsert(fresh)
            self.fulltext.commit()
            self.vectors.upsert(points)
            self.catalog.replace_documents([(r.doc, list(r.chunks), None) for r in ready], state="indexed")
            self.redactions.record([r.doc for r in ready])
        counts.chunks_written = len(fresh)
        return counts

    def reapply_access(self, changes: Mapping[str, Access]) -> BatchCounts:
        """Indexed documents under a new Access, read back from the catalog (the source is not asked).

        Chunk ids carry the ACL, so each document's chunks are written again under the new one in both
        stores; their vectors come from the embedding cache (`chunks_embedded` counts any that were not
        there any more). Ids the catalog does not hold are left out."""
        docs: list[Document] = []
        for doc_id, access in changes.items():
            record = self.catalog.get_document(doc_id)
            if record is not None:
                docs.append(Document(id=record.id, source=record.source, path=record.path, content=record.content,
                                     version=record.version, access=access, kind=record.kind,
                                     language=record.language, title=record.title, url=record.url))
        if not docs:
            return BatchCounts()
        prepared = self.prepare_lexical(docs)
        ready: list[ReadyDocument] = []
        embedded = 0
        for doc in prepared.screened.documents:
            chunks = prepared.chunks[doc.id]
            if not chunks:
                ready.append(ReadyDocument(doc, chunks, []))
                continue
            vectors, missed = self.embedder.embed_chunks(chunks)
            ready.append(ReadyDocument(doc, chunks, list(vectors)))
            embedded += missed
        counts = self.apply_ready(ready)
        counts.chunks_embedded = embedded
        log.info("access rewritten: %d documents, %d chunks (%d embedded again)",
                 len(ready), counts.chunks_written, embedded)
        return counts

    def delete(self, doc_ids: Sequence[str]) -> BatchCounts:
        """Remove documents from both stores, then from the catalog."""
        counts = BatchCounts()
        if not doc_ids:
            return counts
        with self.write_lock:
            return self._delete(doc_ids, counts)

    def _delete(self, doc_ids: Sequence[str], counts: BatchCounts) -> BatchCounts:
        owned = self.catalog.chunk_ids_for(list(doc_ids))
        sources = self.catalog.sources_of(list(doc_ids))
        for doc_id, chunk_ids in owned.items():
            if chunk_ids:
                self.fulltext.delete(sources[doc_id], chunk_ids)
                self.vectors.delete(chunk_ids)
                counts.chunks_deleted += len(chunk_ids)
        self.fulltext.commit()
        self.catalog.delete_documents(list(doc_ids))
        self.redactions.forget(doc_ids)
        counts.docs_deleted = len(sources)  # ids the catalog held: removing an unknown one deletes nothing
        return counts
