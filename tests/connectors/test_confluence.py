"""The Confluence connector through atlassian-python-api against a fake Confluence (REST v1)."""
from __future__ import annotations

import pytest
from harness import consistent, found_docs, indexed, interrupted_sync, register, same_documents, sync

from connectors.base import AuthFailed
from indexer.models import Principal

RUNBOOK = """<h2>Symptoms</h2><p>The <strong>checkout</strong> times out after 30&nbsp;seconds.</p>
<h2>Fix</h2><ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter>
<ac:plain-text-body><![CDATA[kubectl rollout restart deploy/checkout]]></ac:plain-text-body></ac:structured-macro>
<table><tbody><tr><th>Step</th><th>Owner</th></tr><tr><td>Restart</td><td>SRE</td></tr></tbody></table>
<p>See <ac:link><ri:page ri:content-title="Payments gateway" /></ac:link> — ünïcødé ✓</p>"""


@pytest.fixture
def wiki(confluence_server, monkeypatch):
    fake = confluence_server
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", fake.token)
    fake.add_space("ENG", users=["acc-alice"], groups=["eng"])
    fake.add_space("PUB", anonymous=True)
    fake.root = fake.add_page("ENG", "Runbooks", "<p>All runbooks.</p>")
    fake.runbook = fake.add_page("ENG", "Checkout times out", RUNBOOK, parent=fake.root.id, labels=["runbook"])
    fake.sre = fake.add_page("ENG", "SRE only", "<p>pager rotation secrets</p>", parent=fake.root.id, groups=["sre"])
    fake.incident = fake.add_page("ENG", "Incident 42", "<p>checkout outage timeline</p>", parent=fake.sre.id)
    fake.add_page("ENG", "Release notes", "<p>checkout v2 shipped</p>", type="blogpost")
    fake.public = fake.add_page("PUB", "Status page", "<p>checkout is operational</p>")
    return fake


def wiki_source(fake, **extra):
    return {"name": "wiki", "kind": "confluence", "url": fake.url, "spaces": ["ENG", "PUB"],
            "token_env": "FAKE_CONFLUENCE_TOKEN", "username": "bot@example.com", **extra}


def doc_id(page):
    return f"wiki:{page.space}/{page.id}"


def test_full_sync_renders_pages_and_blog_posts(services, wiki):
    register(services, wiki_source(wiki))
    counts = sync(services, "wiki")
    assert len(indexed(services, "wiki")) == 6 and counts.files_failed == 0 and consistent(services, "wiki")
    doc = services.catalog.get_document(doc_id(wiki.runbook))
    assert doc.url == f"{wiki.url}/spaces/ENG/pages/{wiki.runbook.id}/Checkout+times+out" and doc.kind == "page"
    for fact in ("under: Runbooks", "## Symptoms", "```bash\nkubectl rollout restart deploy/checkout\n```",
                 "| Step | Owner |", "| Restart | SRE |", "labels: runbook", "See Payments gateway", "ünïcødé ✓"):
        assert fact in doc.content, fact
    searches = wiki.server.requests(r"/content/search$")
    assert len(searches) > 2 and any(s.params.get("cursor") for s in searches)  # followed _links.next
    assert all("body.storage" in s.params["expand"] for s in searches)


def test_incremental_sync_asks_for_recently_modified_content(services, wiki):
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    wiki.server.clear_log()
    wiki.edit(wiki.runbook.id, body=RUNBOOK + "<p>Also check the gateway dashboard.</p>")
    counts = sync(services, "wiki")
    assert counts.files_changed == 1
    assert "gateway dashboard" in services.catalog.get_document(doc_id(wiki.runbook)).content
    cqls = [s.params["cql"] for s in wiki.server.requests(r"/content/search$")]
    assert cqls and all('lastmodified >= "' in cql and cql.endswith("order by lastmodified asc") for cql in cqls)


