"""The embed stage: a batch of documents becomes a *ready batch* (chunks + vectors + access), no index writes.

Poisoned documents: every document's attempt is counted in the catalog *before* it is processed, so a
batch that kills its worker still counts. A batch whose documents were attempted before is processed
one document at a time (each counted just before it runs, cleared when it went through), which
isolates the culprit; at `quarantine_after` attempts a document version is quarantined: recorded as a
failure with its error and skipped until its version changes."""
from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from indexer.chunking import chunk_document
from indexer.models import Access, Chunk, Document, SyncFailure
from indexer.pipeline.apply import ReadyDocument
from workers.context import WorkerContext

log = logging.getLogger(__name__)

QUARANTINED = "quarantined"


def document_to_json(doc: Document) -> dict:
    return {"id": doc.id, "source": doc.source, "path": doc.path, "content": doc.content, "version": doc.version,
            "access": sorted(doc.access.principals), "kind": doc.kind, "language": doc.language,
            "title": doc.title, "url": doc.url, "metadata": dict(doc.metadata)}


def document_from_json(data: dict) -> Document:
    return Document(id=data["id"], source=data["source"], path=data["path"], content=data["content"],
                    version=data["version"], access=Access.of(*data["access"]), kind=data["kind"],
                    language=data["language"], title=data["title"], url=data["url"],
                    metadata=data.get("metadata") or {})


def batch_id(job_id: str, kind: str, keys: Sequence[str]) -> str:
    """Derived from the job and the batch's content, so re-sending the same batch gives the same id."""
    digest = hashlib.sha256("\n".join([job_id, kind, *sorted(keys)]).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:24]


@dataclass
class ReadyBatch:
    """What the index queue applies: prepared documents, deletions, and what was quarantined."""

    job_id: str
    batch_id: str
    source: str
    kind: str = "documents"  # or "deletions"
    rewrite: bool = False
    documents: list[ReadyDocument] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    quarantined: int = 0
    chunks_embedded: int = 0
    tries: int = 0
    model: str = ""  # the embedding model that made the vectors (the index node checks it)

    def to_json(self) -> dict:
        docs = [{"doc": document_to_json(r.doc), "chunks": [_chunk_json(c) for c in r.chunks],
                 "vectors": base64.b64encode(np.asarray(r.vectors, dtype="<f4").tobytes()).decode("ascii")}
                for r in self.documents]
        return {"job_id": self.job_id, "batch_id": self.batch_id, "source": self.source, "kind": self.kind,
                "rewrite": self.rewrite, "documents": docs, "deletions": self.deletions,
                "quarantined": self.quarantined, "chunks_embedded": self.chunks_embedded, "tries": self.tries,
                "model": self.model}

    @classmethod
    def from_json(cls, data: dict) -> ReadyBatch:
        docs = []
        for item in data["documents"]:
            chunks = [Chunk(**{**c, "acl": tuple(c["acl"])}) for c in item["chunks"]]
            flat = np.frombuffer(base64.b64decode(item["vectors"]), dtype="<f4").astype(np.float32)
            vectors = flat.reshape(len(chunks), -1) if chunks else np.empty((0, 0), dtype=np.float32)
            docs.append(ReadyDocument(document_from_json(item["doc"]), chunks, list(vectors)))
        return cls(job_id=data["job_id"], batch_id=data["batch_id"], source=data["source"], kind=data["kind"],
                   rewrite=bool(data["rewrite"]), documents=docs, deletions=list(data["deletions"]),
                   quarantined=int(data["quarantined"]), chunks_embedded=int(data["chunks_embedded"]),
                   tries=int(data.get("tries", 0)), model=str(data.get("model", "")))


def _chunk_json(chunk: Chunk) -> dict[str, Any]:
    data = asdict(chunk)
    data["acl"] = list(chunk.acl)
    return data


@dataclass
class EmbedOutcome:
    ready: ReadyBatch
    retry: list[Document]  # failed this time, below the quarantine limit: sent again later


Prepare = Callable[[WorkerContext, Sequence[Document]], tuple[list[ReadyDocument], int]]


