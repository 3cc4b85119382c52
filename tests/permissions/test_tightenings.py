"""Every tightening on every product, end to end: indexed from a fake GitLab, Jira (Cloud, Data Center) or
Confluence (Cloud, Data Center) into a real Cairn app over real HTTP, changed at the fake, then applied by
the product's real webhook payload (`POST /v1/webhooks/{source}`, with the source's secret as the product
sends it) or by the permissions pass (`POST /v1/sources/{name}/permissions`).

After each: the victim no longer finds the item (search, `GET /v1/documents/{id}`, MCP `grep`), a still
entitled principal does, nothing was embedded, and the fake's request log shows no content read of any
other item (a webhook reads the named items only; a pass reads listings with ACL-relevant fields only).

Pass only: a GitLab issue deleted (GitLab sends no event), a Jira project role losing a member (Jira sends
no event for role actors). Webhook only: a GitLab internal note added (a pass reads no content: a new note
is indexed by a sync or a webhook)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import httpx2
import pytest
from api_harness import auth, serve, token
from fake_confluence import FakeConfluence
from fake_gitlab import FakeGitLab
from fake_jira import FakeJira, person
from harness import fake_identities, register, resolve_links
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

OWNER, REPORTER, GUEST = 50, 20, 10
LISTING = "<a content listing>"
CLONE = "<a clone>"

Who = tuple[str, tuple[str, ...]]  # (user, groups) of a token


@dataclass
class Case:
    """One tightening: `change(fake)` applies it at the product and returns the webhook the product sends
    then as (headers, payload). `victims` lose `doc`; `entitled` (who, doc) still read; `allowed` are the
    items a webhook may read content of; `modes` the ways the product can deliver it."""

    change: Callable[[Any], tuple[dict[str, str], dict[str, Any]]]
    doc: str
    word: str  # a word only `doc` (and what it becomes) holds: searched and grepped for
    victims: list[Who]
    entitled: list[tuple[Who, str]]
    allowed: set[str] = field(default_factory=set)
    modes: tuple[str, ...] = ("webhook", "pass")
    gone: bool = False  # the item left the product: its document leaves the index
    before: str = ""  # what the victim reads before, when `doc` does not exist yet (a new internal note)
    before_word: str = ""


class Site:
    """A source indexed from a fake into a real app served over HTTP, with its webhook secret."""

    def __init__(self, services: IndexServices, http: httpx.Client, url: str, name: str, fake: Any,
                 secret: str, admin: dict[str, str]) -> None:
        self.services, self.http, self.url, self.name, self.fake = services, http, url, name, fake
        self.secret, self.admin = secret, admin
        self.tokens: dict[Who, str] = {}

    def token(self, who: Who) -> str:
        if who not in self.tokens:
            self.tokens[who] = token(self.services, who[0], list(who[1]))
        return self.tokens[who]

    def found(self, who: Who, query: str) -> set[str]:
        answer = self.http.post("/v1/search", json={"query": query, "limit": 20}, headers=auth(self.token(who)))
        assert answer.status_code == 200, answer.text
        return {hit["document_id"] for hit in answer.json()["hits"]}

    def status(self, who: Who, doc_id: str) -> int:
        return self.http.get(f"/v1/documents/{quote(doc_id, safe='')}", headers=auth(self.token(who))).status_code

    def grep(self, who: Who, pattern: str) -> set[str]:
        """MCP `grep` over the app's Streamable HTTP endpoint, as `who`: the documents with a matching line."""
        async def main() -> set[str]:
            async with (httpx2.AsyncClient(headers=auth(self.token(who)), timeout=60) as http,
                        streamable_http_client(self.url + "/mcp", http_client=http) as (read, write),
                        ClientSession(read, write) as session):
                await session.initialize()
                result = await session.call_tool("grep", {"pattern": pattern})
                assert not result.is_error, result.content
                content = result.structured_content
                content = content["result"] if set(content) == {"result"} else content
                return {m["document_id"] for m in content["matches"]}
        return asyncio.run(main())

    def reads(self, who: Who, doc_id: str, word: str) -> bool:
        """Search, the documents route and grep agree: `who` reads `doc_id` (which holds `word`)."""
        ways = (doc_id in self.found(who, word), self.status(who, doc_id) == 200, doc_id in self.grep(who, word))
        assert len(set(ways)) == 1, f"search, documents route and grep disagree for {who} on {doc_id}: {ways}"
        return ways[0]

    def wait(self, job_id: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.services.catalog.get_job(job_id)
            if job.state in ("succeeded", "partial", "failed", "cancelled"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")

    def webhook(self, kind: str, headers: dict[str, str], payload: dict[str, Any]) -> Any:
        body = json.dumps(payload).encode()
        if kind == "gitlab":
            sent = self.http.post(f"/v1/webhooks/{self.name}", content=body,
                                  headers={"content-type": "application/json", "X-Gitlab-Token": self.secret,
                                           "X-Gitlab-Event-UUID": str(uuid.uuid4()), **headers})
        else:  # Atlassian: the secret in the URL as configured, the body signed with it (X-Hub-Signature)
            signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            sent = self.http.post(f"/v1/webhooks/{self.name}", params={"secret": self.secret}, content=body,
                                  headers={"content-type": "application/json", "X-Hub-Signature": signature,
                                           "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()), **headers})
        assert sent.status_code == 202 and sent.json()["status"] == "queued", sent.text
        return self.wait(sent.json()["job_id"])

    def permissions_pass(self) -> Any:
        sent = self.http.post(f"/v1/sources/{self.name}/permissions", headers=self.admin)
        assert sent.status_code == 202, sent.text
        return self.wait(sent.json()["id"])


def texts(services: IndexServices, source: str) -> set[str]:
    """What the source's chunks embed (header + content): a text already here is never embedded again."""
    rows = services.catalog.get_chunks(services.catalog.chunk_ids_of_source(source)).values()
    return {f"{row.header}\n{row.content}" if row.header else row.content for row in rows}


def embedded(job: Any) -> int:
    counts = job.counts or {}
    parts = [counts] + [counts[k] for k in ("refresh", "access_pass", "sync") if isinstance(counts.get(k), dict)]
    return sum(int(part.get("chunks_embedded") or 0) for part in parts)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", scheduler_tick_seconds=0)  # no timer runs a pass behind our back


def open_site(services: IndexServices, settings: Settings, source: dict[str, Any], fake: Any) -> Iterator[Site]:
    register(services, source)
    counts = run_sync_job(services, source["name"])
    assert counts.files_failed == 0, services.catalog.list_failures(source["name"])
    app = create_app(settings, services=services)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        resolve_links(app, fake_identities)  # each token's user and groups as the identity layer links them
        admin = auth(token(services, "root", admin=True))
        secret = http.post(f"/v1/sources/{source['name']}/webhook", headers=admin).json()["secret"]
        yield Site(services, http, url, source["name"], fake, secret, admin)


def check(site: Site, case: Case, mode: str, kind: str, content_reads: Callable[[Any], set[str]],
          pass_allowed: set[str] = frozenset()) -> Any:
    """The four steps: readable before, changed at the product, applied, unreadable after (and the rest)."""
    for victim in case.victims:  # search and the documents route (grep is checked after)
        before, word = (case.before, case.before_word) if case.before else (case.doc, case.word)
        assert before in site.found(victim, word) and site.status(victim, before) == 200, victim
    headers, payload = case.change(site.fake)
    before_texts = texts(site.services, site.name)
    site.fake.server.clear_log()
    job = site.webhook(kind, headers, payload) if mode == "webhook" else site.permissions_pass()
    assert job.state == "succeeded", job.error
    assert job.kind == ("webhook" if mode == "webhook" else "permissions")
    # Nothing is embedded but text the product changed: none by a pass; a webhook's re-read item may carry
    # a new text (Jira's rendering holds the issue's update time, GitLab's the confidential flag).
    new_texts = texts(site.services, site.name) - before_texts
    assert embedded(job) == (0 if mode == "pass" else len(new_texts)), (job.counts, new_texts)
    assert mode == "webhook" or not new_texts
    reads = content_reads(site.fake)
    allowed = case.allowed if mode == "webhook" else set()
    if mode == "pass" or (job.counts or {}).get("access_pass"):
        allowed = allowed | set(pass_allowed)
    assert reads <= allowed, f"content read beyond {sorted(allowed)}: {sorted(reads - allowed)}"
    for victim in case.victims:
        assert case.doc not in site.found(victim, case.word), victim
        assert site.status(victim, case.doc) == 404, victim
        assert site.grep(victim, case.word) == set(), victim  # the text is nowhere the victim can read
    for who, doc_id in case.entitled:
        assert site.reads(who, doc_id, case.word), (who, doc_id)
    if case.gone:
        assert site.services.catalog.get_document(case.doc) is None
    return job


# -- GitLab ----------------------------------------------------------------------------------------

def gitlab_reads(fake: FakeGitLab) -> set[str]:
    """What content the fake served: single items, their notes, clones, item listings (which carry text)."""
    out: set[str] = set()
    for seen in fake.server.seen:
        item = re.search(r"/api/v4/projects/(.+?)/(issues|merge_requests)/(\d+)(/notes)?$", seen.path)
        if item:
            project = fake._find(item.group(1))
            path = f"{project.path if project else item.group(1)}/-/{item.group(2)}/{item.group(3)}"
            out.add(path + ("#notes" if item.group(4) else ""))
        elif re.search(r"/(issues|merge_requests)$", seen.path):
            out.add(LISTING)
        elif ".git/" in seen.path:
            out.add(CLONE)
    return out


def gitlab_world(fake: FakeGitLab) -> None:
    fake.add_group("platform")
    fake.checkout = fake.add_project("platform/checkout", "public",
                                     members={"alice": OWNER, "rita": REPORTER, "gus": GUEST})
    fake.vault = fake.add_project("platform/vault", "private", members={"pat": REPORTER, "gil": GUEST})
    fake.add_item(fake.checkout, "issues", "Checkout zebracorn timeout", "the zebracorn gateway stalls")
    fake.add_note(fake.checkout, "issues", 1, "Internal: escrow is in locker seven", author="alice", internal=True)
    fake.add_item(fake.checkout, "issues", "Refund quokkafish crash", "quokkafish refunds crash", author="carla")
    fake.add_item(fake.checkout, "issues", "Loyalty narwhalbyte rounding", "narwhalbyte points rounding")
    fake.add_item(fake.vault, "issues", "Vault axolotlbeam rotation", "rotate axolotlbeam keys monthly")
    fake.add_item(fake.vault, "issues", "Control pelicanode", "pelicanode stays readable")


def gitlab_project_hook(project: Any, event: str, **extra: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """A system hook (or group webhook) project or member event, as GitLab posts it."""
    name = project.path.rsplit("/", 1)[1]
    payload = {"created_at": "2024-03-01T09:30:00Z", "updated_at": "2024-03-01T09:31:00Z", "event_name": event,
               "project_id": project.id, **extra}
    if event.startswith("project_"):
        payload |= {"name": name, "path": name, "path_with_namespace": project.path, "owners": [],
                    "owner_name": "Alice", "owner_email": "alice@example.com",
                    "project_visibility": project.visibility}
    else:
        payload |= {"project_name": name, "project_path": name, "project_path_with_namespace": project.path,
                    "project_visibility": project.visibility}
    return {"X-Gitlab-Event": "System Hook"}, payload


def gitlab_project_json(fake: FakeGitLab, project: Any) -> dict[str, Any]:
    return {"id": project.id, "name": project.path.rsplit("/", 1)[1], "path_with_namespace": project.path,
            "web_url": f"{fake.server.url}/{project.path}", "visibility_level": 20 if project.visibility == "public"
            else 0, "namespace": "platform", "default_branch": "main"}


def _gl_member_removed(fake):
    del fake.vault.members["pat"]
    return gitlab_project_hook(fake.vault, "user_remove_from_team", access_level="Reporter", user_username="pat",
                               user_name="Pat", user_email="pat@example.com", user_id=41)


def _gl_visibility(fake):
    fake.checkout.visibility = "private"
    return gitlab_project_hook(fake.checkout, "project_update")


def _gl_feature_private(fake):
    fake.checkout.levels["issues"] = "private"
    return gitlab_project_hook(fake.checkout, "project_update")


def _gl_confidential(fake):
    fake.update_item(fake.checkout, "issues", 2, confidential=True)
    item = fake.checkout.items["issues"][2]
    return {"X-Gitlab-Event": "Confidential Issue Hook"}, {
        "object_kind": "issue", "event_type": "confidential_issue", "user": {"username": "alice", "name": "Alice"},
        "project": gitlab_project_json(fake, fake.checkout),
        "object_attributes": {"id": item["id"], "iid": 2, "title": item["title"], "confidential": True,
                              "state": "opened", "action": "update", "updated_at": item["updated_at"],
                              "url": item["web_url"]},
        "changes": {"confidential": {"previous": False, "current": True}}, "labels": [], "assignees": []}


def _gl_deleted(fake):
    fake.delete_item(fake.checkout, "issues", 3)
    return {}, {}  # GitLab sends no event when an issue is deleted


def _gl_internal_note(fake):
    fake.add_note(fake.checkout, "issues", 1, "Internal: the platypium signing key leaked", author="rita",
                  internal=True)
    note = fake.checkout.notes[("issues", 1)][-1]
    item = fake.checkout.items["issues"][1]
    return {"X-Gitlab-Event": "Confidential Note Hook"}, {
        "object_kind": "note", "event_type": "confidential_note", "user": {"username": "rita", "name": "Rita"},
        "project_id": fake.checkout.id, "project": gitlab_project_json(fake, fake.checkout),
        "object_attributes": {"id": note["id"], "note": note["body"], "noteable_type": "Issue", "internal": True,
                              "confidential": True, "noteable_id": item["id"], "created_at": note["created_at"],
                              "url": f"{item['web_url']}#note_{note['id']}"},
        "issue": {"id": item["id"], "iid": 1, "title": item["title"], "confidential": False, "state": "opened"}}


CHECKOUT, VAULT = "gl:platform/checkout/-/issues", "gl:platform/vault/-/issues"
STRANGER: Who = ("stranger", ())
GITLAB_CONTROL = (("gil", ()), f"{VAULT}/2")
GITLAB = {
    "member removed": Case(_gl_member_removed, f"{VAULT}/1", "axolotlbeam", [("pat", ())],
                           [(("gil", ()), f"{VAULT}/1")]),
    "visibility tightened": Case(_gl_visibility, f"{CHECKOUT}/1", "zebracorn", [STRANGER],
                                 [(("gus", ()), f"{CHECKOUT}/1")]),
    "feature made private": Case(_gl_feature_private, f"{CHECKOUT}/1", "zebracorn", [STRANGER],
                                 [(("gus", ()), f"{CHECKOUT}/1")]),
    "issue made confidential": Case(_gl_confidential, f"{CHECKOUT}/2", "quokkafish", [STRANGER, ("gus", ())],
                                    [(("rita", ()), f"{CHECKOUT}/2")],
                                    allowed={"platform/checkout/-/issues/2", "platform/checkout/-/issues/2#notes"}),
    "issue deleted": Case(_gl_deleted, f"{CHECKOUT}/3", "narwhalbyte", [STRANGER], [], modes=("pass",), gone=True),
    "internal note added": Case(_gl_internal_note, f"{CHECKOUT}/1#note-2", "platypium", [("gus", ()), STRANGER],
                                [(("rita", ()), f"{CHECKOUT}/1#note-2")], modes=("webhook",),
                                allowed={"platform/checkout/-/issues/1", "platform/checkout/-/issues/1#notes"},
                                before=f"{CHECKOUT}/1", before_word="zebracorn"),  # a new text
}
# A pass reads item listings (their ACL fields) and the notes of tickets that have internal notes indexed.
GITLAB_PASS_READS = {LISTING, "platform/checkout/-/issues/1#notes"}


@pytest.fixture
def gitlab_site(services, settings, monkeypatch) -> Iterator[Site]:
    fake = FakeGitLab()
    fake.server.start()
    monkeypatch.setenv("FAKE_GITLAB_TOKEN", fake.token)
    gitlab_world(fake)
    source = {"name": "gl", "kind": "gitlab", "url": fake.server.url, "group": "platform", "code": False,
              "token_env": "FAKE_GITLAB_TOKEN"}
    try:
        yield from open_site(services, settings, source, fake)
    finally:
        fake.server.stop()


@pytest.mark.parametrize(("change", "mode"), [(c, m) for c, case in GITLAB.items() for m in case.modes])
def test_gitlab(gitlab_site, change, mode):
    case = GITLAB[change]
    check(gitlab_site, case, mode, "gitlab", gitlab_reads, GITLAB_PASS_READS)
    who, doc_id = GITLAB_CONTROL
    assert gitlab_site.reads(who, doc_id, "pelicanode")


# -- Jira (Cloud and Data Center) ------------------------------------------------------------------

def jira_reads(fake: FakeJira) -> set[str]:
    """Issues whose content the fake served: read by key (with comments, remote links), or searched for
    with their description (a key's search names the key; any other is a content listing)."""
    out: set[str] = set()
    for seen in fake.server.seen:
        issue = re.search(r"/rest/api/2/issue/([^/]+)(/comment|/remotelink)?$", seen.path)
        if issue:
            out.add(issue.group(1))
        elif re.search(r"/search(/jql)?$", seen.path):
            fields = seen.params.get("fields", "")
            if not fields or fields.startswith("*") or "description" in fields.split(","):
                key = re.search(r'\bkey\s*=\s*"?([\w-]+)', seen.params.get("jql", ""))
                out.add(key.group(1) if key else LISTING)
    return out


def jira_world(fake: FakeJira) -> None:
    fake.grant("SHOP", {"type": "group", "parameter": "shop-devs"})
    fake.grant("SHOP", {"type": "projectRole", "parameter": "10002"})
    fake.grant("OPS", {"type": "group", "parameter": "ops"})
    actor = {"type": "atlassian-user-role-actor", "name": "dora", "displayName": "Dora"}
    fake.roles[("SHOP", "10002")] = [{**actor, "actorUser": {"accountId": "acc-dora"}} if fake.cloud else actor]
    fake.groups.update({"shop-devs": ["sam", "sid"], "staff": ["sid"], "shop-leads": ["sam", "lou"], "ops": ["olga"]})
    fake.security_level("SHOP", "10100", "Staff", [{"type": "group", "parameter": "staff"}])
    fake.add_issue("SHOP-1", "Checkout zebracorn timeout", "the zebracorn gateway stalls")
    fake.add_issue("SHOP-2", "Refund quokkafish mails", "quokkafish refunds are late")
    fake.add_issue("SHOP-3", "Loyalty narwhalbyte rounding", "narwhalbyte points rounding")
    fake.add_issue("SHOP-4", "Pager axolotlbeam rotation", "axolotlbeam rotation schedule")
    fake.add_issue("SHOP-5", "Vendor contract renewal", "the vendor contract ends in May")
    fake.restricted = fake.comment("SHOP-5", "Budget for the pangolinium vendor",
                                   visibility={"type": "group", "value": "shop-leads"})
    fake.add_issue("SHOP-6", "Control pelicanode", "pelicanode stays readable")


def jira_issue_json(fake: FakeJira, issue: Any) -> dict[str, Any]:
    project = issue.key.rsplit("-", 1)[0]
    return {"id": str(10000 + abs(hash(issue.key)) % 10000), "key": issue.key,
            "self": f"{fake.server.url}/rest/api/2/issue/{issue.key}",
            "fields": {"summary": issue.summary, "project": {"key": project, "name": project.title()},
                       "issuetype": {"name": "Bug"}, "status": {"name": "To Do"},
                       "security": issue.fields.get("security"), "updated": fake.stamp(issue.updated)}}


def jira_event(fake: FakeJira, event: str, issue: Any, type_name: str, items: list | None = None,
               **extra: Any) -> tuple[dict[str, str], dict[str, Any]]:
    payload = {"timestamp": 1709283600000, "webhookEvent": event, "issue_event_type_name": type_name,
               "user": person("admin", fake.cloud), "issue": jira_issue_json(fake, issue), **extra}
    if items:
        payload["changelog"] = {"id": "10400", "items": items}
    return {}, payload


def _jira_security(fake):
    fake.update("SHOP-1", security={"id": "10100", "name": "Staff"})
    return jira_event(fake, "jira:issue_updated", fake.issues["SHOP-1"], "issue_updated", [
        {"field": "security", "fieldtype": "jira", "fieldId": "security", "from": None, "fromString": None,
         "to": "10100", "toString": "Staff"}])


def _jira_role_member(fake):
    fake.roles[("SHOP", "10002")] = []
    return {}, {}  # Jira sends no webhook when a project role's actors change


def _jira_deleted(fake):
    issue = fake.issues["SHOP-3"]
    fake.delete("SHOP-3")
    return jira_event(fake, "jira:issue_deleted", issue, "issue_deleted")


def _jira_moved(fake):
    fake.move("SHOP-4", "OPS-7")
    return jira_event(fake, "jira:issue_updated", fake.issues["OPS-7"], "issue_moved", [
        {"field": "project", "fieldtype": "jira", "fieldId": "project", "from": "10000", "fromString": "Shop",
         "to": "10001", "toString": "Ops"},
        {"field": "Key", "fieldtype": "jira", "from": None, "fromString": "SHOP-4", "to": None, "toString": "OPS-7"}])


def _jira_comment_narrowed(fake):
    fake.edit_comment("SHOP-5", fake.restricted, visibility={"type": "role", "value": "Developers"})
    comment = next(c for c in fake.issues["SHOP-5"].comments if c["id"] == fake.restricted)
    return jira_event(fake, "comment_updated", fake.issues["SHOP-5"], "issue_comment_edited",
                      comment={**comment, "self": f"{fake.server.url}/rest/api/2/issue/SHOP-5/comment/{comment['id']}",
                               "updateAuthor": comment["author"]})


def jira_cases(cloud: bool) -> dict[str, Case]:
    def who(name: str, *groups: str) -> Who:
        return (f"acc-{name}" if cloud else name, groups)

    sam, sid, dora = who("sam", "shop-devs"), who("sid", "shop-devs", "staff"), who("dora")
    return {
        "security level added": Case(_jira_security, "jira:SHOP-1", "zebracorn", [sam], [(sid, "jira:SHOP-1")],
                                     allowed={"SHOP-1"}),
        "role member removed": Case(_jira_role_member, "jira:SHOP-2", "quokkafish", [dora], [(sam, "jira:SHOP-2")],
                                    modes=("pass",)),
        "issue deleted": Case(_jira_deleted, "jira:SHOP-3", "narwhalbyte", [sam], [], allowed={"SHOP-3"}, gone=True),
        "issue moved to another project": Case(_jira_moved, "jira:SHOP-4", "axolotlbeam", [sam], [],
                                               allowed={"SHOP-4", "OPS-7"}, gone=True),
        "comment visibility narrowed": Case(_jira_comment_narrowed, "jira:SHOP-5#comment-{restricted}",
                                            "pangolinium", [sam], [(dora, "jira:SHOP-5#comment-{restricted}")],
                                            allowed={"SHOP-5"}),
    }


@pytest.fixture(params=["cloud", "datacenter"])
def jira_site(request, services, settings, monkeypatch) -> Iterator[Site]:
    fake = FakeJira(cloud=request.param == "cloud")
    fake.server.start()
    monkeypatch.setenv("FAKE_JIRA_TOKEN", fake.token)
    jira_world(fake)
    source = {"name": "jira", "kind": "jira", "url": fake.server.url, "projects": ["SHOP", "OPS"],
              "token_env": "FAKE_JIRA_TOKEN", "deployment": request.param,
              **({"username": "bot@example.com"} if fake.cloud else
                 {"security_levels": {"Staff": ["jira:group:staff"]}})}  # Data Center has no API for a level's members
    try:
        yield from open_site(services, settings, source, fake)
    finally:
        fake.server.stop()


@pytest.mark.parametrize(("change", "mode"), [(c, m) for c, case in jira_cases(True).items() for m in case.modes])
def test_jira(jira_site, change, mode):
    fake = jira_site.fake
    case = jira_cases(fake.cloud)[change]
    case.doc = case.doc.format(restricted=fake.restricted)
    case.entitled = [(who, doc.format(restricted=fake.restricted)) for who, doc in case.entitled]
    if change == "issue moved to another project" and mode == "webhook":
        olga = ("acc-olga" if fake.cloud else "olga", ("ops",))
        case.entitled = [(olga, "jira:OPS-7")]  # read under its new key at once (a pass leaves that to a sync)
    check(jira_site, case, mode, "jira", jira_reads)
    sam = ("acc-sam" if fake.cloud else "sam", ("shop-devs",))
    assert jira_site.reads(sam, "jira:SHOP-6", "pelicanode")


# -- Confluence (Cloud and Data Center) ------------------------------------------------------------

def confluence_reads(fake: FakeConfluence) -> set[str]:
    """Pages whose content the fake served: a page with its body, its comments, a listing with bodies."""
    out: set[str] = set()
    for seen in fake.server.seen:
        expand = seen.params.get("expand", "")
        page = re.search(r"/rest/api/content/(\d+)(/child/comment)?$", seen.path)
        if page and (page.group(2) or "body" in expand):
            out.add(page.group(1))
        elif seen.path.endswith("/content/search") and "body" in expand:
            out.add(LISTING)
    return out


def confluence_world(fake: FakeConfluence) -> None:
    fake.add_group("eng", ["al", "sy", "leo"])
    fake.add_group("sre", ["sy"])
    fake.add_group("leads", ["leo"])
    fake.add_space("ENG", users=["alice"], groups=["eng"])
    fake.add_space("PUB", anonymous=True)
    fake.root = fake.add_page("ENG", "Runbooks", "<p>All runbooks.</p>")
    fake.runbook = fake.add_page("ENG", "Checkout times out", "<p>restart the zebracorn gateway</p>",
                                 parent=fake.root.id)
    fake.sre = fake.add_page("ENG", "SRE only", "<p>pager rotation</p>", parent=fake.root.id, groups=["sre"])
    fake.add_page("PUB", "Status page", "<p>pelicanode is operational</p>")


def confluence_content(fake: FakeConfluence, page: Any) -> dict[str, Any]:
    """The content as an event carries it: Forge's `content` on Cloud, Data Center's `page`."""
    if fake.cloud:
        return {"id": page.id, "type": page.type, "status": page.status, "title": page.title,
                "space": {"key": page.space, "id": fake.spaces[page.space]["id"]},
                "version": {"number": page.version}}
    return {"id": int(page.id), "spaceKey": page.space, "title": page.title, "contentType": page.type,
            "version": page.version, "creatorKey": "key-alice", "lastModifierKey": "key-alice",
            "creationDate": 1709283600000, "modificationDate": 1709283660000,
            "self": f"{fake.url}/pages/viewpage.action?pageId={page.id}"}


def confluence_event(fake: FakeConfluence, verb: str, page: Any, **extra: Any) -> tuple[dict[str, str], dict]:
    """`verb` (trashed, moved, permissions_updated) of a page, as Forge (Cloud) or Data Center posts it."""
    if fake.cloud:
        return {}, {"eventType": f"avi:confluence:{verb}:page", "atlassianId": "5b10ac8d82e05b22cc7d4ef5",
                    "content": confluence_content(fake, page), **extra}
    name = "content_permissions_updated" if verb == "permissions_updated" else f"page_{verb}"
    key = "content" if verb == "permissions_updated" else "page"
    return {}, {"event": name, "timestamp": 1709283660000, "userKey": "key-alice",
                key: confluence_content(fake, page), **extra}


def _cf_restricted(fake):
    fake.runbook.groups = ["leads"]  # a restriction changes neither version nor lastmodified
    return confluence_event(fake, "permissions_updated", fake.runbook)


def _cf_ancestor_restricted(fake):
    fake.root.users = ["alice", "leo"]
    return confluence_event(fake, "permissions_updated", fake.root)


def _cf_moved(fake):
    old = confluence_content(fake, fake.runbook)
    fake.runbook.parent = fake.sre.id
    if fake.cloud:
        return confluence_event(fake, "moved", fake.runbook, prevContent=old)
    parents = {"oldParent": confluence_content(fake, fake.root), "newParent": confluence_content(fake, fake.sre)}
    return confluence_event(fake, "moved", fake.runbook, **parents)


def _cf_trashed(fake):
    fake.runbook.status = "trashed"
    return confluence_event(fake, "trashed", fake.runbook)


def _cf_space_revoked(fake):
    fake.spaces["ENG"]["groups"] = []
    return {}, {"event": "space_permissions_updated", "timestamp": 1709283660000, "userKey": "key-alice",
                "space": {"key": "ENG", "name": "Eng", "id": fake.spaces["ENG"]["id"]}}


def confluence_cases(fake: FakeConfluence) -> dict[str, Case]:
    runbook, al = f"wiki:ENG/{fake.runbook.id}", ("al", ("eng",))
    return {
        "restriction added": Case(_cf_restricted, runbook, "zebracorn", [al], [(("leo", ("eng", "leads")), runbook)],
                                  allowed={fake.runbook.id}),
        "restriction added on an ancestor": Case(_cf_ancestor_restricted, runbook, "zebracorn", [al],
                                                 [(("leo", ("eng", "leads")), runbook)], allowed={fake.root.id}),
        "moved under a restricted parent": Case(_cf_moved, runbook, "zebracorn", [al],
                                                [(("sy", ("eng", "sre")), runbook)], allowed={fake.runbook.id}),
        "trashed": Case(_cf_trashed, runbook, "zebracorn", [al], [], allowed={fake.runbook.id}, gone=True),
        "space permission revoked": Case(_cf_space_revoked, runbook, "zebracorn", [al], [(("alice", ()), runbook)]),
    }


CONFLUENCE_CHANGES = ["restriction added", "restriction added on an ancestor", "moved under a restricted parent",
                      "trashed", "space permission revoked"]


@pytest.fixture(params=["cloud", "datacenter"])
def confluence_site(request, services, settings, monkeypatch) -> Iterator[Site]:
    fake = FakeConfluence(cloud=request.param == "cloud")
    fake.server.start()
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", fake.token)
    confluence_world(fake)
    flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment": "datacenter"}
    source = {"name": "wiki", "kind": "confluence", "url": fake.url, "spaces": ["ENG", "PUB"],
              "token_env": "FAKE_CONFLUENCE_TOKEN", **flavour}
    try:
        yield from open_site(services, settings, source, fake)
    finally:
        fake.server.stop()


@pytest.mark.parametrize("mode", ["webhook", "pass"])
@pytest.mark.parametrize("change", CONFLUENCE_CHANGES)
def test_confluence(confluence_site, change, mode):
    fake = confluence_site.fake
    check(confluence_site, confluence_cases(fake)[change], mode, "confluence", confluence_reads)
    public = next(p for p in fake.pages.values() if p.space == "PUB")
    assert confluence_site.reads(("zed", ()), f"wiki:PUB/{public.id}", "pelicanode")
