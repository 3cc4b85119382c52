"""Revocation latency: how long a tightening at GitLab, Jira or Confluence stays served by a real `cairn serve`.

    .venv/bin/python bench/revocation_latency.py --out revocation.json

Starts the fake GitLab, Jira Cloud and Confluence Cloud servers of tests/connectors (the products' REST
shapes and permission rules) with a small organization (--docs items per product, page sizes as the real
APIs cap them), adds them as sources with `cairn sources load`, starts `cairn serve` with default settings
(only its data directory and port are set, plus the sources' tokens in its environment) and waits for the
first syncs and the first scheduled permissions passes. Then:

1. idle pass cost: a permissions pass of each source when nothing changed (`POST /v1/sources/{name}/permissions`),
   with the HTTP requests its fake served (per endpoint, per 100 documents) and its wall time;
2. polling: --samples tightenings per product, spread over one scheduler cycle (GitLab: member removed, issue
   made confidential, issue deleted; Jira: issue deleted, security level set, moved to another project;
   Confluence: read restriction added, page trashed, moved under a restricted parent). Each victim reads
   its item (`GET /v1/documents/{id}` 200, found by `POST /v1/search`) before; the latency is the time from
   the change at the fake to the first 404 for the victim, polled every 0.5 s. After it, the victim's search
   no longer finds the item and a control item of the same source is still readable (the victim lost this
   item, not the source). Also reported: the job that applied it, and the scheduler's observed interval
   between passes and the passes' durations, from `GET /v1/jobs`;
3. webhook: the source's webhook secret (`POST /v1/sources/{name}/webhook`), then --webhook-samples
   tightenings each followed at once by the product's event posted to its URL; latency to the first 404.

Defaults give the numbers of docs/benchmarks.md (the run takes about 15 minutes: the polling samples wait for
the default 300 s interval). `--permission-interval S --scheduler-tick T` shorten it (the smoke test,
tests/bench/test_revocation_smoke.py). Prints a table on stderr and one JSON line on stdout (and --out);
exits 1 when a sample was invalid or never revoked."""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "connectors"))
sys.path.insert(0, str(ROOT / "bench"))

from fake_confluence import FakeConfluence  # noqa: E402
from fake_gitlab import GUEST, FakeGitLab, user_id  # noqa: E402
from fake_jira import FakeJira, person  # noqa: E402
from load_test import free_port, stop_server, wait_healthy  # noqa: E402

from api.tokens import TokenStore  # noqa: E402
from indexer.catalog import open_catalog  # noqa: E402
from indexer.catalog.schema import users  # noqa: E402
from indexer.identity.store import IdentityStore  # noqa: E402
from indexer.settings import Settings  # noqa: E402

CAIRN = str(Path(sys.executable).with_name("cairn"))
PRODUCTS = ("gitlab", "jira", "wiki")
# The fakes' page caps, set to what the real APIs allow (their test defaults are tiny, to exercise paging).
PAGE_SIZES = {"gitlab per_page": 100, "jira search maxResults": 100, "confluence search limit": 100,
              "confluence group members limit": 200}
POLLING_KINDS = {"gitlab": ("member removed", "made confidential", "deleted"),
                 "jira": ("deleted", "security level set", "moved to another project"),
                 "wiki": ("restriction added", "trashed", "moved under a restricted parent")}
WEBHOOK_KINDS = {"gitlab": ("made confidential", "member removed"),
                 "jira": ("deleted", "security level set", "moved to another project"),
                 "wiki": ("restriction added", "trashed", "moved under a restricted parent")}
WORDS = ["ledger", "refund", "invoice", "checkout", "gateway", "timeout", "retry", "cache", "session", "token",
         "rollout", "migration", "schema", "replica", "backup", "latency", "quota", "billing", "export", "import",
         "webhook", "cursor", "batch", "index", "shard"]


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass
class Sample:
    product: str
    kind: str
    mode: str  # polling | webhook
    doc_id: str
    word: str  # unique word of the item: the victim's search finds it before
    token: str  # the victim's
    control: str  # a doc id of the same source the victim keeps
    apply: Any = None  # the tightening at the fake
    event: Any = None  # (json body, headers) of the product's webhook
    applied_at: float = 0.0
    gone_at: float | None = None
    searched_before: bool = False
    searched_after: bool | None = None
    control_after: int | None = None
    applied_by: str | None = None
    error: str = ""

    @property
    def latency(self) -> float | None:
        return None if self.gone_at is None else round(self.gone_at - self.applied_at, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"product": self.product, "kind": self.kind, "doc_id": self.doc_id, "latency_s": self.latency,
                "applied_at": _iso(self.applied_at), "applied_by": self.applied_by,
                "victim_found_it_before": self.searched_before, "victim_finds_it_after": self.searched_after,
                "victim_control_status_after": self.control_after, "error": self.error}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def _ts(text: str | None) -> float | None:
    return dt.datetime.fromisoformat(text).timestamp() if text else None


