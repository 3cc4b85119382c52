"""Thin, named, idempotent tasks: they take ids and JSON, and call the indexer."""
from __future__ import annotations

from typing import Any

from indexer.documents import Access, Document
from workers.celery_app import app, services_for
from workers.jobs import run_sync_job


@app.task(name="cairn.sync_source", bind=True)
def sync_source(self: Any, source: str, job_id: str | None = None, full: bool = False) -> dict:
    """Sync one source end to end; resumable because the catalog, not the task, holds the state."""
    return run_sync_job(services_for(self.app), source, job_id=job_id, full=full).as_dict()


def document_to_json(doc: Document) -> dict:
    return {"id": doc.id, "source": doc.source, "path": doc.path, "content": doc.content, "version": doc.version,
            "access": sorted(doc.access.principals), "kind": doc.kind, "language": doc.language,
            "title": doc.title, "url": doc.url, "metadata": dict(doc.metadata)}


def document_from_json(data: dict) -> Document:
    return Document(id=data["id"], source=data["source"], path=data["path"], content=data["content"],
                    version=data["version"], access=Access.of(*data["access"]), kind=data["kind"],
                    language=data["language"], title=data["title"], url=data["url"],
                    metadata=data.get("metadata") or {})


@app.task(name="cairn.index_batch", bind=True)
def index_batch(self: Any, documents: list[dict]) -> dict:
    """Apply a batch of documents (both phases). Applying the same batch twice changes nothing."""
    pipeline = services_for(self.app).pipeline
    docs = [document_from_json(d) for d in documents]
    counts = pipeline.apply_lexical(docs)
    for source in sorted({d.source for d in docs}):
        counts.add(pipeline.embed_pending(source))
    return {"docs_changed": counts.docs_changed, "chunks_written": counts.chunks_written,
            "chunks_embedded": counts.chunks_embedded, "chunks_deleted": counts.chunks_deleted}


@app.task(name="cairn.delete_documents", bind=True)
def delete_documents(self: Any, doc_ids: list[str]) -> dict:
    counts = services_for(self.app).pipeline.delete(doc_ids)
    return {"docs_deleted": counts.docs_deleted, "chunks_deleted": counts.chunks_deleted}
