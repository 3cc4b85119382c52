"""Permissions passes on a real pipeline (tantivy + Qdrant Edge + SQLite): ACL changes and deletions
applied without content or embedding, failures recorded, and fail-closed serving once access is stale."""
from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from ledger_source import FORECAST, HANDBOOK, ROADMAP, Item, LedgerConnector, Server
from sqlalchemy import update

from api.app import create_app
from api.tokens import TokenStore
from connectors.base import Unavailable
from connectors.registry import CONNECTORS
from indexer.catalog.schema import sources
from indexer.models import Access, Principal
from indexer.pipeline import freshness, run_permission_pass, stale_sources
from indexer.stores import LexicalQuery
from retrieval.permissions import Scope, StaleSources, build_filter
from retrieval.searcher import build_searcher
from workers.jobs import run_permission_job, run_sync_job

ALICE = Principal("alice", frozenset({"eng"}))
LEAD = Principal("lee", frozenset({"leads"}))
ADMIN = Principal("root", admin=True)



@pytest.fixture
def server(monkeypatch) -> Server:
    ledger = Server(items={"FIN-1": Item(FORECAST, Access.of("group:eng", "group:leads")),
                           "HR-2": Item(HANDBOOK, Access.of("public")),
                           "ENG-3": Item(ROADMAP, Access.of("group:eng"))})
    monkeypatch.setitem(CONNECTORS, "ledger", lambda row, settings: LedgerConnector(row.name, ledger))
    return ledger


@pytest.fixture
def ledger(services, server):
    services.catalog.upsert_source("ledger", "ledger", {"location": "https://ledger.example"}, [])
    run_sync_job(services, "ledger")
    assert server.content_reads == 3
    return services


def lexical_docs(services, words: str, who: Principal, stale: frozenset[str] = frozenset()) -> set[str]:
    query = LexicalQuery(terms=tuple((w, 1.0) for w in words.lower().split()))
    hits = services.fulltext.search(query, build_filter(who, Scope(), stale), 50)
    return {r.doc_id for r in services.catalog.get_chunks([h.chunk_id for h in hits]).values()}


def dense_docs(services, text: str, who: Principal, stale: frozenset[str] = frozenset()) -> set[str]:
    hits = services.vectors.search(services.embedder.embed_query(text), build_filter(who, Scope(), stale), 50)
    return {r.doc_id for r in services.catalog.get_chunks([h.chunk_id for h in hits]).values()}


def searched(services, text: str, who: Principal) -> set[str]:
    searcher = build_searcher(services)
    try:
        return {h.doc_id for h in searcher.search(text, who, limit=20).hits}
    finally:
        searcher.close()


def test_a_tightened_access_leaves_the_old_readers_on_both_engines_without_embedding(ledger, server):
    assert "ledger:FIN-1" in lexical_docs(ledger, "revenue forecast nimbus", ALICE)
    assert "ledger:FIN-1" in dense_docs(ledger, FORECAST, ALICE)
    server.items["FIN-1"].access = Access.of("group:leads")  # no version change: a restriction added

    counts = run_permission_pass(ledger.pipeline, LedgerConnector("ledger", server))

    assert (counts.checked, counts.changed, counts.deleted, counts.failed) == (3, 1, 0, 0)
    assert counts.chunks_embedded == 0 and counts.chunks_written > 0 and server.content_reads == 3
    assert "ledger:FIN-1" not in lexical_docs(ledger, "revenue forecast nimbus", ALICE)
    assert "ledger:FIN-1" not in dense_docs(ledger, FORECAST, ALICE)
    assert "ledger:FIN-1" in lexical_docs(ledger, "revenue forecast nimbus", LEAD)
    assert "ledger:FIN-1" in dense_docs(ledger, FORECAST, LEAD)
    assert ledger.catalog.document_acl("ledger:FIN-1") == ("group:leads", "role:admin")
    assert ledger.fulltext.ids("ledger") == set(ledger.catalog.chunk_ids_of_source("ledger")) == ledger.vectors.ids("ledger")
    again = run_permission_pass(ledger.pipeline, LedgerConnector("ledger", server))
    assert (again.changed, again.chunks_written) == (0, 0)  # nothing differs any more: nothing rewritten


