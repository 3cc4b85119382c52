"""The Confluence connector through atlassian-python-api against a fake Confluence (REST v1), Cloud and Data
Center: rendering, incremental sync, and access exactly as Confluence decides it (space view permission AND
the read restrictions of the page and every ancestor), kept up to date by the permissions pass and refresh."""
from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from fake_confluence import FakeConfluence
from harness import consistent, found_docs, indexed, interrupted_sync, register, same_documents, sync

from connectors.base import AuthFailed
from connectors.registry import build_connector
from indexer.models import AccessChange, Deletion, Document, Principal, SyncFailure

RUNBOOK = """<h2>Symptoms</h2><p>The <strong>checkout</strong> times out after 30&nbsp;seconds (handbook).</p>
<h2>Fix</h2><ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter>
<ac:plain-text-body><![CDATA[kubectl rollout restart deploy/checkout]]></ac:plain-text-body></ac:structured-macro>
<table><tbody><tr><th>Step</th><th>Owner</th></tr><tr><td>Restart</td><td>SRE</td></tr></tbody></table>
<p>See <ac:link><ri:page ri:content-title="Payments gateway" /></ac:link> — ünïcødé ✓</p>"""
USERS = ["alice", "al", "sy", "sam", "leo", "zed"]  # zed: nobody (sees what anonymous users see)


def seed(fake: FakeConfluence) -> FakeConfluence:
    fake.add_group("eng", ["al", "sy", "leo"])
    fake.add_group("sre", ["sy", "sam"])  # sam: in sre, but with no permission on the space ENG
    fake.add_group("leads", ["leo"])
    fake.add_space("ENG", users=["alice"], groups=["eng"])
    fake.add_space("PUB", anonymous=True)
    fake.root = fake.add_page("ENG", "Runbooks", "<p>All runbooks of the handbook.</p>")
    fake.runbook = fake.add_page("ENG", "Checkout times out", RUNBOOK, parent=fake.root.id, labels=["runbook"])
    fake.comment(fake.runbook.id, "sy", "<p>Restart <em>twice</em> when the gateway flaps.</p>")
    fake.sre = fake.add_page("ENG", "SRE only", "<p>handbook pager rotation secrets</p>", parent=fake.root.id,
                             groups=["sre"])
    fake.incident = fake.add_page("ENG", "Incident 42", "<p>handbook checkout outage timeline</p>",
                                  parent=fake.sre.id)
    fake.add_page("ENG", "Release notes", "<p>handbook: checkout v2 shipped</p>", type="blogpost")
    fake.public = fake.add_page("PUB", "Status page", "<p>handbook: checkout is operational</p>")
    return fake


@pytest.fixture
def wiki(confluence_server, monkeypatch):
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", confluence_server.token)
    return seed(confluence_server)


@pytest.fixture(params=["cloud", "datacenter"])
def any_wiki(request, monkeypatch) -> Iterator[FakeConfluence]:
    fake = FakeConfluence(cloud=request.param == "cloud")
    fake.server.start()
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", fake.token)
    yield seed(fake)
    fake.server.stop()


def wiki_source(fake, **extra):
    flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment": "datacenter"}
    return {"name": "wiki", "kind": "confluence", "url": fake.url, "spaces": ["ENG", "PUB"],
            "token_env": "FAKE_CONFLUENCE_TOKEN", **flavour, **extra}


def doc_id(page):
    return f"wiki:{page.space}/{page.id}"


def as_user(fake, user):
    """A caller as the identity layer resolves one: their linked account (Cloud accountId, Data Center user
    key) and the Confluence groups synced for it."""
    realm = "atlassian" if fake.cloud else "confluence"
    account = fake.user_json(user)["accountId" if fake.cloud else "userKey"]
    return Principal(user, linked=frozenset({f"{realm}:user:{account}",
                                             *(f"{realm}:group:{g}" for g in fake.member_of(user))}))


def readable(services, fake, user, query="handbook"):
    return found_docs(services, query, as_user(fake, user))


def truth(fake, user):
    """What Confluence lets `user` view, by the fake's own rule."""
    return {doc_id(p) for p in fake.pages.values() if fake.can_read(user, p)}


def assert_exact(services, fake):
    for user in USERS:
        assert readable(services, fake, user) == truth(fake, user), user
    admin = found_docs(services, "handbook", Principal("root", admin=True))
    assert admin == {doc_id(p) for p in fake.pages.values() if p.status == "current"}


