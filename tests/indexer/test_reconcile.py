"""Reconciliation finds each kind of drift between tantivy, the vectors and the catalog, and repairs it."""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import update

from indexer.catalog.schema import documents
from indexer.pipeline.reconcile import reconcile_source
from indexer.stores import VectorPoint
from workers.jobs import run_sync_job
from workers.maintenance import reconcile_all, run_reconcile_job


@pytest.fixture
def indexed(services, make_repo):
    repo = make_repo()
    repo.write("auth.py", 'def login(user):\n    """Sign a user in."""\n    return user.token\n')
    repo.write("billing.py", 'def invoice(order):\n    """Render an invoice."""\n    return order.total\n')
    repo.write("README.md", "# Service\n\nHow to run the service.\n")
    repo.commit()
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root)}, ["group:eng"])
    run_sync_job(services, "svc")
    return services


def ids(services):
    return (services.fulltext.ids("svc"), services.vectors.ids("svc"), set(services.catalog.chunk_ids_of_source("svc")))


def test_a_clean_index_has_no_drift(indexed):
    drift = reconcile_source(indexed.pipeline, "svc")
    assert drift.total == 0 and drift.chunks_checked == len(indexed.catalog.chunk_ids_of_source("svc")) > 0
    assert drift.documents_requeued == 0


def test_chunk_deleted_from_tantivy_only_is_written_again(indexed):
    before = ids(indexed)
    victim = min(before[2])
    indexed.fulltext.delete("svc", [victim])
    indexed.fulltext.commit()
    found = reconcile_source(indexed.pipeline, "svc", repair=False)
    assert (found.missing_fulltext, found.total) == (1, 1)
    assert victim not in indexed.fulltext.ids("svc")  # a dry run repairs nothing
    repaired = reconcile_source(indexed.pipeline, "svc")
    assert repaired.missing_fulltext == 1 and ids(indexed) == before
    assert reconcile_source(indexed.pipeline, "svc").total == 0


def test_orphan_vector_and_orphan_fulltext_chunk_are_deleted(indexed):
    before = ids(indexed)
    record = next(iter(indexed.catalog.get_chunks([min(before[2])]).values()))
    stray = dataclasses.replace(record.to_chunk(), doc_id="svc:gone.py", path="gone.py")
    indexed.vectors.upsert([VectorPoint(stray, [0.1] * indexed.embedder.dim)])
    indexed.fulltext.upsert([stray])
    indexed.fulltext.commit()
    assert stray.id in indexed.vectors.ids("svc") and stray.id in indexed.fulltext.ids("svc")
    drift = reconcile_source(indexed.pipeline, "svc")
    assert (drift.orphans_vectors, drift.orphans_fulltext, drift.total) == (1, 1, 2)
    assert ids(indexed) == before


def test_missing_vector_requeues_its_document_and_reuses_the_embedding_cache(indexed):
    before = ids(indexed)
    victim = min(before[1])
    indexed.vectors.delete([victim])
    drift = run_reconcile_job(indexed, "svc")
    assert (drift.missing_vectors, drift.documents_requeued, drift.chunks_reembedded) == (1, 1, 0)
    assert ids(indexed) == before and indexed.catalog.pending_chunk_count("svc") == 0
    job = indexed.catalog.list_jobs(source="svc", kind="reconcile")[0]
    assert job.state == "succeeded" and job.counts["missing_vectors"] == 1 and job.counts["drift"] == 1


def test_documents_still_waiting_for_embeddings_are_not_drift(indexed):
    chunk_ids = sorted(indexed.catalog.chunk_ids_of_source("svc"))
    doc_id = next(iter(indexed.catalog.get_chunks(chunk_ids[:1]).values())).doc_id
    owned = indexed.catalog.chunk_ids_for([doc_id])[doc_id]
    indexed.vectors.delete(owned)
    with indexed.catalog.engine.begin() as conn:
        conn.execute(update(documents).where(documents.c.id == doc_id).values(state="lexical"))
    assert reconcile_source(indexed.pipeline, "svc", repair=False).total == 0


def test_reconcile_all_skips_a_source_being_synced(indexed):
    job = indexed.catalog.create_job(None, "svc", "index")
    indexed.catalog.start_job(job)
    assert reconcile_all(indexed) == []
    indexed.catalog.update_job(job, state="succeeded")
    assert [d.source for d in reconcile_all(indexed)] == ["svc"]
