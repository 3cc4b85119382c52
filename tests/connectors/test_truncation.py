"""Answers cut short (a body shorter than its Content-Length, a chunked body without its last chunk: what
requests raises as ChunkedEncodingError from urllib3's IncompleteRead) from the fake Jira and Confluence:
retried with the budget and backoff of a dropped or timed-out connection, so a listing is not lost to one
bad answer; and when the truncation persists, the job ends `partial` naming it, never `succeeded`."""
from __future__ import annotations

import pytest
from harness import FAST, indexed, register, sync
from test_confluence import seed, wiki_source
from test_honest_states import JIRA, last_job

from connectors.http_policy import PolicySession

CUTS = ("length", "chunked")


@pytest.fixture
def jira(jira_server, monkeypatch):
    monkeypatch.setenv("FAKE_JIRA_TOKEN", jira_server.token)
    for n in range(1, 7):
        jira_server.add_issue(f"SHOP-{n}", f"Checkout problem {n}", f"Step {n}: pay with card {n}.")
    for n in range(4):  # more comments than a search returns: SHOP-1's are paged in (/issue/SHOP-1/comment)
        jira_server.comment("SHOP-1", f"Comment {n}: the gateway answered in {30 + n}s")
    return jira_server


@pytest.fixture
def wiki(confluence_server, monkeypatch):
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", confluence_server.token)
    return seed(confluence_server)


@pytest.fixture
def retries(monkeypatch):
    """Every retry the connectors' HTTP sessions make: (why, attempt, delay), as the policy notes them."""
    noted: list[tuple[str, int, float]] = []
    note = PolicySession._note

    def spy(self, verb, url, why, attempt, delay):
        noted.append((why, attempt, delay))
        note(self, verb, url, why, attempt, delay)

    monkeypatch.setattr(PolicySession, "_note", spy)
    return noted


def within_backoff(noted) -> bool:
    """Each wait is the policy's full-jitter backoff for its attempt (base doubled per attempt)."""
    return all(0 <= delay <= FAST["retry_backoff_seconds"] * 2 ** (attempt - 1) for _, attempt, delay in noted)


@pytest.mark.parametrize("cut", CUTS)
def test_a_jira_search_cut_short_is_retried_and_nothing_is_lost(services, jira, retries, cut):
    register(services, {**JIRA, "url": jira.server.url})
    jira.server.fail(r"/search", truncate=cut, times=2)
    sync(services, "tickets")
    assert last_job(services, "tickets").state == "succeeded"
    assert len(indexed(services, "tickets")) == 6 and not any(f.times for f in jira.server.faults)
    assert [(why, attempt) for why, attempt, _ in retries] == [("ChunkedEncodingError", 1), ("ChunkedEncodingError", 2)]
    assert within_backoff(retries)


@pytest.mark.parametrize("cut", CUTS)
def test_a_confluence_listing_cut_short_is_retried_and_nothing_is_lost(services, wiki, retries, cut):
    register(services, wiki_source(wiki))
    wiki.server.fail(r"/content/search$", truncate=cut, times=2)
    wiki.server.fail(r"/space/ENG$", truncate=cut)
    sync(services, "wiki")
    assert last_job(services, "wiki").state == "succeeded"
    assert len(indexed(services, "wiki")) == 6 and not any(f.times for f in wiki.server.faults)
    assert [why for why, _, _ in retries] == ["ChunkedEncodingError"] * 3 and within_backoff(retries)


def test_a_jira_issue_always_cut_short_fails_it_after_the_budget_of_a_timeout(services, jira, retries):
    """The same number of attempts, with the same waits, as an answer that never comes in time."""
    register(services, {**JIRA, "url": jira.server.url})
    attempts = {}
    for fault, options in (("truncated", {"truncate": "chunked"}), ("timeout", {"delay": FAST["timeout_seconds"] * 1.5})):
        jira.server.faults.clear()
        jira.server.clear_log()
        retries.clear()
        jira.server.fail(r"/issue/SHOP-1/comment$", times=10_000, **options)
        sync(services, "tickets", full=True)
        job = last_job(services, "tickets")
        assert job.state == "partial", (fault, job.state, job.error)
        assert job.counts["items_failed"] == 1 and "SHOP-1" in job.error and job.counts["listings_failed"] == 0
        attempts[fault] = (len(jira.server.requests(r"/issue/SHOP-1/comment$")), [a for _, a, _ in retries])
        assert within_backoff(retries)
        assert "ChunkedEncodingError" in job.error if fault == "truncated" else "ChunkedEncodingError" not in job.error
    assert attempts["truncated"] == attempts["timeout"] == (FAST["max_attempts"], [1, 2, 3, 4])
    assert "tickets:SHOP-1" not in indexed(services, "tickets") and len(indexed(services, "tickets")) == 5


def test_a_confluence_space_always_cut_short_makes_the_job_partial_with_the_reason(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    wiki.server.fail(r"/space/PUB$", truncate="length", times=10_000)
    sync(services, "wiki")
    job = last_job(services, "wiki")
    assert job.state == "partial" and job.counts["listings_failed"] == 1
    assert job.counts["first_errors"][0].startswith("PUB/") and "ChunkedEncodingError" in job.error
    assert len(wiki.server.requests(r"/space/PUB$")) == FAST["max_attempts"]
    source = services.catalog.get_source("wiki")
    assert source.state == "degraded" and "PUB/" in source.last_error and source.last_success_at is None
    assert {d.split("/")[0] for d in indexed(services, "wiki")} == {"wiki:ENG"}  # the other space is indexed
