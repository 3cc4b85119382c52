"""A batch whose job is no longer live (abandoned, failed, finished) that reaches the index node late is
acknowledged and recorded as dropped, never applied: it would write older versions of documents over what a
newer job indexed (workers/distributed.py, apply_ready_batch). The next sync indexes what it held."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update
from test_queue_path import InlineDispatch, apply_all, repo_with, run_embeds

from indexer.catalog.schema import queue_crawls
from indexer.models import Principal
from retrieval.permissions import Scope
from retrieval.searcher import build_searcher
from workers.context import WorkerContext
from workers.distributed import crawl_source

ENG = Principal(user="ana", groups=frozenset({"eng"}))


@pytest.fixture
def ctx(services, settings):
    settings.queue_batch_docs = 2
    return WorkerContext.from_services(services)


def handler(n: int, word: str) -> str:
    return f"def handler_{n}(event):\n    '''Handle the {word} event {n}.'''\n    return event.get('{word}') == {n}\n"


def crawled(ctx, source: str, job: str) -> InlineDispatch:
    """Crawl and embed the job's batches; the ready batches wait in the returned dispatch."""
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, source, job) == "sent"
    run_embeds(ctx, dispatch)
    return dispatch


def found(services, query: str) -> set[str]:
    hits = build_searcher(services).search(query, ENG, Scope(sources=("svc",)), limit=20).hits
    return {hit.path for hit in hits if query in hit.snippet}


def test_a_late_batch_of_an_abandoned_job_never_replaces_what_a_newer_job_indexed(ctx, services, make_repo):
    repo = repo_with(make_repo, {"a.py": handler(1, "refund"), "b.py": handler(2, "refund")})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    old = services.catalog.create_job(None, "svc", "index")
    late = crawled(ctx, "svc", old).readies  # the index node is down: its batch waits in the queue
    assert len(late) == 1
    repo.write("a.py", handler(1, "chargeback"))
    repo.commit()
    # The old job makes no progress: the next sync gives up on it and indexes the newer version.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=4 * ctx.settings.celery_visibility_timeout)
    with services.catalog.engine.begin() as conn:
        conn.execute(update(queue_crawls).where(queue_crawls.c.job_id == old).values(updated_at=long_ago))
    new = services.catalog.create_job(None, "svc", "index")
    apply_all(ctx, services, crawled(ctx, "svc", new))
    assert services.catalog.get_job(new).state == "succeeded"
    assert services.catalog.get_job(old).state == "failed"  # abandoned
    newer = services.catalog.document_versions("svc")
    assert found(services, "chargeback") == {"a.py"}

    apply_all(ctx, services, InlineDispatch(readies=list(late)))  # the old job's batch turns up after all

    assert services.catalog.document_versions("svc") == newer
    assert found(services, "chargeback") == {"a.py"} and found(services, "refund") == {"b.py"}
    assert ctx.state.batch_state(old, late[0]["batch_id"]) == "dropped"
    assert services.catalog.get_job(old).counts["late_batches_dropped"] == 1  # visible on the job's record
    apply_all(ctx, services, InlineDispatch(readies=list(late)))  # delivered again: still one
    assert services.catalog.get_job(old).counts["late_batches_dropped"] == 1


def test_the_sync_after_a_failed_job_whose_batches_were_dropped_indexes_everything(ctx, services, make_repo):
    files = {f"h{n}.py": handler(n, "invoice") for n in range(5)}
    repo = repo_with(make_repo, files)
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    job = services.catalog.create_job(None, "svc", "index")
    first, *late = crawled(ctx, "svc", job).readies
    assert len(late) == 2  # five files in batches of two
    apply_all(ctx, services, InlineDispatch(readies=[first]))
    services.catalog.update_job(job, state="failed", error="the crawl's task failed")  # given up on
    apply_all(ctx, services, InlineDispatch(readies=list(late)))
    assert len(services.catalog.document_versions("svc")) == 2  # only the batch applied while it ran
    record = services.catalog.get_job(job)
    assert record.state == "failed" and record.counts["late_batches_dropped"] == 2
    assert services.catalog.get_checkpoint("svc") is None  # stored only by a job that finished its batches

    again = services.catalog.create_job(None, "svc", "index")
    dispatch = crawled(ctx, "svc", again)
    assert sum(len(ready["documents"]) for ready in dispatch.readies) == 3  # what the dropped batches held
    apply_all(ctx, services, dispatch)
    assert services.catalog.get_job(again).state == "succeeded"
    assert {r.path for r in (services.catalog.get_document(d) for d in services.catalog.document_versions("svc"))
            if r is not None} == set(files)
    assert found(services, "invoice") == set(files)


def test_an_embed_message_of_a_job_no_longer_live_is_not_embedded(ctx, services, make_repo):
    repo = repo_with(make_repo, {"a.py": handler(1, "refund")})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    job = services.catalog.create_job(None, "svc", "index")
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, "svc", job) == "sent"
    services.catalog.update_job(job, state="failed", error="given up")
    run_embeds(ctx, dispatch)
    assert dispatch.readies == []  # nothing embedded nor sent to the index node
    assert services.catalog.get_job(job).counts["late_batches_dropped"] == 1


def test_a_job_given_up_on_while_its_batch_is_prepared_for_the_index_writes_nothing(ctx, services, make_repo,
                                                                                       monkeypatch):
    """The check is made again together with the writes: a batch embedded with another model is embedded
    again on the index node, and its job is abandoned meanwhile."""
    repo = repo_with(make_repo, {"a.py": handler(1, "refund")})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    job = services.catalog.create_job(None, "svc", "index")
    (ready,) = crawled(ctx, "svc", job).readies
    embed_chunks = services.pipeline.embedder.embed_chunks

    def abandoned_meanwhile(chunks):
        ctx.state.abandon(job)  # a newer sync of the source gave up on the job
        return embed_chunks(chunks)

    monkeypatch.setattr(services.pipeline.embedder, "embed_chunks", abandoned_meanwhile)
    apply_all(ctx, services, InlineDispatch(readies=[ready | {"model": "an-older-model"}]))
    assert services.catalog.document_versions("svc") == {}
    assert ctx.state.batch_state(job, ready["batch_id"]) == "dropped"
    assert services.catalog.get_job(job).counts["late_batches_dropped"] == 1