def prepare_documents(ctx: WorkerContext, docs: Sequence[Document]) -> tuple[list[ReadyDocument], int]:
    """Chunk and embed (cache first). Returns the prepared documents and how many texts were embedded."""
    chunked = [(doc, chunk_document(doc, max_lines=ctx.chunking.max_lines, min_lines=ctx.chunking.min_lines,
                                    limits=ctx.chunking.limits)) for doc in docs]
    flat = [c for _, chunks in chunked for c in chunks]
    vectors, embedded = ctx.embedder.embed_chunks(flat) if flat else (np.empty((0, 0), dtype=np.float32), 0)
    out, at = [], 0
    for doc, chunks in chunked:
        out.append(ReadyDocument(doc, chunks, list(vectors[at:at + len(chunks)])))
        at += len(chunks)
    return out, embedded


def embed_batch(ctx: WorkerContext, job_id: str, batch: str, source: str, docs: Sequence[Document],
                rewrite: bool = False, prepare: Prepare = prepare_documents) -> EmbedOutcome:
    """Turn documents into a ready batch, quarantining documents that keep failing. The documents
    arrive screened: the crawl redacted them and kept secret files out before sending them."""
    limit = ctx.settings.quarantine_after
    ready = ReadyBatch(job_id=job_id, batch_id=batch, source=source, rewrite=rewrite)
    seen = ctx.state.attempts([d.id for d in docs])
    current = {d.id: seen[d.id] for d in docs if d.id in seen and seen[d.id].version == d.version}
    todo: list[Document] = []
    for doc in docs:
        record = current.get(doc.id)
        if record is not None and (record.quarantined or record.attempts >= limit):
            quarantine_document(ctx, doc, record.attempts, record.error or "its worker died while processing it")
            ready.quarantined += 1
        else:
            todo.append(doc)
    retry: list[Document] = []
    if any(d.id in current for d in todo):
        _one_by_one(ctx, todo, ready, retry, counted=False, prepare=prepare)
    elif todo:
        ctx.state.count_attempt(todo)
        try:
            ready.documents, ready.chunks_embedded = prepare(ctx, todo)
            ctx.state.clear_attempts([d.id for d in todo])
        except Exception:  # isolate the document(s) that fail; the rest of the batch goes through
            log.warning("batch %s of source %s failed as a whole; retrying its %d documents one by one",
                        batch, source, len(todo), exc_info=True)
            _one_by_one(ctx, todo, ready, retry, counted=True, prepare=prepare)
    if ready.documents:
        ready.model = ctx.embedder.model_name
    return EmbedOutcome(ready, retry)


def _one_by_one(ctx: WorkerContext, docs: Sequence[Document], ready: ReadyBatch, retry: list[Document],
                counted: bool, prepare: Prepare) -> None:
    limit = ctx.settings.quarantine_after
    for doc in docs:
        if not counted:
            ctx.state.count_attempt([doc])
        try:
            prepared, embedded = prepare(ctx, [doc])
        except Exception as exc:  # noqa: BLE001 - any failure is recorded against its document, never stops the batch
            error = f"{type(exc).__name__}: {exc}"
            ctx.state.record_error(doc.id, error)
            attempts = ctx.state.attempts([doc.id]).get(doc.id)
            log.warning("document %s failed (attempt %s): %s", doc.id, attempts.attempts if attempts else "?",
                        type(exc).__name__)
            if attempts is not None and attempts.attempts >= limit:
                quarantine_document(ctx, doc, attempts.attempts, error)
                ready.quarantined += 1
            else:
                retry.append(doc)
            continue
        ctx.state.clear_attempts([doc.id])
        ready.documents.extend(prepared)
        ready.chunks_embedded += embedded


def quarantine_document(ctx: WorkerContext, doc: Document, attempts: int, error: str) -> None:
    """Skip this version from now on, and show why where an admin looks for failures."""
    ctx.state.quarantine([doc.id], error)
    ctx.catalog.record_failure(SyncFailure(doc.source, doc.path,
                                           f"{QUARANTINED} after {attempts} attempts: {error}"[:2000]))
    log.error("document %s (version %s) quarantined after %d attempts", doc.id, doc.version, attempts)
