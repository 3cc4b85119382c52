"""A distributed crawl killed part-way and run again by its redelivered task: the job's counts carry what
the first attempt read and the second does not read again, count nothing twice, and show from the start."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from fake_jira import FakeJira
from test_queue_path import InlineDispatch, apply_all, module, repo_with, run_embeds

from connectors.config import parse_source
from workers.context import WorkerContext
from workers.distributed import crawl_source
from workers.queue_state import QueueState


class Killed(BaseException):
    """The crawl's process dies (kill -9): nothing after it runs, no failure is recorded."""


class DyingDispatch(InlineDispatch):
    """Sends `survive` embed batches, then the crawl's process dies while sending the next."""

    def __init__(self, survive: int) -> None:
        super().__init__()
        self.survive = survive

    def embed(self, job_id, batch, source, documents, rewrite, tries=0, countdown=0.0):
        if self.survive <= 0:
            raise Killed()
        self.survive -= 1
        super().embed(job_id, batch, source, documents, rewrite, tries, countdown)


@pytest.fixture
def ctx(services, settings):
    settings.queue_batch_docs = 2
    return WorkerContext.from_services(services)


def apply_first(ctx, services, dispatch, batches: int) -> None:
    """Embed every batch sent; apply only the first `batches` of them (the rest wait in the index queue)."""
    run_embeds(ctx, dispatch)
    waiting = dispatch.readies[batches:]
    dispatch.readies = dispatch.readies[:batches]
    apply_all(ctx, services, dispatch)
    dispatch.readies = waiting


def test_a_restarted_git_crawl_counts_every_file_once(ctx, services, make_repo):
    repo = repo_with(make_repo, {f"h{n}.py": module(n) for n in range(9)})
    services.catalog.upsert_source("svc", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    job = services.catalog.create_job(None, "svc", "index")
    dying = DyingDispatch(survive=3)
    with pytest.raises(Killed):
        crawl_source(ctx, dying, "svc", job)
    shown = services.catalog.get_job(job)
    assert shown.state == "running" and shown.counts["phase"] == "crawling"
    assert shown.counts["files_seen"] == 6 and shown.counts["batches_sent"] == 3  # shown before any is applied
    assert shown.counts["items_per_second"] is not None and shown.counts["eta_seconds"] is None
    apply_first(ctx, services, dying, batches=1)  # 2 files written; 4 sent and still queued; 3 never sent
    dispatch = InlineDispatch()
    assert crawl_source(ctx, dispatch, "svc", job) == "sent"  # the redelivered task: attempt 2
    crawl = QueueState(services.catalog.engine).crawl(job)
    assert crawl.attempt == 2 and crawl.counts["base"] == {"files_seen": 2}
    assert len(dispatch.embeds) == 4  # the 7 files not written yet, read again (2 of them were queued)
    during = services.catalog.get_job(job).counts
    assert during["files_seen"] == 9 and during["files_changed"] == 2 and during["phase"] == "applying"
    dispatch.embeds += dying.embeds
    run_embeds(ctx, dispatch)
    apply_all(ctx, services, dispatch)
    apply_all(ctx, services, dying)
    done = services.catalog.get_job(job)
    assert done.state == "succeeded", done.error
    assert done.counts["files_seen"] == done.counts["files_changed"] == 9  # 2 queued files sent twice, counted once
    assert done.done == done.total and done.counts["phase"] == "done"
    assert set(services.catalog.document_versions("svc")) == {f"svc:h{n}.py" for n in range(9)}


def test_a_restarted_jira_crawl_resumes_after_its_checkpoint_and_carries_its_counts(ctx, services, monkeypatch):
    fake = FakeJira(cloud=True)
    fake.server.start()
    try:
        for n in range(7):
            fake.add_issue(f"SHOP-{n + 1}", f"Checkout problem {n}", f"Step {n}: pay with card {n}.")
        monkeypatch.setenv("FAKE_JIRA_TOKEN", fake.token)
        config = parse_source({"name": "tickets", "kind": "jira", "deployment": "cloud", "projects": ["SHOP"],
                               "token_env": "FAKE_JIRA_TOKEN", "username": "bot@example.com",
                               "access": {"SHOP": ["group:shop"]}, "url": fake.server.url,
                               "retry_backoff_seconds": 0.05, "timeout_seconds": 5.0})
        services.catalog.upsert_source(config.name, config.kind, config.catalog_config(), config.default_access)
        job = services.catalog.create_job(None, "tickets", "index")
        dying = DyingDispatch(survive=2)
        with pytest.raises(Killed):
            crawl_source(ctx, dying, "tickets", job)
        state = QueueState(services.catalog.engine)
        assert state.crawl(job).stored is None  # 2 batches sent, none applied: no checkpoint stored yet
        assert services.catalog.get_checkpoint("tickets") is None
        apply_first(ctx, services, dying, batches=2)  # the index owner applied what was sent meanwhile
        assert state.crawl(job).stored["resume"]["files_seen"] == 4  # stored once both batches were applied
        dispatch = InlineDispatch()
        assert crawl_source(ctx, dispatch, "tickets", job) == "sent"
        # it resumed at the checkpoint (re-reading the cursor's overlap, whose issues are indexed already)
        assert sum(len(e[3]) for e in dispatch.embeds) == 3
        assert QueueState(services.catalog.engine).crawl(job).counts["base"]["files_seen"] == 4
        run_embeds(ctx, dispatch)
        apply_all(ctx, services, dispatch)
        done = services.catalog.get_job(job)
        assert done.state == "succeeded", done.error
        assert done.counts["files_seen"] == done.counts["files_changed"] == 7
        assert len(services.catalog.document_versions("tickets")) == 7
    finally:
        fake.server.stop()