def test_deleted_and_moved_pages(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    sync(services, "wiki")
    del wiki.pages[wiki.public.id]
    wiki.runbook.parent = wiki.sre.id  # moved under the restricted page: no new version
    counts = sync(services, "wiki")
    assert doc_id(wiki.public) not in indexed(services, "wiki") and counts.files_deleted == 1
    moved = services.catalog.get_document(doc_id(wiki.runbook))
    assert "under: Runbooks > SRE only" in moved.content
    assert doc_id(wiki.runbook) not in found_docs(services, "checkout kubectl", Principal("al", frozenset({"eng"})))
    assert doc_id(wiki.runbook) in found_docs(services, "checkout kubectl", Principal("sy", frozenset({"sre"})))


def test_rate_limits_server_errors_and_slow_answers_lose_and_duplicate_nothing(services, wiki):
    register(services, wiki_source(wiki))
    wiki.server.fail(r"/content/search$", 429, times=2, retry_after="0")
    wiki.server.fail(r"/restriction/byOperation/read$", 500)
    wiki.server.fail(r"/space/ENG$", 0, delay=1.5)
    counts = sync(services, "wiki")
    assert counts.files_failed == 0 and len(indexed(services, "wiki")) == 6 and consistent(services, "wiki")
    assert not any(f.times for f in wiki.server.faults)


def test_a_space_that_cannot_be_read_keeps_its_pages(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    sync(services, "wiki")
    wiki.server.fail(r"/space/PUB$", 500, times=5)
    counts = sync(services, "wiki")
    assert counts.files_failed == 1 and [f.item for f in services.catalog.list_failures("wiki")] == ["PUB/"]
    assert doc_id(wiki.public) in indexed(services, "wiki")  # not pruned because PUB could not be listed


def test_resumes_after_being_killed_mid_sync(services, wiki):
    for n in range(6):
        wiki.add_page("ENG", f"Guide {n}", f"<p>guide number {n}</p>", parent=wiki.root.id)
    register(services, wiki_source(wiki, name="clean"))
    sync(services, "clean")
    register(services, wiki_source(wiki))
    interrupted_sync(services, "wiki", after=7)
    assert services.catalog.get_checkpoint("wiki")["scopes"]["ENG"]["cursor"]
    wiki.server.clear_log()
    sync(services, "wiki")
    assert same_documents(indexed(services, "wiki")) == same_documents(indexed(services, "clean"))
    assert consistent(services, "wiki")
    eng = [s.params["cql"] for s in wiki.server.requests(r"/content/search$") if '"ENG"' in s.params["cql"]]
    assert "lastmodified >=" in eng[0]  # resumed from the stored cursor


def test_access_from_space_permissions_and_inherited_restrictions(services, wiki):
    wiki.add_page("ENG", "Sam's notes", "<p>checkout notes of sam</p>", parent=wiki.sre.id, users=["acc-sam"])
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    query = "checkout runbooks pager incident notes status release"
    assert found_docs(services, query, Principal("stranger")) == {doc_id(wiki.public)}
    eng = found_docs(services, query, Principal("al", frozenset({"eng"})))
    assert doc_id(wiki.runbook) in eng and doc_id(wiki.sre) not in eng and doc_id(wiki.incident) not in eng
    assert doc_id(wiki.runbook) in found_docs(services, query, Principal("acc-alice"))
    sre = found_docs(services, query, Principal("sy", frozenset({"sre"})))
    assert {doc_id(wiki.sre), doc_id(wiki.incident)} <= sre and doc_id(wiki.runbook) not in sre
    # Restricted to group sre above and to sam here: group members are not expanded, so the
    # intersection is empty and only admins read it (narrower than Confluence, never wider).
    notes = next(d for d in indexed(services, "wiki") if services.catalog.get_document(d).title == "Sam's notes")
    assert notes not in found_docs(services, "notes of sam", Principal("acc-sam", frozenset({"sre"})))
    assert notes in found_docs(services, "notes of sam", Principal("root", admin=True))


def test_restriction_changes_are_applied_at_reconciliation(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    sync(services, "wiki")
    assert doc_id(wiki.runbook) in found_docs(services, "checkout kubectl", Principal("al", frozenset({"eng"})))
    wiki.root.groups = ["leads"]  # a restriction on the parent, inherited by the runbook
    sync(services, "wiki")
    assert doc_id(wiki.runbook) not in found_docs(services, "checkout kubectl", Principal("al", frozenset({"eng"})))
    assert doc_id(wiki.runbook) in found_docs(services, "checkout kubectl", Principal("lu", frozenset({"leads"})))


def test_refused_credentials_fail_the_job_and_keep_the_index(services, wiki, monkeypatch):
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", "wrong-token-value")
    with pytest.raises(AuthFailed):
        sync(services, "wiki")
    assert len(indexed(services, "wiki")) == 6
    assert "wrong-token-value" not in services.catalog.get_source("wiki").last_error