def _body(n: int, word: str) -> str:
    rng = [WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(60)]
    return (f"{word} is tracked here. " + " ".join(rng) + ".\n\n" + " ".join(reversed(rng)) + f". See {word}.")


class Org:
    """The three fakes and their state: projects, issues, spaces, pages, groups and the victims' items."""

    def __init__(self, docs: int, samples: int, webhook_samples: int) -> None:
        self.gl, self.jira, self.wiki = FakeGitLab(), FakeJira(cloud=True), FakeConfluence(cloud=True)
        self.gl.max_per_page = PAGE_SIZES["gitlab per_page"]
        self.jira.page_size = PAGE_SIZES["jira search maxResults"]
        self.wiki.page_size = PAGE_SIZES["confluence search limit"]
        self.wiki.member_page_size = PAGE_SIZES["confluence group members limit"]
        self.victims = samples + webhook_samples
        self.docs = docs
        self.items: dict[str, list[str]] = {p: [] for p in PRODUCTS}  # doc ids, in order of creation
        self.words: dict[str, str] = {}  # doc id → its unique word
        self.apply_at: dict[str, Any] = {}
        self.projects: list[Any] = []
        self.secret_page = ""
        self.build()

    def start(self) -> None:
        for fake in (self.gl, self.jira, self.wiki):
            fake.server.start()

    def stop(self) -> None:
        for fake in (self.gl, self.jira, self.wiki):
            fake.server.stop()

    def build(self) -> None:
        staff = ["alice", "bob", "carol", "dave", "victor"]
        # GitLab: one private project per victim (a member removal takes only that project), plus one
        # the victims keep; guests read issues but not confidential ones.
        self.gl.add_group("acme", {"alice": 40, "bob": 30})
        guests = {f"guest{k}": GUEST for k in range(self.victims)}
        self.projects = [self.gl.add_project(f"acme/svc-{i}", "private", members={"carol": 30, **guests})
                         for i in range(self.victims + 1)]
        for n in range(self.docs):
            project = self.projects[n % len(self.projects)]
            word = f"zqgl{n}x"
            item = self.gl.add_item(project, "issues", f"{word}: {WORDS[n % len(WORDS)]} fails", _body(n, word),
                                    author="alice", assignees=["bob"])
            if n % 3 == 0:
                self.gl.add_note(project, "issues", item["iid"], f"Seen again on {WORDS[(n + 5) % len(WORDS)]}.")
            self._item("gitlab", f"gitlab:{project.path}/-/issues/{item['iid']}", word)
        # Jira Cloud: PAY browsable by group staff; security level Leads (group leads: alice).
        self.jira.groups.update({"staff": staff, "leads": ["alice"]})
        self.jira.grant("PAY", {"type": "group", "parameter": "staff"})
        self.jira.security_level("PAY", "10100", "Leads", [{"type": "group", "parameter": "leads"}])
        for n in range(self.docs):
            word = f"zqjira{n}x"
            key = f"PAY-{n + 1}"
            self.jira.add_issue(key, f"{word}: {WORDS[n % len(WORDS)]} fails", _body(n, word),
                                reporter=person("alice", True), assignee=person("bob", True))
            if n % 3 == 0:
                self.jira.comment(key, f"Reproduced with {WORDS[(n + 5) % len(WORDS)]}.", author="bob")
            self._item("jira", f"jira:{key}", word)
        # Confluence Cloud: ENG viewable by group staff; sections of pages; one section restricted to alice.
        self.wiki.add_group("staff", staff)
        self.wiki.add_space("ENG", groups=["staff"])
        secret = self.wiki.add_page("ENG", "Leadership notes", "<p>Plans.</p>", users=["alice"])
        self.secret_page = secret.id
        sections = [self.wiki.add_page("ENG", f"Section {s}", f"<p>Section {s}.</p>").id for s in range(10)]
        for n in range(self.docs):
            word = f"zqwiki{n}x"
            page = self.wiki.add_page("ENG", f"{word}: {WORDS[n % len(WORDS)]} runbook", f"<p>{_body(n, word)}</p>",
                                      parent=sections[n % len(sections)])
            self._item("wiki", f"wiki:ENG/{page.id}", word)

    def _item(self, product: str, doc_id: str, word: str) -> None:
        self.items[product].append(doc_id)
        self.words[doc_id] = word

    # -- tightenings (and the product's webhook event for each) ---------------------------------------

    def tighten(self, product: str, kind: str, doc_id: str, victim: int) -> tuple[Any, Any]:
        """(a function applying the change at the fake, the event the product sends for it)."""
        uid = lambda: {"x-gitlab-event-uuid" if product == "gitlab" else "x-atlassian-webhook-identifier":  # noqa: E731
                       str(uuid.uuid4())}
        if product == "gitlab":
            path, _, iid_text = doc_id.removeprefix("gitlab:").rpartition("/-/issues/")
            project, iid = next(p for p in self.projects if p.path == path), int(iid_text)
            project_json = {"id": project.id, "path_with_namespace": project.path, "name": path.rsplit("/", 1)[-1]}
            if kind == "member removed":
                return (lambda: project.members.pop(f"guest{victim}"),
                        ({"event_name": "user_remove_from_team", "project_id": project.id,
                          "project_path_with_namespace": project.path, "user_username": f"guest{victim}",
                          "access_level": "Guest"}, {"x-gitlab-event": "Member Hook", **uid()}))
            if kind == "made confidential":
                return (lambda: self.gl.update_item(project, "issues", iid, confidential=True),
                        ({"object_kind": "issue", "event_type": "confidential_issue", "project": project_json,
                          "object_attributes": {"id": project.id * 1000 + iid, "iid": iid, "action": "update",
                                                "confidential": True}}, {"x-gitlab-event": "Issue Hook", **uid()}))
            return lambda: self.gl.delete_item(project, "issues", iid), None  # GitLab sends no event for it
        if product == "jira":
            key = doc_id.removeprefix("jira:")
            issue = {"id": "1" + key.split("-")[1], "key": key, "fields": {"project": {"key": "PAY"}}}
            if kind == "deleted":
                return (lambda: self.jira.delete(key),
                        ({"webhookEvent": "jira:issue_deleted", "timestamp": int(time.time() * 1000),
                          "issue": issue}, uid()))
            if kind == "security level set":
                change = {"field": "security", "fieldtype": "jira", "from": None, "to": "10100", "toString": "Leads"}
                return (lambda: self.jira.update(key, security={"id": "10100", "name": "Leads"}),
                        ({"webhookEvent": "jira:issue_updated", "timestamp": int(time.time() * 1000),
                          "issue": issue, "changelog": {"items": [change]}}, uid()))
            new_key = f"SEC-{key.split('-')[1]}"
            moved = {"id": issue["id"], "key": new_key, "fields": {"project": {"key": "SEC"}}}
            changes = [{"field": "project", "fieldtype": "jira", "fromString": "Pay", "toString": "Sec"},
                       {"field": "Key", "fieldtype": "jira", "fromString": key, "toString": new_key}]
            return (lambda: self.jira.move(key, new_key),
                    ({"webhookEvent": "jira:issue_updated", "timestamp": int(time.time() * 1000), "issue": moved,
                      "changelog": {"items": changes}}, uid()))
        page_id = doc_id.rpartition("/")[2]
        page = self.wiki.pages[page_id]
        content = {"id": int(page_id), "spaceKey": "ENG", "title": page.title, "contentType": "page"}
        if kind == "restriction added":  # Confluence: no new version, lastmodified unchanged
            return (lambda: setattr(page, "users", ["alice"]),
                    ({"event": "content_restrictions_updated", "timestamp": int(time.time() * 1000),
                      "content": content}, uid()))
        if kind == "trashed":
            return (lambda: setattr(page, "status", "trashed"),
                    ({"event": "page_trashed", "timestamp": int(time.time() * 1000), "page": content}, uid()))
        old_parent = page.parent
        return (lambda: setattr(page, "parent", self.secret_page),  # a move keeps version and lastmodified
                ({"event": "page_moved", "timestamp": int(time.time() * 1000), "page": content,
                  "oldParent": {"id": int(old_parent or 0), "spaceKey": "ENG"},
                  "newParent": {"id": int(self.secret_page), "spaceKey": "ENG"}}, uid()))

    def requests(self, product: str) -> list[Any]:
        return list({"gitlab": self.gl, "jira": self.jira, "wiki": self.wiki}[product].server.seen)

    def clear_log(self, product: str) -> None:
        {"gitlab": self.gl, "jira": self.jira, "wiki": self.wiki}[product].server.clear_log()


