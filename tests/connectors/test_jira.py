"""The Jira connector through atlassian-python-api against a fake Jira Cloud and Data Center."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from fake_jira import ZONE, person, user_key
from harness import consistent, found_docs, indexed, interrupted_sync, register, same_documents, search, sync

from api.documents import read_document
from api.errors import NotFound
from connectors.base import AuthFailed
from connectors.registry import build_connector
from indexer.models import AccessChange, Deletion, Document, Principal, SyncFailure
from retrieval.grep import grep

DESCRIPTION = """h2. Steps

Put 200 items in the cart and press *Pay*.

{code:python}
gateway.charge(cart.total, timeout=30)
{code}

h2. Expected

The checkout completes."""


@pytest.fixture
def shop(any_jira, monkeypatch):
    """Projects SHOP (permission scheme readable) and OPS (not readable: configuration applies)."""
    return _shop(any_jira, monkeypatch)


@pytest.fixture
def cloud_shop(jira_server, monkeypatch):
    return _shop(jira_server, monkeypatch)


def _shop(fake, monkeypatch):
    monkeypatch.setenv("FAKE_JIRA_TOKEN", fake.token)
    fake.add_issue("SHOP-1", "Checkout times out under load", DESCRIPTION, labels=["checkout"],
                   customfield_10010={"value": "Payments"}, assignee=person("bob", fake.cloud))
    for n in range(4):  # more comments than a search returns: the rest are paged in
        fake.comment("SHOP-1", f"Comment {n}: gateway latency p99 is {30 + n}s ✓")
    fake.add_issue("SHOP-2", "Refund e-mails are late", "Refunds mail after 2 hours",
                   reporter=person("rita", fake.cloud))
    fake.add_issue("SHOP-3", "Card data incident", "Card numbers found in logs", security={"id": "1", "name": "Staff"})
    fake.add_issue("OPS-1", "Checkout pods restart", "OOM kills in checkout pods")
    fake.grant("SHOP", {"type": "group", "parameter": "shop-devs"})
    fake.grant("SHOP", {"type": "projectRole", "parameter": "10002"})
    fake.grant("SHOP", {"type": "reporter"})
    actor = {"type": "atlassian-user-role-actor", "name": "dora", "displayName": "Dora"}
    fake.roles[("SHOP", "10002")] = [{**actor, "actorUser": {"accountId": "acc-dora"}} if fake.cloud else actor]
    fake.groups.update({"shop-devs": ["sam", "sid"], "staff": ["sid", "stan"]})
    return fake


def jira_source(fake, **extra):
    auth = {"username": "bot@example.com"} if fake.cloud else {}
    deployment = "cloud" if fake.cloud else "datacenter"
    return {"name": "jira", "kind": "jira", "url": fake.server.url, "deployment": deployment,
            "projects": ["SHOP", "OPS"], "token_env": "FAKE_JIRA_TOKEN", "access": {"OPS": ["group:ops"]},
            "security_levels": {"Staff": [f"{realm(fake)}:group:staff"]},
            "custom_fields": {"customfield_10010": "Team"},
            **auth, **extra}


def realm(fake):
    """The source's identity realm: Atlassian Cloud's accountIds, or this Jira Data Center's user keys."""
    return "atlassian" if fake.cloud else "jira"


def account(fake, name):
    return f"acc-{name}" if fake.cloud else user_key(name)


def who(fake, name, *groups):
    """A caller as the identity layer resolves one: their linked account and its synced Jira groups."""
    r = realm(fake)
    return Principal(name, linked=frozenset({f"{r}:user:{account(fake, name)}", *(f"{r}:group:{g}" for g in groups)}))


def test_full_sync_renders_issues_with_all_comments(services, shop):
    register(services, jira_source(shop))
    counts = sync(services, "jira")
    assert set(indexed(services, "jira")) == {"jira:SHOP-1", "jira:SHOP-2", "jira:SHOP-3", "jira:OPS-1"}
    assert counts.files_failed == 0 and consistent(services, "jira")
    doc = services.catalog.get_document("jira:SHOP-1")
    assert doc.url == f"{shop.server.url}/browse/SHOP-1" and doc.kind == "issue"
    for fact in ("## Steps", "```python\ngateway.charge(cart.total, timeout=30)\n```", "Team: Payments",
                 "labels: checkout", "status: To Do", "assignee: Bob", "Comment 3: gateway latency p99 is 33s ✓"):
        assert fact in doc.content, fact
    search = "/rest/api/3/search/jql" if shop.cloud else "/rest/api/2/search"
    assert shop.server.requests(search) and shop.server.requests(r"/issue/SHOP-1/comment$")
    assert all("ORDER BY updated ASC" in s.params["jql"] for s in shop.server.requests(search))


