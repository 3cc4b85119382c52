"""One person across GitLab, Jira and Confluence (Data Center and Cloud): accounts linked by verified email at
the permissions pass, group memberships synced per source, access exactly as each product grants it.

Maya signs in once (one OIDC subject, one verified email). Each source's permissions pass finds her account in
its realm by email (GitLab's numeric id, Jira Data Center's user key, Atlassian Cloud's accountId; Confluence
Data Center shows no emails, so an admin links her there) and syncs the members of the groups its ACLs name.
The Principal she gets (`linked_principals`) reads what the products let her read on all five, and nothing
else; a group membership removed at a source stops granting after one pass, without any ACL rewrite."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest
from fake_confluence import FakeConfluence
from fake_gitlab import FakeGitLab, user_id
from fake_jira import FakeJira, person, user_key
from harness import register, sync
from sqlalchemy import insert

from api.documents import read_document
from api.errors import NotFound
from connectors.registry import build_connector
from indexer.catalog.schema import users
from indexer.identity.store import IdentityStore, linked_principals
from indexer.models import Principal
from indexer.pipeline import run_permission_pass
from workers.jobs import run_permission_job
from workers.lifecycle import remove_source

REPORTER, DEVELOPER = 20, 30
SOURCES = ("gl", "jira-dc", "jira-cloud", "wiki-dc", "wiki-cloud")


def add_person(store: IdentityStore, subject: str, email: str, verified: bool = True) -> None:
    """A Cairn user as OIDC sign-in records one."""
    now = dt.datetime.now(dt.UTC)
    with store.engine.begin() as conn:
        conn.execute(insert(users).values(subject=subject, username=subject, email=email, email_verified=verified,
                                          created_at=now, last_login_at=now, groups=[], admin=False, active=True))


@pytest.fixture
def world(monkeypatch) -> Iterator[dict]:
    """Five products and two people, maya and omar; maya's twin accounts share one email on GitLab."""
    gl, jdc, jcl = FakeGitLab(), FakeJira(cloud=False), FakeJira(cloud=True)
    wdc, wcl = FakeConfluence(cloud=False), FakeConfluence(cloud=True)
    fakes = {"gl": gl, "jira-dc": jdc, "jira-cloud": jcl, "wiki-dc": wdc, "wiki-cloud": wcl}
    for name, fake in fakes.items():
        fake.server.start()
        monkeypatch.setenv(f"TOKEN_{name.replace('-', '_').upper()}", fake.token)
    # GitLab: an internal project read by the org group `staff` (the internal principal), private ones by members
    gl.add_group("corp")
    gl.add_group("staff", members={"maya": REPORTER, "omar": DEVELOPER})
    gl.emails.update({"twin-a": "twins@example.com", "twin-b": "twins@example.com"})
    app = gl.add_project("corp/app", "private", members={"maya": REPORTER})
    gl.add_item(app, "issues", "App gateway timeout", "maya's project")
    handbook = gl.add_project("corp/handbook", "internal")
    gl.add_item(handbook, "issues", "Handbook onboarding", "every corp member reads it")
    vault = gl.add_project("corp/vault", "private", members={"omar": DEVELOPER})
    gl.add_item(vault, "issues", "Vault keys", "omar only")
    # Jira Data Center and Cloud: a project browsed by a group, one by a single user
    for fake in (jdc, jcl):
        fake.groups.update({"devs": ["maya", "omar"], "ops": ["omar"]})
        fake.grant("DEV", {"type": "group", "parameter": "devs"})
        fake.grant("OPS", {"type": "group", "parameter": "ops"})
        fake.grant("OWN", {"type": "user", "parameter": "acc-maya" if fake.cloud else "maya"})
        fake.add_issue("DEV-1", "Deploy pipeline", "devs read it", reporter=person("omar", fake.cloud))
        fake.add_issue("OPS-1", "Pager rotation", "ops read it", reporter=person("omar", fake.cloud))
        fake.add_issue("OWN-1", "Maya's own project", "granted to maya by name", reporter=person("omar", fake.cloud))
    # Confluence: a space for group eng, a page restricted to maya, a page restricted to group ops
    for fake in (wdc, wcl):
        def uid(name: str, fake: FakeConfluence = fake) -> str:
            return f"acc-{name}" if fake.cloud else name
        fake.add_group("eng", [uid("maya"), uid("omar")])
        fake.add_group("ops", [uid("omar")])
        fake.add_space("ENG", groups=["eng"])
        fake.add_page("ENG", "Eng handbook", "<p>eng reads it</p>")
        fake.add_page("ENG", "Maya's notes", "<p>only maya</p>", users=[uid("maya")])
        fake.add_page("ENG", "Ops runbook", "<p>only ops</p>", groups=["ops"])
    yield fakes
    for fake in fakes.values():
        fake.server.stop()


