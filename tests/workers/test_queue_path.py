"""The distributed sync's logic in one process: crawl → embed → index messages kept in lists and
delivered in the order a test chooses (repeats, crashes, failures), against a real index."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from indexer.models import Document
from workers import batches
from workers.batches import ReadyBatch
from workers.context import WorkerContext
from workers.distributed import SourceBusy, crawl_source, embed_and_forward
from workers.index_queue import apply_or_retry


@dataclass
class InlineDispatch:
    """Holds sent messages instead of a broker."""

    embeds: list[tuple] = field(default_factory=list)
    readies: list[dict] = field(default_factory=list)

    def embed(self, job_id, batch, source, documents, rewrite, tries=0, countdown=0.0):
        self.embeds.append((job_id, batch, source, documents, rewrite, tries))

    def index(self, ready):
        self.readies.append(ready)


@pytest.fixture
def ctx(services, settings):
    settings.queue_batch_docs = 2
    settings.quarantine_after = 3
    return WorkerContext.from_services(services)


def run_embeds(ctx, dispatch):
    while dispatch.embeds:
        job_id, batch, source, documents, rewrite, tries = dispatch.embeds.pop(0)
        embed_and_forward(ctx, dispatch, job_id, batch, source, documents, rewrite, tries, worker="w1@test")


def apply_all(ctx, services, dispatch):
    while dispatch.readies:
        apply_or_retry(ctx, services.pipeline, dispatch.readies.pop(0), lambda payload, delay: dispatch.index(payload))


def repo_with(make_repo, files: dict[str, str]):
    repo = make_repo()
    for path, text in files.items():
        repo.write(path, text)
    repo.commit()
    return repo


def module(n: int) -> str:
    return f"def handler_{n}(event):\n    '''Handle event {n}.'''\n    return event.get('id') == {n}\n"


def test_a_job_finishes_when_its_last_batch_is_applied_and_repeats_count_once(ctx, services, make_repo):
    repo = repo_with(make_repo, {f"h{n}.py": module(n) for n in range(5)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    job = services.catalog.create_job(None, "svc", "index")
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, "svc", job) == "sent"
    assert len(dispatch.embeds) == 3  # 5 documents in batches of 2
    run_embeds(ctx, dispatch)
    readies = list(dispatch.readies)
    dispatch.readies = [*readies[:-1], readies[0]]  # the last one withheld, the first delivered twice
    apply_all(ctx, services, dispatch)
    assert services.catalog.get_job(job).state == "running"
    assert services.catalog.get_checkpoint("svc") is None  # stored only when the job finishes
    dispatch.readies = [readies[-1], readies[-1]]
    apply_all(ctx, services, dispatch)
    done = services.catalog.get_job(job)
    assert done.state == "succeeded" and done.counts["files_changed"] == 5 and done.counts["batches_applied"] == 3
    ids = set(services.catalog.chunk_ids_of_source("svc"))
    assert len(ids) >= 5 and services.fulltext.ids("svc") == ids == services.vectors.ids("svc")
    assert services.catalog.get_checkpoint("svc") is not None


def test_a_second_sync_waits_while_the_first_is_unfinished(ctx, services, make_repo):
    repo = repo_with(make_repo, {"a.py": module(1)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    first, second = (services.catalog.create_job(None, "svc", "index") for _ in range(2))
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, "svc", first)
    with pytest.raises(SourceBusy):
        crawl_source(ctx, dispatch, "svc", second)
    assert services.catalog.get_job(second).state == "queued"
    assert services.catalog.get_job(second).counts["waiting_for"] == first
    run_embeds(ctx, dispatch)
    apply_all(ctx, services, dispatch)
    assert crawl_source(ctx, dispatch, "svc", second) == "sent"
    assert crawl_source(ctx, dispatch, "svc", second) == "duplicate"  # a redelivered message does nothing


def test_a_failing_document_is_retried_then_quarantined_and_skipped_until_it_changes(ctx, services, make_repo,
                                                                                      monkeypatch):
    real = batches.chunk_document

    def chunker(doc: Document, **options):
        if "BROKEN" in doc.content:
            raise ValueError("parser exploded")
        return real(doc, **options)

    monkeypatch.setattr(batches, "chunk_document", chunker)
    repo = repo_with(make_repo, {"ok.py": module(1), "bad.py": "BROKEN = True\n", "ok2.py": module(2)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    job = services.catalog.create_job(None, "svc", "index")
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, "svc", job)
    for _ in range(3):  # the first try and two retries of the failing document
        run_embeds(ctx, dispatch)
        apply_all(ctx, services, dispatch)
    done = services.catalog.get_job(job)
    # a quarantined document is a failed item: the job is partial and says which
    assert done.state == "partial" and done.counts["files_quarantined"] == 1 and "1 item(s) failed" in done.error
    assert set(services.catalog.document_versions("svc")) == {"svc:ok.py", "svc:ok2.py"}
    [failure] = services.catalog.list_failures("svc")
    assert failure.item == "bad.py" and failure.error.startswith("quarantined after 3 attempts: ValueError")
    again = services.catalog.create_job(None, "svc", "index")
    crawl_source(ctx, dispatch, "svc", again)  # nothing else changed: the quarantined version is not sent
    assert dispatch.embeds == [] and services.catalog.get_job(again).state == "succeeded"
    assert services.catalog.get_job(again).counts["files_quarantined"] == 1
    repo.write("bad.py", "FIXED = True\n")
    repo.commit()
    fixed = services.catalog.create_job(None, "svc", "index")
    crawl_source(ctx, dispatch, "svc", fixed)
    run_embeds(ctx, dispatch)
    apply_all(ctx, services, dispatch)
    assert "svc:bad.py" in services.catalog.document_versions("svc")
    assert services.catalog.list_failures("svc") == []


def test_a_batch_that_killed_its_worker_is_split_to_find_the_culprit(ctx, services, make_repo, monkeypatch):
    repo = repo_with(make_repo, {"a.py": module(1), "b.py": module(2)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    job = services.catalog.create_job(None, "svc", "index")
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, "svc", job)
    [message] = dispatch.embeds
    real = batches.chunk_document

    class WorkerKilled(BaseException):
        """Stands for SIGKILL: nothing after it runs, not even except clauses for Exception."""

    def crashing(doc, **options):
        if doc.path == "b.py":
            raise WorkerKilled
        return real(doc, **options)

    monkeypatch.setattr(batches, "chunk_document", crashing)
    for _ in range(3):  # delivered, crashed, redelivered (as the broker does) ...
        with pytest.raises(WorkerKilled):
            embed_and_forward(ctx, dispatch, *message[:5], message[5])
    attempts = ctx.state.attempts(["svc:a.py", "svc:b.py"])
    assert attempts["svc:b.py"].attempts == 3 and "svc:a.py" not in attempts  # a.py went through alone
    embed_and_forward(ctx, dispatch, *message[:5], message[5])  # the 4th delivery quarantines b.py
    ready = ReadyBatch.from_json(dispatch.readies[-1])
    assert [r.doc.path for r in ready.documents] == ["a.py"] and ready.quarantined == 1
    apply_all(ctx, services, dispatch)
    assert services.catalog.get_job(job).state == "partial"  # b.py is quarantined: a failed item
    assert ctx.state.attempts(["svc:b.py"])["svc:b.py"].quarantined


AWS_KEY_ID = "AKIAQ3EGRZ7UDXKV4N2P"
DB_PASSWORD = "S3cr3tPa55w0rdQz"


def test_secrets_are_screened_before_any_message_is_sent(ctx, services, make_repo):
    repo = repo_with(make_repo, {
        "settings.py": f'AWS_ACCESS_KEY_ID = "{AWS_KEY_ID}"\nDATABASE_URL = "postgres://app:{DB_PASSWORD}@db:5432/app"\n'
                       "\n\ndef connect():\n    return DATABASE_URL\n",
        "deploy/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
                         "-----END OPENSSH PRIVATE KEY-----\n",
        "app.py": module(1)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    job = services.catalog.create_job(None, "svc", "index")
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, "svc", job)
    sent = repr(dispatch.embeds)
    assert "app.py" in sent and AWS_KEY_ID not in sent and DB_PASSWORD not in sent and "id_rsa" not in sent
    run_embeds(ctx, dispatch)
    assert AWS_KEY_ID not in repr(dispatch.readies)
    apply_all(ctx, services, dispatch)
    assert set(services.catalog.document_versions("svc")) == {"svc:settings.py", "svc:app.py"}
    assert [s.path for s in services.catalog.list_skipped("svc")] == ["deploy/id_rsa"]
    stored = services.catalog.get_document("svc:settings.py").content
    assert "def connect" in stored and AWS_KEY_ID not in stored and DB_PASSWORD not in stored
    assert services.catalog.get_job(job).counts["secret_files"] == 1


def test_a_sync_cancelled_while_it_waits_for_the_source_never_runs(ctx, services, make_repo):
    repo = repo_with(make_repo, {"a.py": module(1)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    first, second = (services.catalog.create_job(None, "svc", "index") for _ in range(2))
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, "svc", first)
    with pytest.raises(SourceBusy):
        crawl_source(ctx, dispatch, "svc", second)
    services.catalog.request_cancel(second)
    sent = len(dispatch.embeds)
    assert crawl_source(ctx, dispatch, "svc", second) == "finished"
    assert services.catalog.get_job(second).state == "cancelled" and len(dispatch.embeds) == sent


def test_a_cancel_during_the_crawl_stops_sending_and_the_job_ends_cancelled(ctx, services, make_repo):
    repo = repo_with(make_repo, {f"h{n}.py": module(n) for n in range(6)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    job = services.catalog.create_job(None, "svc", "index")

    class CancellingDispatch(InlineDispatch):
        def embed(self, *args, **kwargs):
            super().embed(*args, **kwargs)
            services.catalog.request_cancel(job)  # the admin cancels while the first batch is sent

    dispatch = CancellingDispatch()
    assert crawl_source(ctx, dispatch, "svc", job) == "stopped"
    assert len(dispatch.embeds) == 1 and services.catalog.get_job(job).state == "cancelling"
    run_embeds(ctx, dispatch)
    apply_all(ctx, services, dispatch)
    assert services.catalog.get_job(job).state == "cancelled"
    assert len(services.catalog.document_versions("svc")) == 2  # the batch already sent was applied whole
    assert services.catalog.get_checkpoint("svc") is None  # the next sync starts over


def test_index_writer_lock_is_one_for_the_shared_index_and_per_source_for_a_legacy_root(services, settings):
    """With a Qdrant server, processes applying batches hold the tantivy writer's lock: one lock for
    the shared index (whatever the source), one per source for an index in the pre-v3 layout."""
    from types import SimpleNamespace

    from workers.index_queue import IndexLocks

    settings.vector_backend = "qdrant"
    ctx = WorkerContext.from_services(services)
    shared = SimpleNamespace(fulltext=SimpleNamespace(per_source_writers=False))
    legacy = SimpleNamespace(fulltext=SimpleNamespace(per_source_writers=True))
    first, second = IndexLocks(ctx, shared), IndexLocks(ctx, shared)
    assert first.hold("alpha")
    assert not second.hold("beta")  # another source, the same writer: refused while `first` lives
    old_first, old_second = IndexLocks(ctx, legacy), IndexLocks(ctx, legacy)
    assert old_first.hold("alpha") and old_second.hold("beta")  # a writer per source
    assert not old_second.hold("alpha")


def test_a_batch_still_queued_when_its_source_is_removed_writes_nothing(ctx, services, make_repo):
    from workers.lifecycle import remove_source

    repo = repo_with(make_repo, {f"h{n}.py": module(n) for n in range(3)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, "svc", services.catalog.create_job(None, "svc", "index")) == "sent"
    run_embeds(ctx, dispatch)
    first, *late = dispatch.readies
    dispatch.readies = [first]
    apply_all(ctx, services, dispatch)
    assert services.catalog.chunk_ids_of_source("svc")
    remove_source(services, "svc")
    dispatch.readies = late  # delivered after the removal
    apply_all(ctx, services, dispatch)
    assert not services.catalog.chunk_ids_of_source("svc") and services.catalog.get_source("svc") is None
    assert not services.fulltext.ids("svc") and not services.vectors.ids("svc")