def test_incremental_sync_asks_for_recent_changes_in_the_users_time_zone(services, shop):
    register(services, jira_source(shop))
    sync(services, "jira")
    cursor = services.catalog.get_checkpoint("jira")["scopes"]["SHOP"]["cursor"]
    shop.server.clear_log()
    shop.comment("SHOP-2", "Mail queue drained")
    counts = sync(services, "jira")
    assert counts.files_changed == 1 and "Mail queue drained" in services.catalog.get_document("jira:SHOP-2").content
    since = datetime.fromisoformat(cursor) - timedelta(minutes=5)
    expected = f'updated >= "{since.astimezone(ZONE):%Y-%m-%d %H:%M}"'
    jqls = [s.params["jql"] for s in shop.server.requests(r"/search")]
    assert any(expected in jql and 'project = "SHOP"' in jql for jql in jqls), jqls
    assert not shop.server.requests(r"/comment$")  # SHOP-1 did not change: its comments were not read again


def test_deleted_and_moved_issues_are_pruned(services, cloud_shop):
    register(services, jira_source(cloud_shop, reconcile_minutes=0))
    sync(services, "jira")
    del cloud_shop.issues["SHOP-2"]
    cloud_shop.move("SHOP-1", "OPS-7")
    counts = sync(services, "jira")
    assert set(indexed(services, "jira")) == {"jira:SHOP-3", "jira:OPS-1", "jira:OPS-7"}
    assert counts.files_deleted == 2 and consistent(services, "jira")
    assert "group:ops" in services.catalog.get_chunks(services.catalog.chunk_ids_for(["jira:OPS-7"])["jira:OPS-7"]
                                                      ).popitem()[1].acl


def test_rate_limits_server_errors_and_slow_answers_lose_and_duplicate_nothing(services, cloud_shop):
    register(services, jira_source(cloud_shop))
    cloud_shop.server.fail(r"/search/jql$", 429, times=2, retry_after="0")
    cloud_shop.server.fail(r"/comment$", 503)
    cloud_shop.server.fail(r"/permissionscheme$", 500)
    cloud_shop.server.fail(r"/myself$", 0, delay=1.5)
    counts = sync(services, "jira")
    assert counts.files_failed == 0 and len(indexed(services, "jira")) == 4 and consistent(services, "jira")
    assert "Comment 3" in services.catalog.get_document("jira:SHOP-1").content
    assert not any(f.times for f in cloud_shop.server.faults)


def test_a_failing_issue_is_recorded_and_retried(services, cloud_shop):
    register(services, jira_source(cloud_shop))
    cloud_shop.server.fail(r"/issue/SHOP-1/comment$", 500, times=5)
    assert sync(services, "jira").files_failed == 1
    assert [f.item for f in services.catalog.list_failures("jira")] == ["SHOP-1"]
    assert set(indexed(services, "jira")) == {"jira:SHOP-2", "jira:SHOP-3", "jira:OPS-1"}
    assert sync(services, "jira").files_failed == 0
    assert "jira:SHOP-1" in indexed(services, "jira") and services.catalog.list_failures("jira") == []


def test_resumes_after_being_killed_mid_sync(services, cloud_shop):
    for n in range(4, 12):
        cloud_shop.add_issue(f"SHOP-{n}", f"Shop issue {n}", f"details of shop issue {n}")
    register(services, jira_source(cloud_shop, name="clean"))
    sync(services, "clean")
    register(services, jira_source(cloud_shop))
    interrupted_sync(services, "jira", after=7)
    assert services.catalog.get_checkpoint("jira")["scopes"]["SHOP"]["cursor"]
    cloud_shop.server.clear_log()
    sync(services, "jira")
    assert same_documents(indexed(services, "jira")) == same_documents(indexed(services, "clean"))
    assert consistent(services, "jira")
    shop_searches = [s.params["jql"] for s in cloud_shop.server.requests(r"/search/jql$") if "SHOP" in s.params["jql"]]
    assert "updated >=" in shop_searches[0]  # resumed from the stored cursor