def sources(fakes: dict) -> list[dict]:
    fast = {"retry_backoff_seconds": 0.02, "timeout_seconds": 5.0}
    out = [{"name": "gl", "kind": "gitlab", "url": fakes["gl"].server.url, "group": "corp", "code": False,
            "token_env": "TOKEN_GL", "internal_principal": "gitlab:group:staff", **fast}]
    for name in ("jira-dc", "jira-cloud"):
        fake = fakes[name]
        flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment": "datacenter"}
        out.append({"name": name, "kind": "jira", "url": fake.server.url, "projects": ["DEV", "OPS", "OWN"],
                    "token_env": f"TOKEN_{name.replace('-', '_').upper()}", **flavour, **fast})
    for name in ("wiki-dc", "wiki-cloud"):
        fake = fakes[name]
        flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment": "datacenter"}
        out.append({"name": name, "kind": "confluence", "url": fake.url, "spaces": ["ENG"],
                    "token_env": f"TOKEN_{name.replace('-', '_').upper()}", **flavour, **fast})
    return out


def readable(services, principal: Principal) -> set[str]:
    out = set()
    for name in SOURCES:
        for doc_id in services.catalog.document_versions(name):
            try:
                read_document(services.catalog, principal, doc_id, stale=())
                out.add(doc_id)
            except NotFound:
                pass
    return out


def as_person(store: IdentityStore, subject: str, idp_groups: tuple[str, ...] = ()) -> Principal:
    return Principal(user=subject, linked=linked_principals(store, subject, idp_groups))


def passes(services, names=SOURCES) -> dict[str, dict]:
    """One scheduled permissions pass per source (the real job: ACLs, memberships, links)."""
    out = {}
    for name in names:
        run_permission_job(services.pipeline, services.settings, name)
        out[name] = services.catalog.list_jobs(source=name, limit=1)[0]
    return out


MAYA = {"gl:corp/app/-/issues/1", "gl:corp/handbook/-/issues/1", "jira-dc:DEV-1", "jira-dc:OWN-1",
        "jira-cloud:DEV-1", "jira-cloud:OWN-1", "wiki-dc:ENG/5000", "wiki-dc:ENG/5001", "wiki-cloud:ENG/5000",
        "wiki-cloud:ENG/5001"}