def test_a_deletion_leaves_both_stores_and_the_catalog(ledger, server):
    before = set(ledger.catalog.chunk_ids_for(["ledger:ENG-3"])["ledger:ENG-3"])
    del server.items["ENG-3"]

    counts = run_permission_pass(ledger.pipeline, LedgerConnector("ledger", server))

    assert (counts.deleted, counts.changed, counts.chunks_embedded) == (1, 0, 0)
    assert ledger.catalog.get_document("ledger:ENG-3") is None
    assert not before & ledger.fulltext.ids("ledger") and not before & ledger.vectors.ids("ledger")
    assert "ledger:ENG-3" not in lexical_docs(ledger, "ledger event sourcing roadmap", ADMIN)


def test_an_unreadable_item_makes_the_job_partial_and_is_recorded(ledger, server):
    server.unreadable.add("ENG-3")
    server.items["FIN-1"].access = Access.of("group:leads")
    job_id = ledger.catalog.create_job(None, "ledger", "permissions")

    counts = run_permission_job(ledger.pipeline, ledger.settings, "ledger", job_id)

    job = ledger.catalog.get_job(job_id)
    assert job.state == "partial" and "1 item(s)" in job.error and job.finished_at is not None
    assert (counts.changed, counts.failed) == (1, 1) and job.counts["failed"] == 1
    assert [(f.item, f.error) for f in ledger.catalog.list_failures("ledger")] == [
        ("ledger:ENG-3", "403 reading the restrictions")]
    record = ledger.catalog.permission_syncs()["ledger"]
    assert record.last_success_at is None and "could not be read" in record.last_error
    assert "ledger:ENG-3" in lexical_docs(ledger, "ledger event sourcing roadmap", ALICE)  # keeps its access


def test_a_successful_pass_is_recorded_and_freshens_the_source(ledger, server):
    job_id = ledger.catalog.create_job(None, "ledger", "permissions")
    run_permission_job(ledger.pipeline, ledger.settings, "ledger", job_id)
    assert ledger.catalog.get_job(job_id).state == "succeeded"
    fresh = freshness(ledger.catalog, 3600)["ledger"]
    assert fresh.tracked and not fresh.stale and fresh.last_pass_at is not None and fresh.error == ""


def age_last_sync(services, source: str, hours: float) -> None:
    with services.catalog.engine.begin() as conn:
        conn.execute(update(sources).where(sources.c.name == source).values(
            last_success_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)))


def test_a_failing_pass_fails_the_job_and_once_stale_hides_restricted_documents(ledger, server, make_repo):
    repo = make_repo("code")
    repo.write("notes.py", "def ledger_roadmap_notes():\n    return 'event sourcing roadmap'\n")
    repo.commit()
    ledger.catalog.upsert_source("code", "git", {"location": str(repo.root)}, ["group:eng"])
    run_sync_job(ledger, "code")
    server.down = True
    job_id = ledger.catalog.create_job(None, "ledger", "permissions")

    with pytest.raises(Unavailable):
        run_permission_job(ledger.pipeline, ledger.settings, "ledger", job_id)

    job = ledger.catalog.get_job(job_id)
    assert job.state == "failed" and "503" in job.error
    assert "503" in ledger.catalog.permission_syncs()["ledger"].last_error
    assert stale_sources(ledger.catalog, 3600) == frozenset()  # the sync an instant ago still vouches
    age_last_sync(ledger, "ledger", hours=2)
    age_last_sync(ledger, "code", hours=2)  # git: access from its settings, never stale
    stale = stale_sources(ledger.catalog, 3600)
    assert stale == {"ledger"}

    for who in (ALICE, ADMIN):
        assert lexical_docs(ledger, "ledger event sourcing roadmap", who, stale) & {"ledger:ENG-3"} == set()
        assert dense_docs(ledger, ROADMAP, who, stale) & {"ledger:ENG-3", "ledger:FIN-1"} == set()
        assert "ledger:HR-2" in lexical_docs(ledger, "onboarding handbook laptops", who, stale)
        assert "ledger:HR-2" in dense_docs(ledger, HANDBOOK, who, stale)
        assert "code:notes.py" in lexical_docs(ledger, "ledger event sourcing roadmap", who, stale)
    assert "ledger:ENG-3" not in searched(ledger, "ledger event sourcing roadmap", ALICE)
    assert "ledger:HR-2" in searched(ledger, "onboarding handbook laptops", ALICE)

    server.down = False  # the source answers again: one pass and the documents are served again
    run_permission_job(ledger.pipeline, ledger.settings, "ledger")
    assert stale_sources(ledger.catalog, 3600) == frozenset()
    assert "ledger:ENG-3" in searched(ledger, "ledger event sourcing roadmap", ALICE)


