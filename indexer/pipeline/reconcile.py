"""Reconciliation: check that tantivy, the vector store and the catalog hold the same chunks, and repair drift.

The catalog is the truth (it is written last, see pipeline.py). Per source:
  - a chunk in a store that the catalog does not have is an orphan: deleted from that store;
  - a catalog chunk missing from tantivy is written again from its catalog row (same id, same text);
  - a chunk of an `indexed` document missing from the vectors: the document is marked `lexical`
    again, so the dense phase re-writes its vectors (from the embedding cache: no model call when the
    text was embedded before). Documents still `lexical` are expected to lack vectors: not drift.
Runs under the pipeline's write lock, so no batch changes the source between the comparison and
the repair in this process; callers skip sources another process is syncing."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from sqlalchemy import select, update

from indexer.catalog.schema import chunks, documents
from indexer.pipeline import Pipeline

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class Drift:
    """What one source's reconciliation found (and repaired, unless it was a dry run)."""

    source: str
    chunks_checked: int = 0
    orphans_fulltext: int = 0
    orphans_vectors: int = 0
    missing_fulltext: int = 0
    missing_vectors: int = 0
    documents_requeued: int = 0
    chunks_reembedded: int = 0
    repaired: bool = False

    @property
    def total(self) -> int:
        return self.orphans_fulltext + self.orphans_vectors + self.missing_fulltext + self.missing_vectors

    def as_dict(self) -> dict:
        return asdict(self) | {"drift": self.total}


def _catalog_chunks(pipeline: Pipeline, source: str) -> tuple[set[str], dict[str, str]]:
    """All of the source's chunk ids, and chunk id → doc id for chunks of `indexed` documents."""
    query = (select(chunks.c.id, chunks.c.doc_id, documents.c.state)
             .select_from(chunks.join(documents, documents.c.id == chunks.c.doc_id))
             .where(chunks.c.source == source))
    every: set[str] = set()
    indexed: dict[str, str] = {}
    with pipeline.catalog.engine.connect() as conn:
        for chunk_id, doc_id, state in conn.execute(query):
            every.add(chunk_id)
            if state == "indexed":
                indexed[chunk_id] = doc_id
    return every, indexed


def reconcile_source(pipeline: Pipeline, source: str, repair: bool = True) -> Drift:
    """Compare one source's chunk ids in the catalog, tantivy and the vectors; repair unless `repair` is False."""
    with pipeline.write_lock:
        drift = _compare_and_repair(pipeline, source, repair)
    if repair and drift.documents_requeued:
        drift.chunks_reembedded = pipeline.embed_pending(source).chunks_embedded
    log.info("reconcile %s: %s", source, drift.as_dict())
    return drift


def _compare_and_repair(pipeline: Pipeline, source: str, repair: bool) -> Drift:
    every, indexed = _catalog_chunks(pipeline, source)
    in_fulltext = pipeline.fulltext.ids(source)
    in_vectors = pipeline.vectors.ids(source)
    orphan_ft = sorted(in_fulltext - every)
    orphan_vec = sorted(in_vectors - every)
    missing_ft = sorted(every - in_fulltext)
    missing_vec = sorted(set(indexed) - in_vectors)
    requeue = sorted({indexed[cid] for cid in missing_vec})
    drift = Drift(source, len(every), len(orphan_ft), len(orphan_vec), len(missing_ft), len(missing_vec),
                  len(requeue), repaired=repair)
    if not repair or not drift.total:
        return drift
    if orphan_ft:
        pipeline.fulltext.delete(source, orphan_ft)
    if orphan_vec:
        pipeline.vectors.delete(orphan_vec)
    if missing_ft:
        rows = pipeline.catalog.get_chunks(missing_ft)
        pipeline.fulltext.upsert([rows[cid].to_chunk() for cid in missing_ft if cid in rows])
    if orphan_ft or missing_ft:
        pipeline.fulltext.commit()
    _mark_lexical(pipeline, requeue)
    return drift


def _mark_lexical(pipeline: Pipeline, doc_ids: list[str]) -> None:
    """The dense phase (embed_pending) will write these documents' vectors again."""
    with pipeline.catalog.engine.begin() as conn:
        for start in range(0, len(doc_ids), BATCH):
            batch = doc_ids[start:start + BATCH]
            conn.execute(update(documents).where(documents.c.id.in_(batch)).values(state="lexical"))