def access_pass(services, name="wiki"):
    """A permissions pass applied as the engine applies it: ACL rewrites from the catalog, deletions."""
    connector = build_connector(services.catalog.get_source(name), services.settings)
    items = list(connector.access_pass(services.catalog.access_digests(name)))
    services.pipeline.reapply_access({i.doc_id: i.access for i in items if isinstance(i, AccessChange)})
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items


def refresh(services, doc_ids, name="wiki"):
    """Named pages read again (as for a webhook), applied: documents written, deletions made."""
    connector = build_connector(services.catalog.get_source(name), services.settings)
    items = list(connector.refresh(doc_ids))
    services.pipeline.apply_lexical([i for i in items if isinstance(i, Document)])
    services.pipeline.embed_pending(name)
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items


def read_no_content(fake):
    """Nothing but ids and ACL-relevant state was asked for: no bodies, versions, comments or single pages."""
    for seen in fake.server.seen:
        assert "body" not in seen.params.get("expand", "") and "version" not in seen.params.get("expand", ""), seen
        assert "/child/comment" not in seen.path and not seen.path.rstrip("/").split("/")[-1].isdigit(), seen


# -- rendering and sync ----------------------------------------------------------------------------


def test_full_sync_renders_pages_comments_and_labels(services, wiki):
    register(services, wiki_source(wiki))
    counts = sync(services, "wiki")
    assert len(indexed(services, "wiki")) == 6 and counts.files_failed == 0 and consistent(services, "wiki")
    doc = services.catalog.get_document(doc_id(wiki.runbook))
    assert doc.url == f"{wiki.url}/spaces/ENG/pages/{wiki.runbook.id}/Checkout+times+out" and doc.kind == "page"
    for fact in ("## Symptoms", "```bash\nkubectl rollout restart deploy/checkout\n```",
                 "| Step | Owner |", "| Restart | SRE |", "labels: runbook", "See Payments gateway", "ünïcødé ✓",
                 "## Comments", "**Sy** at", "Restart twice when the gateway flaps."):
        assert fact in doc.content, fact
    searches = wiki.server.requests(r"/content/search$")
    assert len(searches) > 2 and any(s.params.get("cursor") for s in searches)  # followed _links.next
    assert all("body.storage" in s.params["expand"] for s in searches)
    # the comment is searchable, with the page's access
    assert doc_id(wiki.runbook) in readable(services, wiki, "al", "gateway flaps twice")
    assert doc_id(wiki.runbook) not in readable(services, wiki, "zed", "gateway flaps twice")


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


def test_label_only_edit_and_new_comment_reach_the_index(services, any_wiki):
    wiki = any_wiki
    register(services, wiki_source(wiki, reconcile_minutes=0))
    sync(services, "wiki")
    wiki.pages[wiki.runbook.id].labels = ["runbook", "payments-oncall"]  # no new version, no lastmodified
    counts = sync(services, "wiki")  # the reconcile listing sees the labels in the version
    assert counts.files_changed == 1
    assert "labels: payments-oncall, runbook" in services.catalog.get_document(doc_id(wiki.runbook)).content
    wiki.pages[wiki.runbook.id].labels = ["runbook"]
    wiki.comment(wiki.runbook.id, "al", "<p>Escalate to the zeppelin team.</p>")
    items = refresh(services, [doc_id(wiki.runbook)])
    assert [type(i) for i in items] == [Document]
    doc = services.catalog.get_document(doc_id(wiki.runbook))
    assert "zeppelin team" in doc.content and "payments-oncall" not in doc.content
    assert doc_id(wiki.runbook) in readable(services, wiki, "al", "zeppelin escalate")
    assert consistent(services, "wiki")


def test_deleted_and_moved_pages(services, wiki):
    register(services, wiki_source(wiki, reconcile_minutes=0))
    sync(services, "wiki")
    del wiki.pages[wiki.public.id]
    wiki.runbook.parent = wiki.sre.id  # moved under the restricted page: no new version
    counts = sync(services, "wiki")
    assert doc_id(wiki.public) not in indexed(services, "wiki") and counts.files_deleted == 1
    moved = services.catalog.get_document(doc_id(wiki.runbook))
    assert "Runbooks" not in moved.content  # ancestors' titles are never in a page's text
    assert doc_id(wiki.runbook) not in readable(services, wiki, "al", "checkout kubectl")
    assert doc_id(wiki.runbook) in readable(services, wiki, "sy", "checkout kubectl")
    assert_exact(services, wiki)