def test_the_stale_set_is_cached_briefly_and_read_again_after_its_ttl(ledger):
    clock = [0.0]
    cache = StaleSources(ledger.catalog, 3600, ttl=5.0, clock=lambda: clock[0])
    assert cache.current() == frozenset()
    age_last_sync(ledger, "ledger", hours=2)
    clock[0] = 4.0
    assert cache.current() == frozenset()  # within the ttl
    clock[0] = 5.0
    assert cache.current() == {"ledger"}


def test_the_routes_fail_closed_on_a_stale_source_and_admins_see_why(ledger, server):
    server.down = True
    with pytest.raises(Unavailable):
        run_permission_job(ledger.pipeline, ledger.settings, "ledger")
    age_last_sync(ledger, "ledger", hours=2)
    tokens = TokenStore(ledger.catalog.engine)
    alice = {"Authorization": f"Bearer {tokens.create('alice', ['eng'])[0]}"}
    root = {"Authorization": f"Bearer {tokens.create('root', [], admin=True)[0]}"}
    with TestClient(create_app(ledger.settings, services=ledger)) as client:
        assert client.get("/v1/documents/ledger:ENG-3", headers=alice).status_code == 404
        assert client.get("/v1/documents/ledger:ENG-3", headers=root).status_code == 404
        assert client.get("/v1/documents/ledger:HR-2", headers=alice).status_code == 200
        hits = client.post("/v1/search", json={"query": "ledger event sourcing roadmap"}, headers=alice).json()["hits"]
        assert "ledger:ENG-3" not in {h["document_id"] for h in hits}
        listed = {s["name"]: s for s in client.get("/v1/sources", headers=root).json()}
        perms = listed["ledger"]["permissions"]
        assert perms["stale"] is True and "503" in perms["error"] and perms["last_success_at"] is None
        assert perms["age_seconds"] >= 7200 - 5
        state = client.get("/ui/admin/state", headers=root).json()
        assert [s["permissions"]["stale"] for s in state["sources"] if s["name"] == "ledger"] == [True]
        metrics = client.get("/metrics", headers=root).text
        assert 'cairn_permission_sync_age_seconds{source="ledger"}' in metrics
        assert 'cairn_permission_stale{source="ledger"} 1.0' in metrics
        seen = client.get("/metrics", headers=alice)  # totals for every token; source names for admins only
        assert seen.status_code == 200 and "cairn_sources_in_error" in seen.text and "ledger" not in seen.text

        server.down = False
        job = client.post("/v1/sources/ledger/permissions", headers=root)
        assert job.status_code == 202 and job.json()["kind"] == "permissions"
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        while ledger.catalog.get_job(job.json()["id"]).state not in ("succeeded", "partial", "failed"):
            assert dt.datetime.now(dt.UTC) < deadline
        assert ledger.catalog.get_job(job.json()["id"]).state == "succeeded"
        client.app.state.stale_sources.invalidate()
        assert client.get("/v1/documents/ledger:ENG-3", headers=alice).status_code == 200
        assert client.get("/v1/sources", headers=alice).status_code == 200
