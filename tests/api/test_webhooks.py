"""POST /v1/webhooks/{source} over real HTTP: secrets, refusals, parsing, and the `webhook` job applying a
refresh, a deletion, a permissions pass and a sync through the real pipeline and stores.

The Jira/Confluence/GitLab `refresh` implementations are written elsewhere; here a source's connector is
an in-test `Connector` that serves items from a dict (the "product"), registered for the source's kind."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import httpx
import pytest
from api_harness import auth, serve, token
from typer.testing import CliRunner

import api.webhooks
from api.app import create_app
from connectors import registry
from connectors.base import Connector
from connectors.webhooks import SECRET_KEY
from indexer.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.models import Access, AccessChange, Deletion, Document, SyncFailure
from workers.jobs import run_sync_job


class Product:
    """What the product holds now: doc path → (text, readers). Records what Cairn read."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.refreshed: list[list[str]] = []
        self.synced = 0
        self.passes = 0
        self.unreadable: set[str] = set()  # paths whose access the product will not tell


class ProductConnector(Connector):
    access_from_source = True
    refreshes_items = True

    def __init__(self, name: str, product: Product) -> None:
        self.name = name
        self.product = product

    def _doc(self, path: str) -> Document:
        text, readers = self.product.items[path]
        access = Access.of(*readers)
        return Document(id=f"{self.name}:{path}", source=self.name, path=path, content=text,
                        version=f"{hashlib.sha1(text.encode()).hexdigest()}|{access.digest()}", access=access,
                        kind="issue", language="markdown", title=path)

    def sync(self, checkpoint, known: Mapping[str, str]) -> Iterator:
        self.product.synced += 1
        for path in sorted(self.product.items):
            doc = self._doc(path)
            if known.get(doc.id) != doc.version:
                yield doc
        for doc_id in known:
            if doc_id.split(":", 1)[1] not in self.product.items:
                yield Deletion(doc_id)

    def next_checkpoint(self) -> dict:
        return {"n": len(self.product.items)}

    def list_ids(self) -> set[str]:
        return {f"{self.name}:{p}" for p in self.product.items}

    def refresh(self, doc_ids: Sequence[str]) -> Iterator:
        self.product.refreshed.append(list(doc_ids))
        for doc_id in doc_ids:
            path = doc_id.split(":", 1)[1]
            if path in self.product.items:
                yield self._doc(path)
                # its restricted parts come with it, as the real connectors' do
                yield from (self._doc(p) for p in sorted(self.product.items) if p.startswith(f"{path}#"))
            elif "#" not in path:
                yield Deletion(doc_id)

    def access_pass(self, known: Mapping[str, str]) -> Iterator:
        self.product.passes += 1
        for doc_id, digest in known.items():
            path = doc_id.split(":", 1)[1]
            if path in self.product.unreadable:
                yield SyncFailure(self.name, path, "permission state could not be read")
            elif path not in self.product.items:
                yield Deletion(doc_id)
            elif (access := Access.of(*self.product.items[path][1])).digest() != digest:
                yield AccessChange(doc_id, access)


@pytest.fixture
def product(monkeypatch) -> Product:
    shared = Product()
    for kind in ("jira", "confluence", "gitlab"):
        monkeypatch.setitem(registry.CONNECTORS, kind, lambda row, settings: ProductConnector(row.name, shared))
    return shared


@pytest.fixture
def site(services, settings, product):
    """Sources `jira` (kind jira), `wiki` (confluence), `gl` (gitlab) and `plain` (a jira source without a
    webhook secret), the product's first issues indexed, and the app on a real server."""
    product.items.update({"SHOP-1": ("# Refunds fail\nrefund ledger mismatch in payments", ("group:shop",)),
                          "SHOP-2": ("# Invoices\ninvoice totals rounding", ("group:shop",))})
    for name, kind in (("jira", "jira"), ("wiki", "confluence"), ("gl", "gitlab"), ("plain", "jira")):
        services.catalog.upsert_source(name, kind, {"location": f"https://{name}.example.com"}, ["group:shop"])
    run_sync_job(services, "jira")
    app = create_app(settings, services=services)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        admin = auth(token(services, "root", admin=True))
        secrets = {name: http.post(f"/v1/sources/{name}/webhook", headers=admin).json()["secret"]
                   for name in ("jira", "wiki", "gl")}
        yield http, app, services, secrets, admin