def test_rate_limits_server_errors_and_slow_answers_lose_and_duplicate_nothing(services, wiki):
    register(services, wiki_source(wiki))
    wiki.server.fail(r"/content/search$", 429, times=2, retry_after="0")
    wiki.server.fail(r"/restriction/byOperation/read$", 500)
    wiki.server.fail(r"/group/\w+/member$", 503)
    wiki.server.fail(r"/space/ENG$", 0, delay=1.5)
    counts = sync(services, "wiki")
    assert counts.files_failed == 0 and len(indexed(services, "wiki")) == 6 and consistent(services, "wiki")
    assert not any(f.times for f in wiki.server.faults)
    assert_exact(services, wiki)


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


def test_refused_credentials_fail_the_job_and_keep_the_index(services, wiki, monkeypatch):
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", "wrong-token-value")
    with pytest.raises(AuthFailed):
        sync(services, "wiki")
    assert len(indexed(services, "wiki")) == 6
    assert "wrong-token-value" not in services.catalog.get_source("wiki").last_error


# -- who may read what -----------------------------------------------------------------------------


def test_a_restriction_never_widens_the_space_permission(services, any_wiki):
    wiki = any_wiki
    pair = wiki.add_page("ENG", "Pair notes", "<p>handbook notes of al and sam</p>", users=["al", "sam"])
    register(services, wiki_source(wiki))
    counts = sync(services, "wiki")
    assert counts.files_failed == 0
    # sam is named by the restriction but may not view the space: sam sees nothing of ENG
    assert readable(services, wiki, "sam") == {doc_id(wiki.public)}
    assert doc_id(pair) in readable(services, wiki, "al")  # in the space (group eng) and named
    assert doc_id(pair) not in readable(services, wiki, "alice")  # in the space, not named
    # SRE only: restricted to group sre, so readable by sy (eng and sre), not by sam (no space) or al (not sre)
    assert doc_id(wiki.incident) in readable(services, wiki, "sy")
    assert doc_id(wiki.incident) not in readable(services, wiki, "sam") | readable(services, wiki, "al")
    assert_exact(services, wiki)


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_random_restrictions_match_confluence(services, confluence_server, monkeypatch, seed_value):
    wiki = seed(confluence_server)
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", wiki.token)
    rng = random.Random(seed_value)
    wiki.spaces["ENG"].update(users=rng.sample(USERS, 2), groups=rng.sample(["eng", "sre", "leads"], 1))
    parents = [wiki.root.id]
    for n in range(8):
        users = rng.sample(USERS, rng.choice([0, 0, 1, 2]))
        groups = rng.sample(["eng", "sre", "leads"], rng.choice([0, 0, 1, 2]))
        page = wiki.add_page("ENG", f"Page {n}", f"<p>handbook page {n}</p>", parent=rng.choice(parents),
                             users=users, groups=groups)
        parents.append(page.id)
    register(services, wiki_source(wiki))
    assert sync(services, "wiki").files_failed == 0
    assert_exact(services, wiki)


def test_datacenter_space_permissions_are_read_from_the_server(services, monkeypatch):
    wiki = FakeConfluence(cloud=False)
    wiki.server.start()
    try:
        monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", wiki.token)
        seed(wiki)
        register(services, wiki_source(wiki))
        assert sync(services, "wiki").files_failed == 0
        assert wiki.server.requests(r"/space/ENG/permissions$")
        assert doc_id(wiki.runbook) in readable(services, wiki, "alice")  # a user grant (by user key)
        assert "confluence:user:key-alice" in services.catalog.document_acl(doc_id(wiki.runbook))
        assert_exact(services, wiki)
        wiki.spaces["ENG"]["users"] = []  # alice's permission revoked on the server
        access_pass(services)
        assert readable(services, wiki, "alice") == {doc_id(wiki.public)}
        assert_exact(services, wiki)
        # permissions that cannot be read: admin-only, and admins are told
        wiki.spaces["ENG"]["hidden"] = True
        items = access_pass(services)
        assert [f.item for f in items if isinstance(f, SyncFailure)] == ["ENG/permissions"]
        assert readable(services, wiki, "al") == {doc_id(wiki.public)}
        counts = sync(services, "wiki")
        assert counts.files_failed == 1 and [f.item for f in services.catalog.list_failures("wiki")] == \
            ["ENG/permissions"]
        # `access` for the space is an explicit override of the server's permissions
        register(services, wiki_source(wiki, access={"ENG": ["confluence:group:leads"]}))
        assert sync(services, "wiki").files_failed == 0
        assert doc_id(wiki.runbook) in readable(services, wiki, "leo")
        assert doc_id(wiki.runbook) not in readable(services, wiki, "al")
    finally:
        wiki.server.stop()