def endpoint(path: str) -> str:
    """A request path with its ids, keys and names replaced, to count requests per endpoint."""
    path = re.sub(r"/(projects|groups)/[^/]+", r"/\1/{id}", path)  # GitLab (python-gitlab uses numeric ids)
    path = re.sub(r"/(issue|project|space)/[^/]+", r"/\1/{key}", path)  # Jira, Confluence
    path = re.sub(r"/group/[^/]+/member", "/group/{name}/member", path)
    return re.sub(r"/content/\d+", "/content/{id}", path)


# -- the server ---------------------------------------------------------------------------------------

class Server:
    def __init__(self, data_dir: Path, log: Path, env_extra: dict[str, str], org: Org) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        self.env.update(CAIRN_DATA_DIR=str(data_dir), BENCH_GITLAB_TOKEN=org.gl.token,
                        BENCH_JIRA_TOKEN=org.jira.token, BENCH_WIKI_TOKEN=org.wiki.token, **env_extra)
        self.data_dir, self.log, self.org = data_dir, log, org
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        proc = subprocess.run([CAIRN, *args], env=self.env, capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"cairn {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def add_sources(self) -> None:
        org = self.org
        sources = {"sources": [
            {"name": "gitlab", "kind": "gitlab", "url": org.gl.server.url, "group": "acme",
             "token_env": "BENCH_GITLAB_TOKEN", "code": False},
            {"name": "jira", "kind": "jira", "url": org.jira.server.url, "deployment": "cloud",
             "username": "bot@example.com", "token_env": "BENCH_JIRA_TOKEN", "projects": ["PAY"]},
            {"name": "wiki", "kind": "confluence", "url": org.wiki.url, "deployment": "cloud",
             "username": "bot@example.com", "token_env": "BENCH_WIKI_TOKEN", "spaces": ["ENG"],
             # the two fakes number one person differently (acc-victor, victor): realms of their own
             "realm": "wiki"}]}
        path = self.data_dir.parent / "sources.json"  # YAML is a superset of JSON
        path.write_text(json.dumps(sources))
        self.cli("sources", "load", str(path))

    def tokens(self) -> TokenStore:
        """Tokens written into the server's catalog (the one `cairn sources load` made) before it starts."""
        return TokenStore(open_catalog(f"sqlite:///{self.data_dir / 'catalog.sqlite3'}").engine)

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([CAIRN, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_healthy(self.base, self.proc)

    def stop(self) -> int:
        return stop_server(self.proc) if self.proc else 0


def wait_job(http: httpx.Client, admin: dict, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}", headers=admin).json()
        if job["state"] not in ("queued", "running", "cancelling"):
            return job
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in {timeout:.0f} s")


def jobs(http: httpx.Client, admin: dict, **query: str) -> list[dict]:
    return http.get("/v1/jobs", params={"limit": 1000, **query}, headers=admin).json()


def readable(http: httpx.Client, token: str, doc_id: str) -> int:
    return http.get(f"/v1/documents/{doc_id}", headers={"Authorization": f"Bearer {token}"}).status_code


def finds(http: httpx.Client, token: str, word: str, doc_id: str) -> bool:
    resp = http.post("/v1/search", json={"query": word, "limit": 20}, headers={"Authorization": f"Bearer {token}"})
    resp.raise_for_status()
    return any(h["document_id"] == doc_id for h in resp.json()["hits"])


def stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": len(values), "min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


# -- phases -------------------------------------------------------------------------------------------

def first_syncs(http: httpx.Client, admin: dict, timeout: float) -> dict[str, dict]:
    started = {p: http.post(f"/v1/sources/{p}/reindex", headers=admin).json()["id"] for p in PRODUCTS}
    done = {p: wait_job(http, admin, job_id, timeout) for p, job_id in started.items()}
    for product, job in done.items():
        if job["state"] != "succeeded":
            raise SystemExit(f"first sync of {product} {job['state']}: {job.get('error')}")
    return done


def wait_first_passes(http: httpx.Client, admin: dict, after: float, timeout: float) -> None:
    """Until each source has a scheduled permissions pass that finished after its first sync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {j["source"] for j in jobs(http, admin, kind="permissions")
                if j["state"] in ("succeeded", "partial") and (_ts(j["finished_at"]) or 0) > after}
        if done >= set(PRODUCTS):
            return
        time.sleep(1)
    raise SystemExit(f"no scheduled permissions pass within {timeout:.0f} s of the first syncs")


def idle_pass_cost(http: httpx.Client, admin: dict, org: Org, documents: dict[str, int]) -> dict[str, dict]:
    out = {}
    for product in PRODUCTS:
        for _ in range(5):  # a scheduled pass of the source that slips in makes the count ambiguous: again
            org.clear_log(product)
            since = time.time()
            job = wait_job(http, admin, http.post(f"/v1/sources/{product}/permissions", headers=admin).json()["id"], 600)
            seen = org.requests(product)
            copied = time.time()
            others = [j for j in jobs(http, admin, kind="permissions", source=product)  # ran in the window
                      if j["id"] != job["id"] and j["started_at"] and (_ts(j["started_at"]) or 0) <= copied
                      and (_ts(j["finished_at"]) or copied) >= since]
            if not others and job["state"] == "succeeded":
                break
        else:
            raise SystemExit(f"could not measure an idle pass of {product} alone: {job['state']} {job.get('error')}")
        counts = job["counts"]
        if counts.get("changed") or counts.get("deleted"):
            raise SystemExit(f"an idle pass of {product} changed something: {counts}")
        by = Counter(f"{s.method} {endpoint(s.path)}" for s in seen)
        docs = documents[product]
        wall = (_ts(job["finished_at"]) or 0) - (_ts(job["started_at"]) or 0)
        out[product] = {"documents": docs, "requests": len(seen),
                        "requests_per_100_documents": round(100 * len(seen) / max(docs, 1), 1),
                        "seconds": round(wall, 3), "pass_seconds": counts.get("seconds"),
                        "checked": counts.get("checked"), "by_endpoint": dict(by.most_common())}
    return out


class Poller:
    """Polls each outstanding sample's document as its victim until it answers 404."""

    def __init__(self, base: str, every: float) -> None:
        self.base, self.every = base, every
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self.stopped.wait(self.every):
                with self.lock:
                    waiting = [s for s in self.samples if s.gone_at is None and not s.error]
                for sample in waiting:
                    try:
                        status = readable(http, sample.token, sample.doc_id)
                    except httpx.HTTPError:
                        continue
                    if status == 404:
                        sample.gone_at = time.time()
                    elif status != 200:
                        sample.error = f"document route answered {status}"


def prepare(http: httpx.Client, sample: Sample) -> bool:
    """The victim reads the item (and its control) and finds it by search before the change."""
    if readable(http, sample.token, sample.doc_id) != 200 or readable(http, sample.token, sample.control) != 200:
        sample.error = "the victim could not read the item before the change"
        return False
    sample.searched_before = finds(http, sample.token, sample.word, sample.doc_id)
    if not sample.searched_before:
        sample.error = "the victim's search did not find the item before the change"
        return False
    return True


def check_after(http: httpx.Client, sample: Sample) -> None:
    if sample.gone_at is None:
        return
    sample.searched_after = finds(http, sample.token, sample.word, sample.doc_id)
    sample.control_after = readable(http, sample.token, sample.control)
    if sample.searched_after:
        sample.error = "gone from the document route but the victim's search still finds it"
    elif sample.control_after != 200:
        sample.error = f"the victim lost the control item too ({sample.control_after}): not a revocation of the item"


def attribute(samples: list[Sample], all_jobs: list[dict]) -> None:
    """The job of the sample's source that applied the change: the last one started before the item was
    gone that finished after the change (a webhook job may refresh the item, then run a pass)."""
    for sample in samples:
        if sample.gone_at is None:
            continue
        gone = sample.gone_at
        running = sorted((j for j in all_jobs if j["source"] == sample.product and j["started_at"]
                          and (_ts(j["started_at"]) or 0) <= gone
                          and (_ts(j["finished_at"]) or gone) >= sample.applied_at),
                         key=lambda j: j["started_at"])
        last = running[-1] if running else None
        sample.applied_by = (f"{last['kind']}{' (scheduled)' if last['params'].get('scheduled') else ''}"
                             if last else None)


def scheduler_report(all_jobs: list[dict], since: float) -> dict[str, dict]:
    out = {}
    for product in PRODUCTS:
        passes = sorted((j for j in all_jobs if j["source"] == product and j["kind"] == "permissions"
                         and j["params"].get("scheduled") and j["started_at"] and (_ts(j["created_at"]) or 0) >= since),
                        key=lambda j: j["started_at"])
        starts = [_ts(j["started_at"]) or 0 for j in passes]
        ends = [_ts(j["finished_at"]) for j in passes]
        out[product] = {"scheduled_passes": len(passes),
                        "interval_between_starts_s": stats([b - a for a, b in itertools.pairwise(starts)]),
                        "gap_from_end_to_next_start_s": stats([b - a for a, b in zip(ends, starts[1:], strict=False) if a]),
                        "pass_seconds": stats([(e - s) for s, e in zip(starts, ends, strict=True) if e]),
                        "states": dict(Counter(j["state"] for j in passes))}
    return out


def person_token(store: TokenStore, name: str, links: dict[str, str]) -> str:
    """A personal token of the person `name` (a Cairn user linked to their accounts in each realm, as an admin's
    `cairn users link` does): what they read comes from those accounts and the memberships the passes sync."""
    subject = f"sub-{name}"
    identities = IdentityStore(store.engine)
    with store.engine.begin() as conn:
        if conn.execute(users.select().where(users.c.subject == subject)).first() is None:
            now = dt.datetime.now(dt.UTC)
            conn.execute(users.insert().values(subject=subject, username=name, email=f"{name}@example.com",
                                               email_verified=False, created_at=now, last_login_at=now, groups=[]))
    for realm, account in links.items():
        identities.link(subject, realm, account, name)
    return store.create(name, [], name="revocation-bench", expires_in=dt.timedelta(days=1), subject=subject)[0]


def make_sample(org: Org, store: TokenStore, product: str, kind: str, mode: str, victim: int) -> Sample:
    """Sample number `victim`: its own item (and for GitLab its own project and guest)."""
    items = org.items[product]
    if product == "gitlab":
        project = org.projects[victim].path
        doc_id = next(d for d in items if d.startswith(f"gitlab:{project}/-/"))
        control = next(d for d in items if d.startswith(f"gitlab:{org.projects[-1].path}/-/"))
        token = person_token(store, f"guest{victim}", {"gitlab": str(user_id(f"guest{victim}"))})
    else:
        doc_id, control = items[victim * 3 + 1], items[-1]
        token = person_token(store, "victor", {"atlassian": "acc-victor", "wiki": "victor"})
    apply, event = org.tighten(product, kind, doc_id, victim)
    return Sample(product, kind, mode, doc_id, org.words[doc_id], token, control, apply, event)


def polling_phase(http: httpx.Client, poller: Poller, samples: list[Sample], spacing: float, timeout: float) -> None:
    """Sample k of each product at k × spacing (products offset by a third of it), so the changes fall at
    every point of the passes' cycle; then wait for all to be gone."""
    per_product = {p: [s for s in samples if s.product == p] for p in PRODUCTS}
    plan = sorted(((k * spacing + i * spacing / 3, s) for i, p in enumerate(PRODUCTS)
                   for k, s in enumerate(per_product[p])), key=lambda x: x[0])
    start = time.monotonic()
    for offset, sample in plan:
        time.sleep(max(0.0, start + offset - time.monotonic()))
        if not prepare(http, sample):
            continue
        sample.apply()
        sample.applied_at = time.time()
        poller.add(sample)
        print(f"  {time.monotonic() - start:6.0f} s  {sample.product}: {sample.kind} ({sample.doc_id})", file=sys.stderr)
    deadline = time.time() + timeout
    while time.time() < deadline and any(s.gone_at is None and not s.error for s in samples):
        time.sleep(1)
    for sample in samples:
        if sample.gone_at is None and not sample.error:
            sample.error = f"still readable {timeout:.0f} s after the change"
        check_after(http, sample)


def webhook_phase(http: httpx.Client, admin: dict, samples: list[Sample], timeout: float) -> dict[str, str]:
    urls = {}
    for product in PRODUCTS:
        answer = http.post(f"/v1/sources/{product}/webhook", headers=admin).json()
        urls[product] = (answer["url"], answer["secret"])
    for sample in samples:
        if not prepare(http, sample):
            continue
        url, secret = urls[sample.product]
        body, headers = sample.event
        headers = {"content-type": "application/json", **headers}
        if sample.product == "gitlab":
            headers["x-gitlab-token"] = secret
        sample.apply()
        sample.applied_at = time.time()
        resp = http.post(url, content=json.dumps(body), headers=headers)
        if resp.status_code != 202 or resp.json().get("status") not in ("queued", "merged"):
            sample.error = f"webhook answered {resp.status_code} {resp.text[:200]}"
            continue
        deadline = time.time() + timeout
        while time.time() < deadline:
            if readable(http, sample.token, sample.doc_id) == 404:
                sample.gone_at = time.time()
                break
            time.sleep(0.05)
        else:
            sample.error = f"still readable {timeout:.0f} s after the event"
        check_after(http, sample)
    return {p: u.split("?")[0] for p, (u, _) in urls.items()}


def summary(samples: list[Sample]) -> dict[str, dict]:
    return {p: {**stats([s.latency for s in samples if s.product == p and s.latency is not None and not s.error]),
                "samples": [s.as_dict() for s in samples if s.product == p]} for p in PRODUCTS}


def print_table(result: dict) -> None:
    err = sys.stderr
    cfg = result["settings"]
    print(f"\ncairn serve, permission interval {cfg['permission_sync_interval_seconds']} s, scheduler tick "
          f"{cfg['scheduler_tick_seconds']} s{' (defaults)' if cfg['defaults'] else ''}; "
          f"{result['org']['documents']} documents", file=err)
    print(f"{'source':>8} | {'polling min/median/max s':>26} | {'webhook min/median/max s':>26} | "
          f"{'pass interval s':>17} | {'idle pass: requests, per 100 docs, s':>38}", file=err)
    for p in PRODUCTS:
        pol, web, sch, idle = (result["polling"][p], result["webhook"][p], result["scheduler"][p],
                               result["idle_pass"][p])
        iv = sch["interval_between_starts_s"]
        print(f"{p:>8} | {_mmm(pol):>26} | {_mmm(web):>26} | {_mmm(iv):>17} | "
              f"{idle['requests']:>6} {idle['requests_per_100_documents']:>8} {idle['seconds']:>8.2f}", file=err)
    for mode in ("polling", "webhook"):
        for p in PRODUCTS:
            for s in result[mode][p]["samples"]:
                print(f"  {mode:>7} {p:>6} {s['kind']:<32} {s['latency_s']!s:>8} s  by {s['applied_by']}"
                      f"{'  ERROR ' + s['error'] if s['error'] else ''}", file=err)


def _mmm(s: dict) -> str:
    return "-" if not s["n"] else f"{s['min']} / {s['median']} / {s['max']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200, help="items per product (issues, tickets, pages)")
    ap.add_argument("--samples", type=int, default=5, help="polling tightenings per product")
    ap.add_argument("--webhook-samples", type=int, default=3, help="webhook tightenings per product")
    ap.add_argument("--permission-interval", type=int, default=None,
                    help="CAIRN_PERMISSION_SYNC_INTERVAL_SECONDS for the server (default: not set, the default)")
    ap.add_argument("--scheduler-tick", type=float, default=None,
                    help="CAIRN_SCHEDULER_TICK_SECONDS for the server (default: not set, the default)")
    ap.add_argument("--poll-every", type=float, default=0.5, help="seconds between the victims' reads")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    a = ap.parse_args()
    if a.docs < 3 * (a.samples + a.webhook_samples) + 3 or a.samples < 1:
        ap.error("--docs must be at least 3 x (samples + webhook samples) + 3, and --samples at least 1")
    interval = a.permission_interval if a.permission_interval is not None else _default(
        "permission_sync_interval_seconds")
    tick = a.scheduler_tick if a.scheduler_tick is not None else _default("scheduler_tick_seconds")
    env = {}
    if a.permission_interval is not None:
        env["CAIRN_PERMISSION_SYNC_INTERVAL_SECONDS"] = str(a.permission_interval)
    if a.scheduler_tick is not None:
        env["CAIRN_SCHEDULER_TICK_SECONDS"] = str(a.scheduler_tick)
    cycle = interval + tick
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its server
    sample_timeout = 2 * cycle + 300
    org = Org(a.docs, a.samples, a.webhook_samples)
    org.start()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cairn-revocation-") as tmp:
        data_dir = (a.data_dir or Path(tmp) / "data").absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        server = Server(data_dir, Path(tmp) / "server.log", env, org)
        server.add_sources()
        store = server.tokens()
        admin_token, _ = store.create("bench-admin", [], admin=True, name="revocation-bench")
        admin = {"Authorization": f"Bearer {admin_token}"}
        kinds = {p: POLLING_KINDS[p] for p in PRODUCTS}
        polling = [make_sample(org, store, p, kinds[p][k % len(kinds[p])], "polling", k)
                   for p in PRODUCTS for k in range(a.samples)]
        webhook = [make_sample(org, store, p, WEBHOOK_KINDS[p][k % len(WEBHOOK_KINDS[p])], "webhook", a.samples + k)
                   for p in PRODUCTS for k in range(a.webhook_samples)]
        store.engine.dispose()
        server.start()
        poller = Poller(server.base, a.poll_every)
        try:
            with httpx.Client(base_url=server.base, timeout=60) as http:
                print(f"first syncs of {3 * a.docs} items ...", file=sys.stderr)
                syncs = first_syncs(http, admin, timeout=1800)
                synced_at = max(_ts(j["finished_at"]) or 0 for j in syncs.values())
                wait_first_passes(http, admin, synced_at, timeout=cycle * 2 + 120)
                documents = {s["name"]: s["documents"] for s in http.get("/v1/sources", headers=admin).json()}
                print("idle permissions passes ...", file=sys.stderr)
                idle = idle_pass_cost(http, admin, org, documents)
                print(f"polling: {len(polling)} tightenings over {cycle:.0f} s ...", file=sys.stderr)
                measured_from = time.time()
                poller.thread.start()
                polling_phase(http, poller, polling, spacing=cycle / max(a.samples, 1), timeout=sample_timeout)
                poller.stopped.set()
                print(f"webhooks: {len(webhook)} tightenings ...", file=sys.stderr)
                webhook_urls = webhook_phase(http, admin, webhook, timeout=120)
                all_jobs = jobs(http, admin)
                sources = http.get("/v1/sources", headers=admin).json()
        finally:
            poller.stopped.set()
            code = server.stop()
            org.stop()
        log = server.log.read_text(errors="replace")
    attribute(polling + webhook, all_jobs)
    content_syncs = [j for j in all_jobs if j["kind"] in ("index", "reindex") and (_ts(j["created_at"]) or 0) >= measured_from]
    result = {
        "settings": {"permission_sync_interval_seconds": interval, "scheduler_tick_seconds": tick,
                     "defaults": a.permission_interval is None and a.scheduler_tick is None,
                     "server_env": sorted(["CAIRN_DATA_DIR", *env])},
        "org": {"documents": documents, "items_per_product": a.docs, "fake_page_sizes": PAGE_SIZES,
                "gitlab_projects": len(org.projects)},
        "idle_pass": idle,
        "polling": summary(polling),
        "webhook": summary(webhook),
        "webhook_urls": webhook_urls,
        "scheduler": scheduler_report(all_jobs, measured_from),
        "content_syncs_during_measurement": len(content_syncs),
        "permissions": {s["name"]: s.get("permissions") for s in sources},
        "seconds": round(time.time() - started, 1),
        "server_exit_code": code,
        "server_log_tracebacks": log.count("Traceback"),
    }
    bad = [s for s in polling + webhook if s.error or s.latency is None]
    result["errors"] = [f"{s.mode} {s.product} {s.kind}: {s.error or 'no latency'}" for s in bad]
    result["passed"] = not bad
    print_table(result)
    line = json.dumps(result)
    if a.out:
        a.out.write_text(json.dumps(result, indent=2))
    print(line)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
