"""Lexical batches prepared in worker processes (indexer/pipeline/prepare.py) while the sync writes the
batch before: the index must be exactly what preparing in-process gives, batches are applied in
order, checkpoints never run ahead of what was applied, a stop drops the batches read ahead, and a
worker that dies loses nothing."""
from __future__ import annotations

import functools
import logging
import os
import signal
import time

import pytest

from indexer.chunking import ChunkLimits
from indexer.models import Access, Document, Principal
from indexer.pipeline import prepare as lexical_prep
from indexer.pipeline.prepare import BatchPreparer, ChunkingOptions
from indexer.pipeline.reconcile import reconcile_source
from indexer.pipeline.sync import SyncRunner
from indexer.secrets.screen import SecretScreen
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.permissions import build_filter
from retrieval.query_analysis import analyse
from workers import jobs as jobs_module
from workers.jobs import JobStopped, new_job, run_sync_job

GITHUB_TOKEN = "ghp_" + "Zq8rT2vLm9XwB4kP7sN1cY6dH3jF5gA0eQ2u"  # a made-up token of the real format
OPERATOR = Principal("op", admin=True)
QUERIES = ["parse http response", "HttpResponse", "retry_count", "billing", "café", "handler", "token"]


def module_text(i: int) -> str:
    return (f'"""Module {i}: parseHttpResponse helpers."""\n\n\n'
            f"class HttpResponse{i}:\n    retry_count = {i}\n\n"
            f"    def parse_http_response(self, raw_bytes):\n        return raw_bytes.decode() + 'x{i}'\n\n\n"
            f"def handler_{i}(requestId, maxRetryCount={i}):\n    return requestId * maxRetryCount\n")


@pytest.fixture
def corpus(make_repo):
    repo = make_repo()
    for i in range(14):
        repo.write(f"pkg/mod{i}.py", module_text(i))
    repo.write("pkg/dup_a.py", module_text(99))
    repo.write("pkg/dup_b.py", module_text(99))  # same text twice: same chunk text, distinct ids
    repo.write("billing/config.py", f'GITHUB_TOKEN = "{GITHUB_TOKEN}"\nretry_count = 3\n')
    repo.write(".env", "DATABASE_PASSWORD=hunter2hunter2\n")  # a secret file: skipped
    repo.write("docs/guide.md", "# Café crème\n\nNaïve ünïcode_snake text about billing and retries.\n")
    repo.commit()
    return repo


def open_services(tmp_path, name: str, workers: int, embedder) -> IndexServices:
    return IndexServices.open(Settings(data_dir=tmp_path / name, index_workers=workers), embedder=embedder)


def sync(services: IndexServices, repo, source: str = "repo", batch_docs: int = 4, observe=None):
    services.catalog.upsert_source(source, "git", {"location": str(repo.root), "ref": ""}, ["public"])
    runner = SyncRunner(services.pipeline, batch_docs=batch_docs)
    preparers = []
    make = services.pipeline.preparer

    def preparer():
        preparers.append(make())
        return preparers[-1]
    services.pipeline.preparer = preparer
    connector = jobs_module.build_connector(services.catalog.get_source(source), services.settings)
    counts = runner.run(connector, observe=observe)
    return counts, preparers[0]


def snapshot(services: IndexServices, source: str = "repo") -> dict:
    """Everything the keyword phase wrote: catalog documents and chunk rows, tantivy ids and hits."""
    catalog = services.catalog
    versions = catalog.document_versions(source)
    owned = catalog.chunk_ids_for(sorted(versions))
    chunk_ids = {cid for ids in owned.values() for cid in ids}
    rows = catalog.get_chunks(chunk_ids)
    flt = build_filter(OPERATOR)
    return {
        "versions": versions,
        "chunk_ids": {doc: list(ids) for doc, ids in sorted(owned.items())},
        "documents": {doc: catalog.get_document(doc).content for doc in sorted(versions)},
        "chunks": sorted((c.doc_id, c.ordinal, c.start_line, c.end_line, c.content, c.header, c.symbol, c.kind,
                          c.language, c.acl, cid) for cid, c in rows.items()),
        "tantivy_ids": services.fulltext.ids(source),
        "hits": {q: sorted((h.chunk_id, round(h.score, 4)) for h in services.fulltext.search(analyse(q).lexical, flt, 50))
                 for q in QUERIES},
        "redactions": services.pipeline.redactions.files(source),
        "counts": catalog.counts(source),
    }