def wait_job(services, job_id: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = services.catalog.get_job(job_id)
        if job.state in ("succeeded", "partial", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def jira_event(event: str, key: str, changelog: list | None = None) -> dict:
    payload = {"timestamp": 1714557600000, "webhookEvent": event,
               "issue": {"id": "10012", "key": key, "fields": {"project": {"key": key.split("-")[0]}}}}
    if changelog:
        payload["changelog"] = {"items": changelog}
    return payload


def post_jira(http, payload: dict, secret: str, source: str = "jira", **headers: str) -> httpx.Response:
    return http.post(f"/v1/webhooks/{source}", params={"secret": secret}, content=json.dumps(payload),
                     headers={"content-type": "application/json", **headers})


def search(http, services, query: str, user: str = "ann", groups=("shop",)) -> list[str]:
    hits = http.post("/v1/search", json={"query": query, "limit": 10},
                     headers=auth(token(services, user, groups))).json()["hits"]
    return [h["document_id"] for h in hits]


def test_secret_is_shown_once_and_kept_only_as_a_hash(site, settings):
    http, _, services, secrets, admin = site
    again = http.post("/v1/sources/jira/webhook", headers=admin)
    assert again.status_code == 200 and again.json()["secret"] is None and "?secret=<secret>" in again.json()["url"]
    stored = services.catalog.get_source("jira").config[SECRET_KEY]
    assert stored == hashlib.sha256(secrets["jira"].encode()).hexdigest()
    catalog_bytes = b"".join(p.read_bytes() for p in settings.data_dir.glob("catalog.sqlite3*"))  # with its WAL
    assert stored.encode() in catalog_bytes
    everything = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    assert secrets["jira"].encode() not in everything
    listed = http.get("/v1/sources", headers=admin).text
    assert secrets["jira"] not in listed and stored not in listed and "webhook" not in listed
    rotated = http.post("/v1/sources/jira/webhook", json={"rotate": True}, headers=admin).json()
    assert rotated["secret"] not in (None, secrets["jira"]) and rotated["url"].endswith(f"?secret={rotated['secret']}")
    assert post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"]).status_code == 401
    assert post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), rotated["secret"]).status_code == 202
    gitlab = http.post("/v1/sources/gl/webhook", headers=admin).json()
    assert gitlab["url"].endswith("/v1/webhooks/gl")  # GitLab sends the secret as X-Gitlab-Token, not in the URL
    assert http.post("/v1/sources/jira/webhook", headers=auth(token(services, "ann", ["shop"]))).status_code == 403
    assert http.post("/v1/sources/nope/webhook", headers=admin).status_code == 404


def test_refusals_do_not_say_which_source_exists(site):
    http, _, _, secrets, _ = site
    event = jira_event("jira:issue_updated", "SHOP-1")
    refusals = [post_jira(http, event, "wrong"),  # wrong secret
                post_jira(http, event, ""),  # missing
                post_jira(http, event, secrets["jira"], source="nope"),  # unknown source
                post_jira(http, event, secrets["jira"], source="plain"),  # a source without a secret
                post_jira(http, event, secrets["wiki"]),  # another source's secret
                http.post("/v1/webhooks/gl", json={"object_kind": "push"}, headers={"X-Gitlab-Token": "wrong"}),
                http.post("/v1/webhooks/gl", json={"object_kind": "push"}),
                http.post("/v1/webhooks/gl", json={"object_kind": "push"}, params={"secret": secrets["gl"]})]
    assert {(r.status_code, r.text) for r in refusals} == {(401, refusals[0].text)}
    assert "jira" not in refusals[0].text


def test_secret_is_compared_in_constant_time(site, monkeypatch):
    """Every candidate is checked with hmac.compare_digest against the stored hash (or a stand-in hash
    for unknown sources), never with ==."""
    http, _, _, secrets, _ = site
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)
    monkeypatch.setattr(api.webhooks.hmac, "compare_digest", spy)
    post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), "wrong", source="nope")
    assert compared == [(hashlib.sha256(b"wrong").hexdigest(), api.webhooks.NO_SECRET)]
    compared.clear()
    post_jira(http, {"webhookEvent": "jira:worklog_updated"}, secrets["jira"])
    assert compared[0][0] == hashlib.sha256(secrets["jira"].encode()).hexdigest()


