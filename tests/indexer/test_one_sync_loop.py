"""One sync loop for both deployments: the same git repository, synced through the embedded path
(SyncRunner writing through a real Pipeline) and through the queue path (crawl → embed → index, each
message delivered at once in this process), gives the same counts, skips, failures and quarantine."""
from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import git_repos
from connectors.registry import build_connector
from indexer.chunking import ChunkLimits
from indexer.models import Access, Document, SkipReason
from indexer.pipeline.apply import Pipeline
from indexer.pipeline.sync import SyncRunner
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.batches import ReadyBatch, quarantine_document
from workers.context import WorkerContext
from workers.distributed import apply_ready_batch, crawl_source, embed_and_forward

BATCH = 3
LIMIT = 20_000  # the chunker's document limit, below the git connector's (settings.max_file_bytes)
TOKEN = "ghp_" + "Zq8rT2vLm9XwB4kP7sN1cY6dH3jF5gA0eQ2u"  # a made-up token of the real format
COMPARED = ("files_seen", "files_changed", "files_deleted", "files_skipped", "files_failed", "files_quarantined",
            "secret_files", "chunks_written", "chunks_deleted", "chunks_embedded")


def module(n: int) -> str:
    return f"def handler_{n}(event):\n    '''Handle event {n}.'''\n    return event.get('id') == {n}\n"


@dataclasses.dataclass
class InProcess:
    """A Dispatch that delivers every message at once: embed, then apply on the index side."""

    ctx: WorkerContext
    pipeline: Pipeline

    def embed(self, job_id, batch, source, documents, rewrite, tries=0, countdown=0.0):
        embed_and_forward(self.ctx, self, job_id, batch, source, documents, rewrite, tries, worker="w1@test")

    def index(self, ready):
        apply_ready_batch(self.ctx, self.pipeline, ReadyBatch.from_json(ready))


@pytest.fixture
def repo(make_repo) -> Any:
    repo = make_repo()
    for n, name in enumerate(("a", "b", "c", "gone")):
        repo.write(f"pkg/{name}.py", module(n))
    repo.write("docs/guide.md", "# Guide\n\nHow events are handled.\n")
    repo.write("pkg/config.py", f'GITHUB_TOKEN = "{TOKEN}"\nretries = 3\n')  # indexed, the token redacted
    repo.write(".env", "DATABASE_PASSWORD=hunter2hunter2\n")  # a secret file: skipped
    repo.write("data/big.txt", "x = 1\n" * 5_000)  # over the chunker's limit: the loop skips it
    repo.write("data/huge.txt", "x = 1\n" * 200_000)  # over max_file_bytes: the connector skips it
    repo.write("pkg/unreadable.py", "UNREADABLE = True\n")  # reading it fails: a SyncFailure
    repo.write("pkg/poison.py", "POISON = True\n")  # its version is quarantined
    repo.commit()
    return repo


@pytest.fixture(autouse=True)
def unreadable_blob(monkeypatch):
    real = git_repos.decode_text

    def decode(data: bytes) -> str:
        if b"UNREADABLE" in data:
            raise OSError("disk said no")
        return real(data)
    monkeypatch.setattr(git_repos, "decode_text", decode)


def open_services(tmp_path, name: str, embedder, repo: Any) -> Iterator[IndexServices]:
    settings = Settings(data_dir=tmp_path / name, index_workers=0, queue_batch_docs=BATCH, quarantine_after=3)
    services = IndexServices.open(settings, embedder=embedder)
    services.pipeline.chunking = dataclasses.replace(services.pipeline.chunking,
                                                     limits=ChunkLimits(max_document_bytes=LIMIT))
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    quarantine(WorkerContext.from_services(services), repo, "pkg/poison.py")
    try:
        yield services
    finally:
        services.close()


def quarantine(ctx: WorkerContext, repo: Any, path: str) -> None:
    """What the embed queue does to a document version that kept killing its workers."""
    version = subprocess.run(["git", "-C", str(repo.root), "rev-parse", f"HEAD:{path}"], capture_output=True,
                             text=True, check=True).stdout.strip()  # the blob: what the connector calls its version
    doc = Document(f"svc:{path}", "svc", path, "", version, Access.of("public"))
    ctx.state.count_attempt([doc])
    quarantine_document(ctx, doc, 3, "ValueError: parser exploded")