def test_unreadable_group_members_fail_closed(services, wiki):
    wiki.server.fail(r"/group/sre/member$", 403, times=100)
    register(services, wiki_source(wiki))
    counts = sync(services, "wiki")
    assert counts.files_failed == 1 and [f.item for f in services.catalog.list_failures("wiki")] == ["group:sre"]
    for user in USERS:  # the pages restricted to sre: admins only
        assert not {doc_id(wiki.sre), doc_id(wiki.incident)} & readable(services, wiki, user)
    assert doc_id(wiki.incident) in found_docs(services, "handbook", Principal("root", admin=True))
    assert doc_id(wiki.runbook) in readable(services, wiki, "al")  # pages that need no expansion are served


# -- tightening: the permissions pass and refresh --------------------------------------------------

TIGHTENINGS = ["restricted", "ancestor restricted", "moved under restricted", "trashed", "space revoked"]


def tighten(wiki, how):
    """Change the server so that al (group eng) loses the runbook; nothing bumps its version or lastmodified."""
    if how == "restricted":
        wiki.runbook.groups = ["leads"]
    elif how == "ancestor restricted":
        wiki.root.users = ["alice", "leo"]
    elif how == "moved under restricted":
        wiki.runbook.parent = wiki.sre.id
    elif how == "trashed":
        wiki.runbook.status = "trashed"
    elif how == "space revoked":
        wiki.spaces["ENG"]["groups"] = []


@pytest.mark.parametrize("how", TIGHTENINGS)
def test_tightening_applied_by_the_permissions_pass_without_reading_content(services, any_wiki, how):
    wiki = any_wiki
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    assert doc_id(wiki.runbook) in readable(services, wiki, "al")
    idle_digests = services.catalog.access_digests("wiki")
    wiki.server.clear_log()
    assert access_pass(services) == []  # nothing changed: nothing to do
    idle = len(wiki.server.seen)
    tighten(wiki, how)
    wiki.server.clear_log()
    items = access_pass(services)
    read_no_content(wiki)
    assert len(wiki.server.seen) <= idle + 2
    assert doc_id(wiki.runbook) not in readable(services, wiki, "al")
    assert_exact(services, wiki)
    assert consistent(services, "wiki")
    if how == "trashed":
        assert Deletion(doc_id(wiki.runbook)) in items and doc_id(wiki.runbook) not in indexed(services, "wiki")
    else:
        assert {i.doc_id for i in items if isinstance(i, AccessChange)} <= set(idle_digests)
        assert services.catalog.get_document(doc_id(wiki.runbook)).content  # the text is kept, not read again


@pytest.mark.parametrize("how", TIGHTENINGS)
def test_tightening_applied_by_refresh(services, any_wiki, how):
    wiki = any_wiki
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    tighten(wiki, how)
    # the pages a webhook names: the changed page (and, for a restriction on a parent, what lies under it)
    changed = {"ancestor restricted": [wiki.root, wiki.runbook, wiki.sre, wiki.incident],
               "space revoked": [p for p in wiki.pages.values() if p.space == "ENG"]}.get(how, [wiki.runbook])
    wiki.server.clear_log()
    items = refresh(services, [doc_id(p) for p in changed])
    assert doc_id(wiki.runbook) not in readable(services, wiki, "al")
    assert_exact(services, wiki)
    assert consistent(services, "wiki")
    if how == "trashed":
        assert items == [Deletion(doc_id(wiki.runbook))]
    else:
        assert {i.id for i in items if isinstance(i, Document)} == {doc_id(p) for p in changed}
        assert not wiki.server.requests(r"/content/search$")  # single pages read, nothing listed


def test_loosening_is_applied_too(services, any_wiki):
    wiki = any_wiki
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    wiki.sre.groups = []  # the restriction on the parent removed: the incident page opens to the space
    access_pass(services)
    assert doc_id(wiki.incident) in readable(services, wiki, "al")
    assert_exact(services, wiki)


def test_refresh_follows_a_page_to_another_space(services, wiki):
    register(services, wiki_source(wiki))
    sync(services, "wiki")
    wiki.runbook.space, wiki.runbook.parent = "PUB", None
    items = refresh(services, [doc_id(wiki.runbook).replace("PUB", "ENG")])
    assert [type(i) for i in items] == [Deletion, Document]
    assert f"wiki:ENG/{wiki.runbook.id}" not in indexed(services, "wiki")
    assert doc_id(wiki.runbook) in readable(services, wiki, "zed", "checkout kubectl")