def test_access_follows_the_permission_scheme_security_levels_and_configuration(services, shop):
    register(services, jira_source(shop))
    sync(services, "jira")
    query = "checkout refund card incident pods"
    assert found_docs(services, query, Principal("stranger")) == set()
    devs = found_docs(services, query, who(shop, "sam", "shop-devs"))
    assert devs == {"jira:SHOP-1", "jira:SHOP-2"}  # not the issue under the Staff security level
    assert found_docs(services, query, who(shop, "dora")) == {"jira:SHOP-1", "jira:SHOP-2"}
    assert found_docs(services, query, who(shop, "rita")) == {"jira:SHOP-2"}  # reporter grant
    # the Staff level (configured for group:staff) narrows the browse grants: staff members who may browse
    assert found_docs(services, query, who(shop, "sid")) == {"jira:SHOP-3"}
    sid = who(shop, "sid", "shop-devs", "staff")
    assert found_docs(services, query, sid) == {"jira:SHOP-1", "jira:SHOP-2", "jira:SHOP-3"}
    assert found_docs(services, query, who(shop, "stan", "staff")) == set()
    assert found_docs(services, query, Principal("oz", frozenset({"ops"}))) == {"jira:OPS-1"}  # configured


def test_permission_changes_are_applied_on_the_next_sync(services, cloud_shop):
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    assert "jira:SHOP-1" in found_docs(services, "checkout", who(cloud_shop, "dora"))
    cloud_shop.roles[("SHOP", "10002")] = []
    counts = sync(services, "jira")
    assert counts.files_changed == 2  # SHOP-1 and SHOP-2 under the new access (SHOP-3's level did not change)
    assert "jira:SHOP-1" not in found_docs(services, "checkout", who(cloud_shop, "dora"))


def test_a_jql_source_follows_its_filter(services, cloud_shop):
    cloud_shop.grant("OPS", {"type": "group", "parameter": "ops"})
    register(services, {**jira_source(cloud_shop, reconcile_minutes=0), "projects": [], "jql": "labels = checkout"})
    sync(services, "jira")
    assert set(indexed(services, "jira")) == {"jira:SHOP-1"}
    cloud_shop.server.clear_log()
    cloud_shop.update("SHOP-1", labels=[])
    cloud_shop.update("OPS-1", labels=["checkout"])
    sync(services, "jira")
    assert set(indexed(services, "jira")) == {"jira:OPS-1"}  # the issue that left the filter is pruned
    jqls = [s.params["jql"] for s in cloud_shop.server.requests(r"/search/jql$")]
    assert any(re.match(r'\(labels = checkout\) AND updated >= "[^"]+" ORDER BY', jql) for jql in jqls), jqls


def test_refused_credentials_fail_the_job_and_keep_the_index(services, cloud_shop, monkeypatch):
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    monkeypatch.setenv("FAKE_JIRA_TOKEN", "wrong-token-value")
    with pytest.raises(AuthFailed):
        sync(services, "jira")
    assert len(indexed(services, "jira")) == 4 and services.catalog.get_source("jira").state == "error"
    assert "wrong-token-value" not in services.catalog.get_source("jira").last_error


def test_a_full_reindex_prunes_through_list_ids(services, cloud_shop):
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    del cloud_shop.issues["SHOP-2"]
    counts = sync(services, "jira", full=True)
    assert counts.files_changed == 3 and counts.files_deleted == 1
    assert set(indexed(services, "jira")) == {"jira:SHOP-1", "jira:SHOP-3", "jira:OPS-1"}


def test_huge_descriptions_are_capped_not_dropped(services, cloud_shop):
    paragraph = "Ünïcødé log line: checkout gateway timeout at step {n} ✓ " * 40
    cloud_shop.add_issue("SHOP-99", "Huge log dump", "\n\n".join(paragraph.format(n=n) for n in range(150)))
    register(services, jira_source(cloud_shop, max_document_chars=50_000))
    assert sync(services, "jira").files_failed == 0
    doc = services.catalog.get_document("jira:SHOP-99")
    assert 45_000 < len(doc.content) <= 50_000 + 20 and doc.content.endswith("(truncated)\n")
    assert consistent(services, "jira")