@pytest.fixture
def embedded(tmp_path, embedder, repo):
    yield from open_services(tmp_path, "embedded", embedder, repo)


@pytest.fixture
def queued(tmp_path, embedder, repo):
    yield from open_services(tmp_path, "queued", embedder, repo)


def embedded_sync(services: IndexServices) -> dict:
    connector = build_connector(services.catalog.get_source("svc"), services.settings)
    counts = SyncRunner(services.pipeline, batch_docs=BATCH).run(connector).as_dict()
    return {key: counts[key] for key in COMPARED}


def queued_sync(services: IndexServices) -> dict:
    ctx = WorkerContext.from_services(services)
    job = services.catalog.create_job(None, "svc", "index")
    assert crawl_source(ctx, InProcess(ctx, services.pipeline), "svc", job) == "sent"
    record = services.catalog.get_job(job)
    assert record.state == "partial" and "pkg/unreadable.py" in record.error  # the unreadable file
    return {key: record.counts[key] for key in COMPARED}


def outcome(services: IndexServices) -> dict:
    """What an admin sees of the source besides the counts."""
    catalog = services.catalog
    return {"documents": sorted(catalog.document_versions("svc")),
            "skipped": sorted((s.path, SkipReason(s.reason)) for s in catalog.list_skipped("svc")),
            "failures": sorted((f.item, f.error) for f in catalog.list_failures("svc")),
            "redacted": TOKEN not in catalog.get_document("svc:pkg/config.py").content}


def test_the_embedded_and_the_queue_path_sync_alike(embedded, queued, repo):
    first = embedded_sync(embedded)
    assert queued_sync(queued) == first
    # a document over the size limit is also removed in case an older version was indexed: that removal
    # counts only when there was one
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        "files_seen": 11, "files_changed": 6, "files_deleted": 0, "files_skipped": 4, "files_failed": 1, "files_quarantined": 1,
        "secret_files": 1, "chunks_written": 6, "chunks_deleted": 0, "chunks_embedded": 6}
    seen = outcome(embedded)
    assert outcome(queued) == seen
    assert seen["documents"] == [f"svc:{p}" for p in ("docs/guide.md", "pkg/a.py", "pkg/b.py", "pkg/c.py",
                                                        "pkg/config.py", "pkg/gone.py")]
    assert seen["skipped"] == [(".env", SkipReason.SECRET_FILE), ("data/big.txt", SkipReason.TOO_LARGE),
                               ("data/huge.txt", SkipReason.TOO_LARGE)]
    assert seen["failures"] == [("pkg/poison.py", "quarantined after 3 attempts: ValueError: parser exploded"),
                                ("pkg/unreadable.py", "OSError: disk said no")]
    assert seen["redacted"]

    repo.remove("pkg/gone.py")
    repo.commit("drop gone.py")
    second = embedded_sync(embedded)
    assert queued_sync(queued) == second
    # what is unchanged is not read again; what was skipped, failed or quarantined is met again
    assert (second["files_seen"], second["files_changed"], second["files_deleted"], second["files_skipped"],
            second["files_failed"], second["files_quarantined"], second["chunks_deleted"]) == (5, 0, 1, 4, 1, 1, 1)
    seen = outcome(embedded)
    assert outcome(queued) == seen
    assert "svc:pkg/gone.py" not in seen["documents"] and len(seen["failures"]) == 2  # the quarantine stays

    repo.write("pkg/poison.py", "POISON = False  # fixed\n")
    repo.commit("fix poison.py")
    third = embedded_sync(embedded)
    assert queued_sync(queued) == third
    assert (third["files_changed"], third["files_quarantined"]) == (1, 0)  # a new version is indexed again
    seen = outcome(embedded)
    assert outcome(queued) == seen
    assert "svc:pkg/poison.py" in seen["documents"]
    assert seen["failures"] == [("pkg/unreadable.py", "OSError: disk said no")]