def test_one_person_is_recognized_on_every_source_and_reads_exactly_her_documents(services, world, caplog):
    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "Maya@Example.com")
    add_person(store, "sub-omar", "omar@example.com", verified=False)  # an unverified email links nothing
    add_person(store, "sub-twin", "twins@example.com")  # two GitLab accounts share it: linked to neither
    for data in sources(world):
        register(services, data)
        assert sync(services, data["name"]).files_failed == 0, services.catalog.list_failures(data["name"])
    # ACLs name accounts and groups of each realm, never a bare username
    assert set(services.catalog.document_acl("gl:corp/app/-/issues/1")) >= {f"gitlab:user:{user_id('maya')}"}
    assert "gitlab:group:staff" in services.catalog.document_acl("gl:corp/handbook/-/issues/1")
    assert f"jira:user:{user_key('maya')}" in services.catalog.document_acl("jira-dc:OWN-1")
    assert "jira:group:devs" in services.catalog.document_acl("jira-dc:DEV-1")
    assert "atlassian:user:acc-maya" in services.catalog.document_acl("jira-cloud:OWN-1")
    assert "confluence:user:key-maya" in services.catalog.document_acl("wiki-dc:ENG/5001")
    assert "atlassian:group:eng" in services.catalog.document_acl("wiki-cloud:ENG/5000")

    assert readable(services, as_person(store, "sub-maya")) == set()  # no link yet: nothing (fail closed)
    store.link("sub-maya", "confluence", "key-maya", "maya")  # Confluence Data Center shows no emails: an admin
    with caplog.at_level(logging.INFO):
        jobs = passes(services)
    assert all(j.state == "succeeded" for j in jobs.values()), {n: (j.state, j.error) for n, j in jobs.items()}
    links = {(link.realm, link.account, link.method) for link in store.links("sub-maya")}
    assert links == {("gitlab", str(user_id("maya")), "email"), ("jira", user_key("maya"), "email"),
                     ("atlassian", "acc-maya", "email"), ("confluence", "key-maya", "admin")}
    assert store.links("sub-omar") == [] and store.links("sub-twin") == []
    assert "twins@example.com" not in caplog.text and "Maya@Example.com".lower() not in caplog.text.lower()
    assert "sub-twin" in caplog.text  # the ambiguity is reported, by subject
    assert jobs["gl"].counts["memberships"] == 2 and jobs["jira-dc"].counts["memberships"] == 3

    maya = as_person(store, "sub-maya")
    assert readable(services, maya) == MAYA
    # an admin link is never replaced by an email match, and an account belongs to one person
    store.link("sub-maya", "gitlab", str(user_id("maya")), "maya", method="admin")
    passes(services, ["gl"])
    assert [link.method for link in store.links("sub-maya") if link.realm == "gitlab"] == ["admin"]

    # Membership removals at each source: gone after one pass.
    world["gl"].group_members["staff"].pop("maya")
    world["jira-dc"].groups["devs"] = ["omar"]
    world["jira-cloud"].groups["devs"] = ["omar"]
    world["wiki-cloud"].groups["eng"] = ["acc-omar"]
    world["wiki-dc"].groups["eng"] = ["omar"]
    jobs = passes(services)
    # group grants need no rewrite (a page restricted to maya inside a space of group eng is: the restriction
    # only ever held the members of both)
    assert all(jobs[n].counts["changed"] == 0 for n in ("gl", "jira-dc", "jira-cloud")), jobs
    assert readable(services, as_person(store, "sub-maya")) == {
        "gl:corp/app/-/issues/1", "jira-dc:OWN-1", "jira-cloud:OWN-1"}


def test_unreadable_members_grant_nothing_and_fail_the_pass(services, world):
    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "maya@example.com")
    for data in sources(world):
        register(services, data)
        sync(services, data["name"])
    passes(services, ["jira-dc"])
    assert "jira-dc:DEV-1" in readable(services, as_person(store, "sub-maya"))
    world["jira-dc"].server.fail(r"/group/member$", 500, times=1000)
    job = passes(services, ["jira-dc"])["jira-dc"]
    assert job.state == "partial" and job.counts["failed"] >= 1
    assert {f.item for f in services.catalog.list_failures("jira-dc")} >= {"jira:group:devs"}
    assert "jira-dc:DEV-1" not in readable(services, as_person(store, "sub-maya"))  # fail closed at once
    assert services.catalog.permission_syncs()["jira-dc"].last_error  # the staleness clock runs
    world["jira-dc"].server.faults.clear()
    assert passes(services, ["jira-dc"])["jira-dc"].state == "succeeded"
    assert "jira-dc:DEV-1" in readable(services, as_person(store, "sub-maya"))
    assert not services.catalog.list_failures("jira-dc")