def test_jira_signatures_and_bearer(site):
    http, _, _, secrets, _ = site
    body = json.dumps(jira_event("jira:issue_updated", "SHOP-1")).encode()
    good = "sha256=" + hmac.new(secrets["jira"].encode(), body, hashlib.sha256).hexdigest()
    bad = "sha256=" + hmac.new(b"other", body, hashlib.sha256).hexdigest()
    url = "/v1/webhooks/jira"
    assert http.post(url, params={"secret": secrets["jira"]}, content=body,
                     headers={"X-Hub-Signature": good}).status_code == 202
    assert http.post(url, params={"secret": secrets["jira"]}, content=body,
                     headers={"X-Hub-Signature": bad}).status_code == 401
    assert http.post(url, params={"secret": secrets["jira"]}, content=body + b" ",
                     headers={"X-Hub-Signature": good}).status_code == 401  # body changed after signing
    assert http.post(url, content=body, headers={"X-Hub-Signature": good}).status_code == 401  # no secret carried
    assert http.post(url, content=body, headers={"Authorization": f"Bearer {secrets['jira']}"}).status_code == 202


def test_garbage_gets_a_short_400(site):
    http, _, _, secrets, _ = site
    for body in (b"not json", b"[1, 2]", json.dumps({"webhookEvent": "jira:issue_updated"}).encode()):
        answer = http.post("/v1/webhooks/jira", params={"secret": secrets["jira"]}, content=body)
        assert answer.status_code == 400 and answer.json()["error"] == "BadRequest" and len(answer.text) < 300
    ignored = post_jira(http, {"webhookEvent": "jira:worklog_updated", "worklog": {"id": 1}}, secrets["jira"])
    assert ignored.status_code == 202 and ignored.json() == {"status": "ignored"}


def test_an_issue_change_is_searchable_when_the_job_ends_and_nothing_else_is_read(site, product):
    http, _, services, secrets, _ = site
    assert "jira:SHOP-1" in search(http, services, "refund ledger")
    product.items["SHOP-1"] = ("# Refunds fail\nchargeback reconciliation broken", ("group:shop",))
    started = time.perf_counter()
    answer = post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"])
    assert answer.status_code == 202 and time.perf_counter() - started < 1.0
    job = wait_job(services, answer.json()["job_id"])
    assert job.state == "succeeded" and job.kind == "webhook", job.error
    assert product.refreshed == [["jira:SHOP-1"]] and product.synced == 1 and product.passes == 0
    assert search(http, services, "chargeback reconciliation")[:1] == ["jira:SHOP-1"]
    assert "jira:SHOP-1" not in search(http, services, "chargeback reconciliation", user="eve", groups=("ops",))
    assert services.catalog.get_checkpoint("jira") == {"n": 2}  # the webhook moved no checkpoint
    listed = http.get("/v1/jobs", params={"kind": "webhook"}, headers=site[4]).json()
    assert [j["id"] for j in listed] == [job.id]


def test_a_deleted_issue_and_a_moved_one_leave_the_index(site, product):
    http, _, services, secrets, _ = site
    del product.items["SHOP-2"]
    job = wait_job(services, post_jira(http, jira_event("jira:issue_deleted", "SHOP-2"), secrets["jira"]).json()["job_id"])
    assert job.state == "succeeded" and job.counts["refresh"]["files_deleted"] == 1
    assert services.catalog.get_document("jira:SHOP-2") is None
    assert "jira:SHOP-2" not in search(http, services, "invoice totals rounding")
    product.items["OPS-9"] = product.items.pop("SHOP-1")[0], ("group:ops",)
    moved = jira_event("jira:issue_updated", "OPS-9", [{"field": "Key", "fromString": "SHOP-1", "toString": "OPS-9"}])
    job = wait_job(services, post_jira(http, moved, secrets["jira"]).json()["job_id"])
    assert job.state == "succeeded"
    assert services.catalog.get_document("jira:SHOP-1") is None and services.catalog.get_document("jira:OPS-9")
    assert search(http, services, "refund ledger") == []
    assert search(http, services, "refund ledger", user="olga", groups=("ops",)) == ["jira:OPS-9"]