# -- restricted comments, security levels, links, the permissions pass and refresh --------------------------

ROLE_SECRET = "Rollback plan uses the zebracorn switch"
GROUP_SECRET = "Budget for the quokkafish vendor"
CONTENT_REQUEST = r"/issue/[A-Z]+-\d+$"  # a full read of one issue


def restricted_comments(fake):
    """On SHOP-2 (browsed by group shop-devs, role Developers = dora, and its reporter rita): a comment for
    role Developers and one for group shop-leads (sam, who browses through shop-devs, and lou, who does not)."""
    fake.groups["shop-leads"] = ["sam", "lou"]
    role = fake.comment("SHOP-2", ROLE_SECRET, visibility={"type": "role", "value": "Developers"})
    group = fake.comment("SHOP-2", GROUP_SECRET, visibility={"type": "group", "value": "shop-leads"})
    fake.comment("SHOP-2", "Open note: refunds resume tomorrow")
    return f"jira:SHOP-2#comment-{role}", f"jira:SHOP-2#comment-{group}"


def sees(services, principal, secret):
    """Whether a real search or grep as `principal` returns any text containing `secret`."""
    hits = {h.doc_id for h in search_hits(services, secret, principal)}
    found = any(secret in services.catalog.get_document(d).content for d in hits)
    grepped = grep(services.catalog, services.fulltext, principal, secret.split()[-2]).matches
    return found or bool(grepped)


def search_hits(services, query, principal):
    return search(services, query, principal, limit=50)


def readable(services, principal, doc_id):
    try:
        read_document(services.catalog, principal, doc_id, stale=())
    except NotFound:
        return False
    return True


def run_access_pass(services, name="jira"):
    """The permissions pass as the engine applies it: access rewritten from the catalog, deletions removed."""
    connector = build_connector(services.catalog.get_source(name), services.settings)
    items = list(connector.access_pass(services.catalog.access_digests(name)))
    services.pipeline.reapply_access({i.doc_id: i.access for i in items if isinstance(i, AccessChange)})
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items


def run_refresh(services, doc_ids, name="jira"):
    connector = build_connector(services.catalog.get_source(name), services.settings)
    items = list(connector.refresh(doc_ids))
    services.pipeline.apply_lexical([i for i in items if isinstance(i, Document)])
    services.pipeline.embed_pending(name)
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items


def test_restricted_comments_are_documents_of_their_own_readable_by_role_or_group_members(services, shop):
    role_doc, group_doc = restricted_comments(shop)
    register(services, jira_source(shop))
    assert sync(services, "jira").files_failed == 0
    issue = services.catalog.get_document("jira:SHOP-2")
    assert ROLE_SECRET not in issue.content and GROUP_SECRET not in issue.content
    assert "refunds resume tomorrow" in issue.content  # unrestricted comments stay in the issue
    comment = services.catalog.get_document(role_doc)
    assert comment.path == role_doc.split(":", 1)[1] and comment.kind == "issue" and ROLE_SECRET in comment.content
    assert consistent(services, "jira")

    dora, sam = who(shop, "dora"), who(shop, "sam", "shop-devs")
    sid, lou, rita = who(shop, "sid", "shop-devs"), who(shop, "lou", "shop-leads"), who(shop, "rita")
    # role Developers: dora only (sam and sid browse the issue but are not in the role)
    assert sees(services, dora, ROLE_SECRET) and readable(services, dora, role_doc)
    for outsider in (sam, sid, rita, Principal("stranger", frozenset({"Developers"}))):
        assert not sees(services, outsider, ROLE_SECRET) and not readable(services, outsider, role_doc)
    # group shop-leads: those of its members who may browse the issue (sam), never lou who may not
    assert sees(services, sam, GROUP_SECRET) and readable(services, sam, group_doc)
    for outsider in (sid, lou, dora, rita):
        assert not sees(services, outsider, GROUP_SECRET) and not readable(services, outsider, group_doc)
    assert readable(services, rita, "jira:SHOP-2")