def test_a_removed_source_forgets_its_memberships(services, world):
    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "maya@example.com")
    data = next(d for d in sources(world) if d["name"] == "jira-cloud")
    register(services, data)
    sync(services, "jira-cloud")
    passes(services, ["jira-cloud"])
    assert "atlassian:group:devs" in as_person(store, "sub-maya").linked
    remove_source(services, "jira-cloud")
    assert "atlassian:group:devs" not in as_person(store, "sub-maya").linked


def test_two_instances_in_one_realm_sync_nothing_and_fail(services, world, monkeypatch):
    """Two GitLab instances both left at the default realm would give one numeric id two owners."""
    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "maya@example.com")
    gl = next(d for d in sources(world) if d["name"] == "gl")
    register(services, gl)
    register(services, {**gl, "name": "gl-eu", "url": world["jira-dc"].server.url})  # another instance
    sync(services, "gl")
    connector = build_connector(services.catalog.get_source("gl"), services.settings)
    counts = run_permission_pass(services.pipeline, connector)
    assert counts.failed == 1 and counts.memberships == 0 and store.links("sub-maya") == []
    assert [f.item for f in services.catalog.list_failures("gl")] == ["realm gitlab"]
    register(services, {**gl, "name": "gl-eu", "url": world["jira-dc"].server.url, "realm": "gitlab-eu"})
    counts = run_permission_pass(services.pipeline, build_connector(services.catalog.get_source("gl"),
                                                                    services.settings))
    assert counts.failed == 0 and counts.memberships == 2 and store.links("sub-maya")
    assert not services.catalog.list_failures("gl")


def test_a_realm_must_be_a_lower_case_word():
    from connectors.config import SourceConfigError, parse_source

    base = {"name": "gl", "kind": "gitlab", "url": "https://gitlab.example", "group": "corp"}
    assert parse_source({**base, "realm": "gitlab-eu"}).identity_realm == "gitlab-eu"
    assert parse_source(base).identity_realm == "gitlab"
    jira = {"name": "j", "kind": "jira", "projects": ["A"]}
    assert parse_source({**jira, "url": "https://x.atlassian.net"}).identity_realm == "atlassian"
    assert parse_source({**jira, "url": "https://jira.example"}).identity_realm == "jira"
    wiki = {"name": "w", "kind": "confluence", "spaces": ["A"], "url": "https://wiki.example"}
    assert parse_source(wiki).identity_realm == "confluence"
    for bad in ("GitLab", "user", "a b", "9lab", "x" * 40):
        with pytest.raises(SourceConfigError, match="realm"):
            parse_source({**base, "realm": bad})


def old_name(principal: str) -> str:
    """A principal as connectors wrote it before realms: `user:<username | accountId>`, `group:<name>`."""
    import fake_gitlab
    import fake_jira

    realm, _, rest = principal.partition(":")
    kind, _, name = rest.partition(":")
    if kind == "group":
        return f"group:{name}"
    if kind != "user":
        return principal
    if realm == "gitlab":
        return f"user:{next(u for u, i in fake_gitlab._IDS.items() if str(i) == name)}"
    if realm == "jira":
        return f"user:{next(u for u, k in fake_jira._KEYS.items() if k == name)}"
    return f"user:{name.removeprefix('key-')}"


