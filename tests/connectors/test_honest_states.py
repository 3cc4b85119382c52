"""Jobs say how a sync really went, under injected faults against the fake Jira and Confluence: every
listing failing → `failed` (nothing read); some listings or items failing → `partial` with counts and
the first errors; the source `degraded` (or `error`) with the reason and its last success left where it
was; the same through the queue path (distributed finish) and in the `cairn_jobs` metric."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from harness import register, sync
from test_confluence import seed, wiki_source

from api.observability import CatalogCollector, JobsCollector
from workers.context import WorkerContext
from workers.distributed import crawl_source, embed_and_forward
from workers.index_queue import apply_or_retry
from workers.jobs import run_sync_job
from workers.outcome import SyncFailed

JIRA = {"name": "tickets", "kind": "jira", "deployment": "cloud", "username": "bot@example.com",
        "projects": ["SHOP"], "token_env": "FAKE_JIRA_TOKEN", "access": {"SHOP": ["group:shop"]}}


@pytest.fixture
def jira(jira_server, monkeypatch):
    monkeypatch.setenv("FAKE_JIRA_TOKEN", jira_server.token)
    for n in range(1, 7):
        jira_server.add_issue(f"SHOP-{n}", f"Checkout problem {n}", f"Step {n}: pay with card {n}.")
    return jira_server


@pytest.fixture
def wiki(confluence_server, monkeypatch):
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", confluence_server.token)
    return seed(confluence_server)


def last_job(services, source):
    return services.catalog.list_jobs(source=source, limit=1)[0]


def metric(collector, name: str) -> dict:
    return {tuple(s.labels.values()): s.value for family in collector.collect() if family.name == name
            for s in family.samples}


def test_every_jira_search_answering_500_fails_the_job_and_never_moves_last_success(services, jira):
    register(services, {**JIRA, "url": jira.server.url})
    sync(services, "tickets")
    before = services.catalog.get_source("tickets")
    assert before.state == "idle" and len(services.catalog.document_versions("tickets")) == 6
    jira.server.fail(r"/search", 500, times=10_000)
    jira.add_issue("SHOP-7", "A new problem", "Not listed: every search fails.")
    with pytest.raises(SyncFailed, match="1 listing"):
        run_sync_job(services, "tickets")
    job = last_job(services, "tickets")
    assert job.state == "failed" and "SHOP/" in job.error and "500" in job.error
    assert job.counts["listings_failed"] == 1 and job.counts["first_errors"][0].startswith("SHOP/")
    after = services.catalog.get_source("tickets")
    assert after.state == "error" and "SHOP/" in after.last_error
    assert after.last_success_at == before.last_success_at
    assert "tickets:SHOP-7" not in services.catalog.document_versions("tickets")
    app = SimpleNamespace(state=SimpleNamespace(services=services, settings=services.settings))
    assert metric(JobsCollector(app), "cairn_jobs")[("failed",)] == 1
    jira.server.faults.clear()  # the next sync recovers: succeeded, idle, last success moves
    sync(services, "tickets")
    recovered = services.catalog.get_source("tickets")
    assert last_job(services, "tickets").state == "succeeded" and recovered.state == "idle"
    assert recovered.last_success_at > before.last_success_at and recovered.last_error == ""


def test_mixed_confluence_faults_end_partial_with_counts_and_first_errors(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    wiki.server.fail(r"/space/PUB$", 500, times=10_000)  # a whole space cannot be listed
    wiki.server.fail(r"/group/sre/member$", 500, times=10_000)  # one group: its pages admin-only
    counts = sync(services, "wiki")
    job = last_job(services, "wiki")
    assert job.state == "partial", (job.error, counts)
    assert job.counts["listings_failed"] == 1 and job.counts["items_failed"] >= 1
    assert job.counts["items_failed"] + job.counts["listings_failed"] == counts.files_failed
    assert "PUB/" in job.error and job.counts["first_errors"][0].startswith("PUB/")
    source = services.catalog.get_source("wiki")
    assert source.state == "degraded" and "PUB/" in source.last_error and source.last_success_at is None
    app = SimpleNamespace(state=SimpleNamespace(services=services, settings=services.settings))
    assert metric(JobsCollector(app), "cairn_jobs")[("partial",)] == 1
    assert metric(CatalogCollector(app), "cairn_sources_degraded")[()] == 1


def test_a_clean_sync_succeeds(services, wiki):
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    job = last_job(services, "wiki")
    assert job.state == "succeeded" and not job.error and job.counts["listings_failed"] == 0
    assert services.catalog.get_source("wiki").state == "idle"


@dataclass
class InlineDispatch:
    embeds: list[tuple] = field(default_factory=list)
    readies: list[dict] = field(default_factory=list)

    def embed(self, job_id, batch, source, documents, rewrite, tries=0, countdown=0.0):
        self.embeds.append((job_id, batch, source, documents, rewrite, tries))

    def index(self, ready):
        self.readies.append(ready)


def queue_sync(services, source: str) -> str:
    """One sync through the distributed path (crawl → embed → apply → finish), messages kept in lists."""
    ctx = WorkerContext.from_services(services)
    job = services.catalog.create_job(None, source, "index")
    dispatch = InlineDispatch()
    crawl_source(ctx, dispatch, source, job)
    while dispatch.embeds or dispatch.readies:
        while dispatch.embeds:
            job_id, batch, src, documents, rewrite, tries = dispatch.embeds.pop(0)
            embed_and_forward(ctx, dispatch, job_id, batch, src, documents, rewrite, tries, worker="w@test")
        while dispatch.readies:
            apply_or_retry(ctx, services.pipeline, dispatch.readies.pop(0), lambda p, d: dispatch.index(p))
    return job


def test_the_queue_path_reports_the_same_states(services, wiki, jira):
    register(services, wiki_source(wiki))
    wiki.server.fail(r"/group/sre/member$", 500, times=10_000)
    job = services.catalog.get_job(queue_sync(services, "wiki"))
    assert job.state == "partial" and job.counts["items_failed"] >= 1 and job.error
    degraded = services.catalog.get_source("wiki")
    # every space was listed (one group's members failed: its pages admin-only): the last success moves
    assert degraded.state == "degraded" and "group:sre" in degraded.last_error and degraded.last_success_at
    register(services, {**JIRA, "url": jira.server.url})
    jira.server.fail(r"/search", 500, times=10_000)
    job = services.catalog.get_job(queue_sync(services, "tickets"))
    assert job.state == "failed" and "SHOP/" in job.error and job.counts["listings_failed"] == 1
    source = services.catalog.get_source("tickets")
    assert source.state == "error" and source.last_success_at is None
    jira.server.faults.clear()
    assert services.catalog.get_job(queue_sync(services, "tickets")).state == "succeeded"
    assert services.catalog.get_source("tickets").state == "idle"