def test_security_level_members_are_read_from_the_scheme(services, shop):
    """Cloud reads a level's members; Data Center has no API for them: the level is admins only there,
    unless `security_levels` names it."""
    shop.groups["shop-leads"] = ["sam"]
    shop.security_level("SHOP", "10100", "Leads", [{"type": "group", "parameter": "shop-leads"},
                                                   {"type": "reporter"}])
    shop.add_issue("SHOP-4", "Vendor contract renewal", "The payment vendor contract ends in May",
                   security={"id": "10100", "name": "Leads"}, reporter=person("rita", shop.cloud))
    register(services, jira_source(shop))
    sync(services, "jira")
    expected = ({f"atlassian:user:{account(shop, 'sam')}", f"atlassian:user:{account(shop, 'rita')}",
                 "role:admin"} if shop.cloud else {"role:admin"})
    assert set(services.catalog.document_acl("jira:SHOP-4")) == expected
    assert readable(services, who(shop, "sam", "shop-devs"), "jira:SHOP-4") is shop.cloud
    assert not readable(services, who(shop, "sid", "shop-devs"), "jira:SHOP-4")  # browses, not in the level
    register(services, jira_source(shop, security_levels={"Staff": [f"{realm(shop)}:group:staff"],
                                                                "Leads": [f"{realm(shop)}:group:shop-devs"]}))
    run_access_pass(services)  # the configured override: the level is shop-devs (narrowed by the browse grants)
    assert readable(services, who(shop, "sid", "shop-devs"), "jira:SHOP-4")


def test_issue_links_and_remote_links_are_indexed_without_leaking_secured_summaries(services, cloud_shop):
    cloud_shop.link("SHOP-1", "SHOP-2")
    cloud_shop.link("SHOP-1", "SHOP-3", kind="Relates", outward="relates to", inward="relates to")
    cloud_shop.link("SHOP-1", "OPS-1", kind="Cloners", outward="clones", inward="is cloned by")
    cloud_shop.remote_link("SHOP-1", "Checkout runbook", "https://wiki.example.com/runbook")
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    text = services.catalog.get_document("jira:SHOP-1").content
    # a linked issue's summary is its own content, for its own readers: only its key is shown
    assert "blocks SHOP-2" in text and "Refund e-mails are late" not in text
    assert "Checkout times out" not in services.catalog.get_document("jira:SHOP-2").content
    assert "relates to SHOP-3" in text and "Card data incident" not in text  # SHOP-3 is under a security level
    assert "clones OPS-1" in text and "Checkout pods restart" not in text  # another project's readers
    assert "[Checkout runbook](https://wiki.example.com/runbook)" in text
    cloud_shop.grants["SHOP"] = [g for g in cloud_shop.grants["SHOP"] if g["holder"]["type"] != "reporter"]
    sync(services, "jira", full=True)  # even when every reader of one reads the other
    assert "Refund e-mails are late" not in services.catalog.get_document("jira:SHOP-1").content
    assert "Checkout times out" not in services.catalog.get_document("jira:SHOP-2").content


def test_the_permissions_pass_applies_each_tightening_reading_no_content(services, shop):
    role_doc, group_doc = restricted_comments(shop)
    shop.add_issue("SHOP-5", "Loyalty points rounding", "Points are rounded down")
    register(services, jira_source(shop))
    sync(services, "jira")
    dora, sam = who(shop, "dora"), who(shop, "sam", "shop-devs")
    assert readable(services, dora, "jira:SHOP-1") and readable(services, dora, role_doc)
    shop.server.clear_log()
    assert run_access_pass(services) == []  # nothing changed: nothing to do

    shop.update("SHOP-1", security={"id": "1", "name": "Staff"})  # a security level added
    shop.roles[("SHOP", "10002")] = []  # dora leaves the role Developers
    shop.delete("SHOP-5")  # deleted
    shop.move("OPS-1", "SHOP-6")  # moved to another project: the old key's document goes
    shop.edit_comment("SHOP-2", group_doc.rsplit("-", 1)[1], visibility={"type": "role", "value": "Developers"})
    items = run_access_pass(services)
    assert not [i for i in items if isinstance(i, SyncFailure)]
    assert {i.doc_id for i in items if isinstance(i, Deletion)} == {"jira:SHOP-5", "jira:OPS-1"}
    assert not readable(services, sam, "jira:SHOP-1")  # under Staff now
    assert not readable(services, dora, "jira:SHOP-2") and not readable(services, dora, role_doc)
    assert not readable(services, sam, group_doc) and not sees(services, sam, GROUP_SECRET)  # narrowed to the role
    assert "jira:SHOP-5" not in indexed(services, "jira") and "jira:OPS-1" not in indexed(services, "jira")
    assert consistent(services, "jira")
    assert not shop.server.requests(CONTENT_REQUEST) and not shop.server.requests(r"/remotelink$")
    assert all("description" not in s.params.get("fields", "") for s in shop.server.requests(r"/search"))
    assert services.catalog.get_document("jira:SHOP-1").content  # the stored text was reused, not re-read

    shop.edit_comment("SHOP-2", role_doc.rsplit("-", 1)[1], delete=True)  # a restricted comment deleted
    shop.edit_comment("SHOP-2", group_doc.rsplit("-", 1)[1], visibility=None)  # made public: the issue gets it
    items = run_access_pass(services)
    assert {i.doc_id for i in items if isinstance(i, Deletion)} == {role_doc, group_doc}