@pytest.fixture
def pool_for_every_batch(monkeypatch):
    """Even the small batches of a test repository go to the worker processes."""
    monkeypatch.setattr(lexical_prep, "MIN_POOL_BYTES", 0)


def kill_pool_workers() -> list[int]:
    pids = [p.pid for p in lexical_prep.pool_processes() if p.pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def test_workers_write_exactly_what_in_process_preparation_writes(tmp_path, corpus, embedder,
                                                                  pool_for_every_batch, caplog):
    here = open_services(tmp_path, "here", 0, embedder)
    pooled = open_services(tmp_path, "pooled", 2, embedder)
    try:
        counts_here, prep_here = sync(here, corpus)
        with caplog.at_level(logging.INFO):
            counts_pooled, prep_pooled = sync(pooled, corpus)
        assert prep_here.stats["pool"] == 0 and prep_here.stats["in_process"] > 0
        assert prep_pooled.stats["pool"] >= 5  # 19 files, 4 per batch (a share of the first kept here while workers start)
        assert prep_pooled.stats["redone"] == 0
        assert counts_pooled.as_dict() | {"seconds": 0} == counts_here.as_dict() | {"seconds": 0}
        expected = snapshot(here)
        assert expected["counts"]["documents"] == 18 and expected["redactions"]  # .env skipped, the token redacted
        assert all(expected["hits"].values()) and len(expected["tantivy_ids"]) == 18
        assert snapshot(pooled) == expected
    finally:
        here.close()
        pooled.close()
    # The redaction prepared in a worker is logged by this process, by rule and line, never the value.
    logged = [r for r in caplog.records if "redacted 1 secret(s) in repo:billing/config.py" in r.getMessage()]
    assert logged and all(r.process == os.getpid() for r in logged)
    assert "github-token line 1" in logged[0].getMessage()
    assert not [r for r in caplog.records if GITHUB_TOKEN in r.getMessage() or GITHUB_TOKEN[:12] in r.getMessage()]


def test_worker_log_records_are_logged_by_the_writer(caplog):
    """A chunking warning raised in a worker reaches this process's logging; secret findings travel
    as findings (the worker itself logs no redaction)."""
    chunking = ChunkingOptions(limits=ChunkLimits(parse_seconds=1e-9))  # every parse runs out of time
    preparer = BatchPreparer(SecretScreen(), chunking, workers=2, min_pool_bytes=0)
    docs = [Document(f"s:m{i}.py", "s", f"m{i}.py", module_text(i), "v1", Access.of("public"), language="python")
            for i in range(2)]
    docs.append(Document("s:leak.py", "s", "leak.py", f'TOKEN = "{GITHUB_TOKEN}"\n', "v1", Access.of("public"),
                         language="python"))
    with caplog.at_level(logging.INFO):
        prepared = preparer.result(preparer.submit(docs))
    assert preparer.stats["pool"] >= 1
    forwarded = [r for r in caplog.records if r.name == "indexer.chunking.symbols"]
    assert forwarded and "symbol chunking of m0.py (python) stopped" in forwarded[0].getMessage()
    assert forwarded[0].process != os.getpid()  # made in the worker, handled here
    assert [f.rule for f in prepared.screened.findings["s:leak.py"]] == ["github-token"]
    assert not [r for r in caplog.records if "redacted" in r.getMessage()]
    assert GITHUB_TOKEN not in prepared.screened.documents[-1].content


def test_a_killed_worker_loses_nothing_and_the_pool_is_made_again(pool_for_every_batch):
    docs = [Document(f"s:m{i}.py", "s", f"m{i}.py", module_text(i) * 40, "v1", Access.of("public"),
                     language="python") for i in range(60)]
    expected = BatchPreparer(SecretScreen(), ChunkingOptions(), workers=0).result(
        BatchPreparer(SecretScreen(), ChunkingOptions(), workers=0).submit(docs))
    preparer = BatchPreparer(SecretScreen(), ChunkingOptions(), workers=2)
    pending = preparer.submit(docs)
    killed = kill_pool_workers()  # while the batch is being prepared
    assert killed
    got = preparer.result(pending)
    assert preparer.stats["redone"] >= 1
    assert got.chunks == expected.chunks
    assert [c.id for cs in got.chunks.values() for c in cs] == [c.id for cs in expected.chunks.values() for c in cs]
    # The next batch gets a new pool (new processes) and is prepared there.
    again = preparer.result(preparer.submit(docs[:10]))
    assert preparer.stats["pool"] >= 1
    assert not set(killed) & {p.pid for p in lexical_prep.pool_processes()}
    assert again.chunks == {d.id: expected.chunks[d.id] for d in docs[:10]}


def test_a_worker_killed_during_a_sync_loses_nothing(tmp_path, corpus, embedder, pool_for_every_batch):
    here = open_services(tmp_path, "here", 0, embedder)
    pooled = open_services(tmp_path, "pooled", 2, embedder)
    killed: list[int] = []

    def kill_after_first_batch(phase, counts):
        if phase == "lexical" and not killed:
            killed.extend(kill_pool_workers())
    applied: list[str] = []
    apply_prepared = pooled.pipeline.apply_prepared

    def recording(prepared, rewrite=False):
        applied.extend(prepared.screened.skipped_ids + [d.id for d in prepared.screened.documents])
        return apply_prepared(prepared, rewrite)
    pooled.pipeline.apply_prepared = recording
    try:
        sync(here, corpus, batch_docs=2)
        _, preparer = sync(pooled, corpus, batch_docs=2, observe=kill_after_first_batch)
        assert killed and preparer.stats["redone"] >= 1
        # batches applied in the order they were read (git's path order), whoever prepared them
        in_batches = [applied[i:i + 2] for i in range(0, len(applied), 2)]
        assert [sorted(b) for b in in_batches] == in_batches and applied == sorted(applied)
        assert len(applied) == 19
        assert snapshot(pooled) == snapshot(here)
        assert reconcile_source(pooled.pipeline, "repo", repair=False).total == 0
    finally:
        here.close()
        pooled.close()


class Tickets:
    """A ticket source that can say how far it got (`partial_checkpoint`): the position of the last
    ticket it yielded; a sync resumes after it."""

    name = "tickets"

    def __init__(self, total: int) -> None:
        self.total = total
        self.pos = 0

    def sync(self, checkpoint, known):
        self.pos = (checkpoint or {}).get("pos", 0)
        while self.pos < self.total:
            i = self.pos
            self.pos += 1
            yield Document(f"tickets:T-{i}", "tickets", f"T-{i}", f"Ticket {i}: retry_count broken ({i})\n" * 3,
                           "1", Access.of("public"), kind="issue", title=f"Ticket {i}")

    def partial_checkpoint(self):
        return {"pos": self.pos}

    def next_checkpoint(self):
        return {"pos": self.pos}

    def list_ids(self):
        return {f"tickets:T-{i}" for i in range(self.total)}


class Crash(Exception):
    pass


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sync_killed_after_a_batch_resumes_without_losing_the_next(tmp_path, embedder, workers,
                                                                     pool_for_every_batch):
    services = open_services(tmp_path, "data", workers, embedder)
    try:
        services.catalog.upsert_source("tickets", "git", {"location": "unused"}, ["public"])
        runner = SyncRunner(services.pipeline, batch_docs=3)
        first = Tickets(15)
        read_at_crash = []

        def crash_after_second_batch(phase, counts):
            if phase == "lexical" and counts.files_changed == 6:
                read_at_crash.append(first.pos)
                raise Crash()
        with pytest.raises(Crash):
            runner.run(first, observe=crash_after_second_batch)
        assert read_at_crash[0] > 6  # the connector had read ahead of the batches applied...
        assert services.catalog.get_checkpoint("tickets") == {"pos": 6}  # ...the checkpoint did not
        assert services.catalog.counts("tickets")["documents"] == 6

        resumed = Tickets(15)
        counts = runner.run(resumed)
        assert counts.files_changed == 9  # tickets 6..14: nothing between the crash and the read-ahead lost
        assert sorted(services.catalog.document_versions("tickets")) == sorted(Tickets(15).list_ids())
        assert services.catalog.get_checkpoint("tickets") == {"pos": 15}
    finally:
        services.close()


def test_cancel_with_batches_in_flight_applies_whole_batches_only(tmp_path, corpus, embedder, monkeypatch,
                                                                 pool_for_every_batch):
    monkeypatch.setattr(jobs_module, "SyncRunner", functools.partial(SyncRunner, batch_docs=3))
    discarded = []
    real_discard = BatchPreparer.discard
    monkeypatch.setattr(BatchPreparer, "discard", staticmethod(lambda pending: (discarded.append(pending),
                                                                                 real_discard(pending))))
    services = open_services(tmp_path, "data", 2, embedder)
    try:
        services.catalog.upsert_source("repo", "git", {"location": str(corpus.root)}, ["public"])
        job_id = new_job(services, "repo")
        batches = []

        def observe(phase, counts):
            batches.append(phase)
            if len(batches) == 1:
                services.catalog.request_cancel(job_id)
        with pytest.raises(JobStopped):
            run_sync_job(services, "repo", job_id=job_id, observe=observe)
        assert batches == ["lexical"] and len(discarded) == 2  # two batches were read ahead, then dropped
        # exactly the first batch (.env, billing/config.py, docs/guide.md: the secret file skipped)
        assert services.catalog.get_job(job_id).counts["files_changed"] == 2
        assert sorted(services.catalog.document_versions("repo")) == ["repo:billing/config.py", "repo:docs/guide.md"]
        assert reconcile_source(services.pipeline, "repo", repair=False).total == 0
        counts = run_sync_job(services, "repo")
        assert counts.files_changed == 16 and services.catalog.counts("repo")["documents"] == 18
    finally:
        services.close()


def test_small_batches_stay_in_process(tmp_path, embedder):
    """Below MIN_POOL_BYTES a batch is not worth shipping: no pool is started for it."""
    preparer = BatchPreparer(SecretScreen(), ChunkingOptions(), workers=2)
    docs = [Document("s:a.py", "s", "a.py", module_text(1), "v1", Access.of("public"), language="python")]
    started = time.monotonic()
    prepared = preparer.result(preparer.submit(docs))
    assert preparer.stats == {"in_process": 1}
    assert [c.doc_id for c in prepared.chunks["s:a.py"]] and time.monotonic() - started < 5


def test_no_worker_processes_where_none_can_be_started(monkeypatch, pool_for_every_batch):
    """A daemonic process (a Celery prefork child) may not start processes; a pool that cannot be made
    at all: either way the batch is prepared in-process."""
    docs = [Document("s:a.py", "s", "a.py", module_text(1), "v1", Access.of("public"), language="python")]

    class Daemonic:
        daemon = True
    with monkeypatch.context() as m:
        m.setattr(lexical_prep.multiprocessing, "current_process", Daemonic)
        daemonic = BatchPreparer(SecretScreen(), ChunkingOptions(), workers=2)
    assert daemonic.workers == 0

    def no_processes(workers):
        raise AssertionError("daemonic processes are not allowed to have children")
    monkeypatch.setattr(lexical_prep, "_executor", no_processes)
    preparer = BatchPreparer(SecretScreen(), ChunkingOptions(), workers=2)
    for prep in (daemonic, preparer):
        prepared = prep.result(prep.submit(docs))
        assert prep.stats == {"in_process": 1} and prepared.chunks["s:a.py"]
    assert preparer.workers == 0