def test_an_index_with_the_old_names_is_rewritten_by_one_pass_without_embedding(services, world, embedder,
                                                                                  monkeypatch):
    """After an upgrade, the next permissions pass rewrites every ACL into the namespaced names, in the catalog
    and in both stores, through `reapply_access` (vectors from the embedding cache: the model is not called)."""
    from indexer.models import ADMINS, Access
    from indexer.stores import LexicalQuery, SearchFilter

    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "maya@example.com")
    for data in sources(world):
        register(services, data)
        assert sync(services, data["name"]).files_failed == 0
    docs = sorted(d for name in SOURCES for d in services.catalog.document_versions(name))
    current = {d: services.catalog.document_acl(d) for d in docs}
    old = {d: Access.of(*(old_name(p) for p in acl if p != ADMINS)) for d, acl in current.items()}
    services.pipeline.reapply_access(old)  # the index as the previous version wrote it
    assert all(services.catalog.document_acl(d) == tuple(old[d].acl()) for d in docs)
    assert any(p.startswith("user:") for a in old.values() for p in a.principals)
    old_ids = {name: set(services.catalog.chunk_ids_of_source(name)) for name in SOURCES}

    calls = []
    assert services.embedder is embedder  # the model behind the pipeline's cache: any miss would call it
    monkeypatch.setattr(embedder, "embed_documents", lambda texts: calls.append(len(texts)) or [])
    jobs = passes(services)
    assert all(j.state == "succeeded" for j in jobs.values()), {n: (j.state, j.error) for n, j in jobs.items()}
    assert calls == [] and all(j.counts["chunks_embedded"] == 0 for j in jobs.values())
    assert sum(j.counts["changed"] for j in jobs.values()) == len(docs)
    assert {d: services.catalog.document_acl(d) for d in docs} == current
    by_doc = services.catalog.chunk_ids_for(docs)
    for doc_id, ids in by_doc.items():
        assert {tuple(c.acl) for c in services.catalog.get_chunks(ids).values()} == {current[doc_id]}, doc_id
    old_principals = tuple(sorted({p for a in old.values() for p in a.principals} - {"public"}))
    new_principals = tuple(sorted({p for acl in current.values() for p in acl} - {"public", ADMINS}))
    terms = LexicalQuery(terms=tuple((w, 1.0) for w in ("gateway", "handbook", "vault", "deploy", "pager",
                                                         "project", "notes", "runbook", "reads", "only")))
    vector = services.pipeline.embedder.embed_query("handbook")
    for name in SOURCES:
        ids = set(services.catalog.chunk_ids_of_source(name))
        assert ids and not ids & old_ids[name]  # chunk ids carry the ACL: every chunk was written again
        assert services.pipeline.vectors.ids(name) == ids and services.pipeline.fulltext.ids(name) == ids
        scoped = {"sources": (name,)}
        assert not services.pipeline.fulltext.search(terms, SearchFilter(old_principals, **scoped), 100)
        assert not services.pipeline.vectors.search(vector, SearchFilter(old_principals, **scoped), 100)
        found = {h.chunk_id for h in services.pipeline.vectors.search(vector, SearchFilter(new_principals, **scoped), 100)}
        assert found == ids
        assert {h.chunk_id for h in services.pipeline.fulltext.search(terms, SearchFilter(new_principals, **scoped), 100)}


def test_failed_email_lookups_make_the_pass_partial(services, world):
    """Accounts that could not be looked up are a recorded failure: the pass says partial, not succeeded."""
    store = IdentityStore(services.catalog.engine)
    add_person(store, "sub-maya", "maya@example.com")
    for data in sources(world):
        register(services, data)
        sync(services, data["name"])
    world["jira-dc"].server.fail(r"/user/search$", 500, times=1000)
    job = passes(services, ["jira-dc"])["jira-dc"]
    assert job.state == "partial" and job.counts["failed"] >= 1
    assert "identity links" in {f.item for f in services.catalog.list_failures("jira-dc")}
    assert all(link.realm != "jira" for link in store.links("sub-maya"))
    world["jira-dc"].server.faults.clear()
    assert passes(services, ["jira-dc"])["jira-dc"].state == "succeeded"
    assert any(link.realm == "jira" for link in store.links("sub-maya"))