def test_a_comment_edited_into_a_restriction_narrows_its_issue_until_the_next_sync(services, cloud_shop):
    cid = cloud_shop.comment("SHOP-2", "Vendor is quokkafish ltd")
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    sid = who(cloud_shop, "sid", "shop-devs")
    assert sees(services, sid, "Vendor is quokkafish ltd")
    cloud_shop.edit_comment("SHOP-2", cid, visibility={"type": "role", "value": "Developers"})
    run_access_pass(services)
    assert not sees(services, sid, "Vendor is quokkafish ltd")  # the issue's text still has it: narrowed
    sync(services, "jira")
    assert readable(services, sid, "jira:SHOP-2") and not sees(services, sid, "Vendor is quokkafish ltd")
    assert sees(services, who(cloud_shop, "dora"), "Vendor is quokkafish ltd")


def test_unreadable_group_members_fail_closed(services, cloud_shop):
    _, group_doc = restricted_comments(cloud_shop)
    cloud_shop.server.fail(r"/group/member$", 500, times=100)
    register(services, jira_source(cloud_shop))
    counts = sync(services, "jira")
    assert counts.files_failed >= 1
    assert services.catalog.document_acl(group_doc) == ("role:admin",)
    assert not sees(services, who(cloud_shop, "sam", "shop-devs"), GROUP_SECRET)
    # the comment's readers needed the members of a group (shop-leads, or the issue's shop-devs): named
    assert any(f.item == "SHOP-2 access" and "group:shop-" in f.error and "could not be read" in f.error
               for f in services.catalog.list_failures("jira"))
    cloud_shop.server.faults.clear()
    run_access_pass(services)
    assert sees(services, who(cloud_shop, "sam", "shop-devs"), GROUP_SECRET)


def test_refresh_reads_named_issues_again(services, cloud_shop):
    role_doc, group_doc = restricted_comments(cloud_shop)
    register(services, jira_source(cloud_shop))
    sync(services, "jira")
    cloud_shop.update("SHOP-1", security={"id": "1", "name": "Staff"})
    cloud_shop.delete("SHOP-3")
    cloud_shop.move("OPS-1", "SHOP-7")
    cloud_shop.edit_comment("SHOP-2", role_doc.rsplit("-", 1)[1], delete=True)
    cloud_shop.edit_comment("SHOP-2", group_doc.rsplit("-", 1)[1], visibility={"type": "role", "value": "Developers"})
    items = run_refresh(services, ["jira:SHOP-1", "jira:SHOP-3", "jira:OPS-1", role_doc, group_doc])
    assert {i.doc_id for i in items if isinstance(i, Deletion)} == {"jira:SHOP-3", "jira:OPS-1", role_doc}
    assert not readable(services, who(cloud_shop, "sam", "shop-devs"), "jira:SHOP-1")
    assert not sees(services, who(cloud_shop, "sam", "shop-devs"), GROUP_SECRET)
    assert "jira:SHOP-7" in indexed(services, "jira")  # the moved issue under its new key
    assert consistent(services, "jira")