def test_a_repeated_delivery_changes_nothing(site, product):
    http, _, services, secrets, _ = site
    product.items["SHOP-1"] = ("# Refunds fail\nnew text once", ("group:shop",))
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-77"}
    first = post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"], **headers).json()
    wait_job(services, first["job_id"])
    again = post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"], **headers).json()
    assert again == {"status": "duplicate", "job_id": first["job_id"]} and len(product.refreshed) == 1
    # a repeat the product gives a new id (or none) is read again and writes nothing: no chunk in or out,
    # nothing embedded, the same chunks searchable
    before = services.catalog.chunk_ids_for(["jira:SHOP-1"])
    third = wait_job(services, post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"]).json()["job_id"])
    refresh = third.counts["refresh"]
    assert (refresh["chunks_written"], refresh["chunks_deleted"], refresh["chunks_embedded"]) == (0, 0, 0)
    assert services.catalog.chunk_ids_for(["jira:SHOP-1"]) == before
    assert search(http, services, "new text once")[:1] == ["jira:SHOP-1"]


def test_a_duplicate_is_recognised_after_a_restart(site, settings, product):
    http, _, services, secrets, _ = site
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-restart"}
    first = post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"], **headers).json()
    wait_job(services, first["job_id"])
    with serve(create_app(settings, services=services)) as url, httpx.Client(base_url=url) as fresh:
        again = post_jira(fresh, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"], **headers).json()
    assert again == {"status": "duplicate", "job_id": first["job_id"]}


def test_events_arriving_together_join_one_job(site, product):
    http, app, services, secrets, _ = site
    product.items["SHOP-3"] = ("# Shipping\nparcel labels", ("group:shop",))
    gate = threading.Event()
    app.state.jobs.submit_call(gate.wait)  # the writer thread is busy: events wait for it
    one = post_jira(http, jira_event("jira:issue_updated", "SHOP-1"), secrets["jira"]).json()
    two = post_jira(http, jira_event("jira:issue_created", "SHOP-3"), secrets["jira"]).json()
    gate.set()
    assert (one["status"], two["status"]) == ("queued", "merged") and one["job_id"] == two["job_id"]
    job = wait_job(services, one["job_id"])
    assert job.state == "succeeded" and job.counts["doc_ids"] == ["jira:SHOP-1", "jira:SHOP-3"]
    assert product.refreshed == [["jira:SHOP-1", "jira:SHOP-3"]]
    assert search(http, services, "parcel labels")[:1] == ["jira:SHOP-3"]


def test_a_restricted_comment_is_its_own_document_and_leaves_when_deleted(site, product):
    http, _, services, secrets, _ = site
    product.items["SHOP-1#comment-10080"] = ("secret rollback plan for refunds", ("group:devs",))
    event = {"webhookEvent": "comment_created", "comment": {"id": "10080"},
             "issue": {"key": "SHOP-1", "fields": {}}}
    job = wait_job(services, post_jira(http, event, secrets["jira"]).json()["job_id"])
    assert job.state == "succeeded"
    assert search(http, services, "secret rollback plan", user="dan", groups=("devs",)) == ["jira:SHOP-1#comment-10080"]
    assert "jira:SHOP-1#comment-10080" not in search(http, services, "secret rollback plan")
    del product.items["SHOP-1#comment-10080"]
    job = wait_job(services, post_jira(http, {**event, "webhookEvent": "comment_deleted"}, secrets["jira"]).json()["job_id"])
    assert job.state == "succeeded" and services.catalog.get_document("jira:SHOP-1#comment-10080") is None
    assert services.catalog.get_document("jira:SHOP-1") is not None


def test_a_confluence_move_runs_a_permissions_pass(site, product):
    http, _, services, secrets, _ = site
    run_sync_job(services, "wiki")
    assert "wiki:SHOP-2" in search(http, services, "invoice totals rounding")
    # the page is now under a parent only group:leads may read: the pass rewrites its ACL (and others' stay)
    product.items["SHOP-2"] = (product.items["SHOP-2"][0], ("group:leads",))
    event = {"event": "page_moved", "page": {"id": 98765, "spaceKey": "ENG"},
             "oldParent": {"id": 1, "spaceKey": "ENG"}, "newParent": {"id": 2, "spaceKey": "ENG"}}
    answer = http.post("/v1/webhooks/wiki", params={"secret": secrets["wiki"]}, json=event)
    job = wait_job(services, answer.json()["job_id"])
    assert job.state == "succeeded", job.error
    assert product.passes == 1 and product.refreshed == [["wiki:ENG/98765"]]
    assert job.counts["access_pass"]["changed"] == 1 and job.counts["access_pass"]["deleted"] == 0
    assert "wiki:SHOP-2" not in search(http, services, "invoice totals rounding")
    assert "wiki:SHOP-2" in search(http, services, "invoice totals rounding", user="lee", groups=("leads",))
    assert "jira:SHOP-2" in search(http, services, "invoice totals rounding")  # another source: not touched
    fresh = services.catalog.permission_syncs()["wiki"]  # the webhook's pass counts as the source's freshness
    assert fresh.last_success_at is not None and not fresh.last_error

    product.unreadable.add("SHOP-1")  # a pass that cannot read one item: the job is partial, freshness kept
    event["page"]["id"] = 98766
    job = wait_job(services, http.post("/v1/webhooks/wiki", params={"secret": secrets["wiki"]}, json=event)
                   .json()["job_id"])
    assert job.state == "partial" and "permissions pass failed for 1 items" in job.error
    again = services.catalog.permission_syncs()["wiki"]
    assert again.last_success_at == fresh.last_success_at and again.last_error


def test_a_gitlab_push_runs_an_incremental_sync(site, product):
    http, _, services, secrets, _ = site
    product.items["SHOP-4"] = ("# Pushed\nwebhook pushed content", ("group:shop",))
    answer = http.post("/v1/webhooks/gl", json={"object_kind": "push", "ref": "refs/heads/main"},
                       headers={"X-Gitlab-Token": secrets["gl"], "X-Gitlab-Event": "Push Hook",
                                "X-Gitlab-Event-UUID": "9f1c-push"})
    job = wait_job(services, answer.json()["job_id"])
    assert job.state == "succeeded" and product.refreshed == [] and job.counts["sync"]["files_changed"] >= 1
    assert services.catalog.get_document("gl:SHOP-4") is not None


def test_cli_prints_the_secret_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAIRN_PUBLIC_URL", "https://cairn.example.com")
    monkeypatch.delenv("CAIRN_URL", raising=False)
    from api.cli import app

    runner = CliRunner()
    added = runner.invoke(app, ["sources", "add", "jira", "--name", "shop", "--url", "https://jira.example.com",
                                "--project", "SHOP"])
    assert added.exit_code == 0, added.output
    first = json.loads(runner.invoke(app, ["sources", "webhook", "shop", "--json"]).stdout)
    assert first["url"] == f"https://cairn.example.com/v1/webhooks/shop?secret={first['secret']}"
    second = runner.invoke(app, ["sources", "webhook", "shop"])
    assert second.exit_code == 0 and first["secret"] not in second.stdout and "not shown again" in second.stdout
    # re-adding the source keeps its webhook secret
    runner.invoke(app, ["sources", "add", "jira", "--name", "shop", "--url", "https://jira.example.com",
                        "--project", "SHOP", "--project", "OPS"])
    catalog = Catalog(make_engine(f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}"))
    assert catalog.get_source("shop").config[SECRET_KEY] == hashlib.sha256(first["secret"].encode()).hexdigest()
    rotated = runner.invoke(app, ["sources", "webhook", "shop", "--rotate"])
    assert rotated.exit_code == 0 and "shown only this once" in rotated.stdout
    assert catalog.get_source("shop").config[SECRET_KEY] != hashlib.sha256(first["secret"].encode()).hexdigest()
    git = runner.invoke(app, ["sources", "webhook", "nope"])
    assert git.exit_code == 1 and "no source named" in git.output


def test_webhook_jobs_left_queued_by_a_stopped_server_run_again(site, settings, product):
    _, _, services, secrets, _ = site
    product.items["SHOP-1"] = ("# Refunds fail\nleft behind text", ("group:shop",))
    left = services.catalog.create_job(None, "jira", "webhook", params={"doc_ids": ["jira:SHOP-1"], "sync": False,
                                                                        "access_pass": False, "deliveries": ["d-1"]})
    with serve(create_app(settings, services=services)) as url, httpx.Client(base_url=url) as fresh:
        answer = post_jira(fresh, {"webhookEvent": "jira:issue_created", "issue": {"key": "SHOP-2"}}, secrets["jira"])
        assert answer.status_code == 202
        assert wait_job(services, left).state == "succeeded"
        wait_job(services, answer.json()["job_id"])
    # the new event joins the resumed job when it has not started yet
    assert product.refreshed[0][0] == "jira:SHOP-1" and any("jira:SHOP-2" in ids for ids in product.refreshed)
    assert search(site[0], services, "left behind text")[:1] == ["jira:SHOP-1"]
