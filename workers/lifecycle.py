"""A source's lifecycle on a running index: its documents rewritten under a changed access list (no
re-embedding) and the source removed from every store and the catalog (with the memberships it synced). Both run where the index is
written (the API's job runner thread in `cairn serve`, or the CLI's own process)."""
from __future__ import annotations

import logging

from indexer.catalog.db import id_batches
from indexer.identity.store import IdentityStore
from indexer.models import Access
from indexer.pipeline import BatchCounts
from indexer.services import IndexServices

log = logging.getLogger(__name__)

ACCESS_JOB = "access"  # the kind of the job that rewrites a source's ACLs
REWRITE_BATCH = 200  # documents per rewrite batch (each batch is one write under the index lock)


def rewrite_access(services: IndexServices, source: str) -> BatchCounts:
    """Every document of a git source not yet under the source's access list, rewritten under it from
    the catalog's stored text (chunk ids carry the ACL; vectors come from the embedding cache)."""
    catalog = services.catalog
    row = catalog.get_source(source)
    if row is None:
        raise LookupError(f"no source named {source!r}")
    access = Access.of(*row.access)
    stale = sorted(doc_id for doc_id, digest in catalog.access_digests(source).items() if digest != access.digest())
    counts = BatchCounts()
    for batch in id_batches(stale, REWRITE_BATCH):
        counts.add(services.pipeline.reapply_access(dict.fromkeys(batch, access)))
    log.info("source %s: %d documents rewritten under a new access list", source, len(stale))
    return counts


def run_access_job(services: IndexServices, source: str, job_id: str) -> dict[str, int]:
    """`rewrite_access` recorded as a job of kind `access` (counts: documents and chunks rewritten,
    chunks embedded again, which is 0 while the embedding cache holds the source's chunks)."""
    catalog = services.catalog
    if catalog.start_job(job_id) == "cancelled":
        return {}
    try:
        counts = rewrite_access(services, source)
    except Exception as exc:
        log.exception("access job %s for source %s failed", job_id, source)
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    result = {"files_changed": counts.docs_changed, "chunks_written": counts.chunks_written,
              "chunks_deleted": counts.chunks_deleted, "chunks_embedded": counts.chunks_embedded}
    catalog.update_job(job_id, state="succeeded", counts={"phase": "done", **result},
                       done=counts.docs_changed, total=counts.docs_changed)
    return result


def remove_source(services: IndexServices, source: str) -> dict[str, int]:
    """Every chunk of the source out of the full-text index and the vectors (those the catalog lists
    and any the stores hold without it), then the source out of the catalog. Returns what went."""
    pipeline = services.pipeline
    with pipeline.write_lock:
        chunk_ids = set(services.catalog.chunk_ids_of_source(source))
        lexical = chunk_ids | pipeline.fulltext.ids(source)
        dense = chunk_ids | pipeline.vectors.ids(source)
        if lexical:
            pipeline.fulltext.delete(source, sorted(lexical))
            pipeline.fulltext.commit()
        if dense:
            pipeline.vectors.delete(sorted(dense))
        removed = services.catalog.delete_source(source)
        IdentityStore(services.catalog.engine).forget_source(source)  # its memberships grant nothing any more
    log.info("source %s removed: %d full-text and %d vector entries", source, len(lexical), len(dense))
    return {"fulltext_chunks": len(lexical), "vector_chunks": len(dense), **removed}
