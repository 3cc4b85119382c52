"""Golden tests for commit documents and the `history` and `related` tools: real repositories made here, synced
by the git connector, and a Jira ticket, a GitLab merge request and Confluence pages indexed through the pipeline;
driven through the MCP server (official Python SDK client) and REST, under each caller's ACL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_harness import auth, serve, token
from test_mcp import run, structured

from api.app import create_app
from indexer.models import Access, Document
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

GITLAB_TOKEN = "glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4"
INVOICE_V1 = "def invoice_total(lines):\n    return sum(lines)\n"
INVOICE_V2 = "def invoice_total(lines):\n    return round(sum(lines) + 0.0001, 2)\n"
REFUND = "def refund(payment):\n    return -payment\n"


def git(repo: Path, *args: str, when: str = "2026-01-01T10:00:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str, day: int) -> str:
    for path, content in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(content, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, when=f"2026-01-{day:02d}T10:00:00+00:00")
    return git(repo, "rev-parse", "HEAD")


def new_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    return root


def index(services: IndexServices, source: str, kind: str, path: str, doc_kind: str, title: str, content: str,
          access: str) -> None:
    """A ticket, merge request or page indexed through the pipeline, its source's access fresh."""
    if services.catalog.get_source(source) is None:
        services.catalog.upsert_source(source, kind, {}, [access])
        services.catalog.record_permission_pass(source)
    doc = Document(id=f"{source}:{path}", source=source, path=path, content=content, version="1",
                   access=Access.of(access), kind=doc_kind, title=title, url=f"https://{source}.example.com/{path}")
    services.pipeline.apply_lexical([doc])


class World:
    def __init__(self, root: Path, embedder) -> None:
        self.settings = Settings(data_dir=root / "data", history_commits=5000)
        self.services = IndexServices.open(self.settings, embedder=embedder)
        pay = new_repo(root / "pay")
        self.initial = commit(pay, {"billing/invoice.py": INVOICE_V1, "README.md": "# pay\n"}, "Initial import", 1)
        self.rounding = commit(pay, {"billing/invoice.py": INVOICE_V2},
                               "Round invoice totals half up PAY-7\n\nSee merge request platform/billing!4", 2)
        self.rotate = commit(pay, {"config/settings.py": f'DEPLOY_TOKEN = "{GITLAB_TOKEN}"\n'},
                             f"Rotate the deploy token {GITLAB_TOKEN}", 3)
        self.refund = commit(pay, {"billing/refund.py": REFUND}, "Add refunds", 4)
        ops = new_repo(root / "ops")
        self.hotfix = commit(ops, {"deploy/run.sh": "echo deploy\n"}, "Deploy the PAY-7 hotfix", 5)
        self.pay = pay
        for name, repo, group in (("pay", pay, "group:eng"), ("ops", ops, "group:ops")):
            self.services.catalog.upsert_source(name, "git", {"location": str(repo), "ref": ""}, [group])
            run_sync_job(self.services, name)
        index(self.services, "jira", "jira", "PAY-7", "issue", "Invoice totals are off by a cent",
              "Totals are off by a cent when a line ends in .005.", "group:eng")
        index(self.services, "gl", "gitlab", "platform/billing/-/merge_requests/4", "merge_request",
              "Round invoice totals", "Closes PAY-7: rounds half up.", "group:eng")
        index(self.services, "wiki", "confluence", "ENG/123", "page", "Runbook: invoice rounding",
              "If totals drift again, see PAY-7 and the rounding change.", "group:eng")
        index(self.services, "opswiki", "confluence", "OPS/9", "page", "Ops log", "Hotfix for PAY-7 deployed.",
              "group:ops")


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder):
    made = World(tmp_path_factory.mktemp("history"), embedder)
    yield made
    made.services.close()


@pytest.fixture(scope="module")
def url(world):
    with serve(create_app(world.settings, services=world.services)) as base:
        yield base


def call(url: str, tok: str, tool: str, arguments: dict):
    return run(url, tok, lambda s: s.call_tool(tool, arguments))


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content)


def test_commits_are_indexed_documents_found_with_the_kind_filter(url, world):
    eng = token(world.services, groups=["eng"])
    found = structured(call(url, eng, "search", {"query": "round invoice totals half up", "kinds": ["commit"]}))
    assert found["hits"] and {h["kind"] for h in found["hits"]} == {"commit"}
    assert found["hits"][0]["document_id"] == f"pay:commit:{world.rounding}"
    # without `kinds` a search answers files, never commits (issue 20); naming the kind brings them back
    plain = structured(call(url, eng, "search", {"query": "round invoice totals half up", "limit": 5}))["hits"]
    assert plain and "commit" not in {h["kind"] for h in plain} and plain[0]["document_id"] == "pay:billing/invoice.py"
    rest = httpx.post(url + "/v1/search", json={"query": "round invoice totals", "kinds": ["code", "commit"]},
                      headers=auth(eng), timeout=60).json()["hits"]
    ids = {h["document_id"] for h in rest}
    assert f"pay:commit:{world.rounding}" in ids and "pay:billing/invoice.py" in ids
    assert "commit" not in {h["kind"] for h in httpx.post(url + "/v1/search", json={"query": "round invoice totals"},
                                                         headers=auth(eng), timeout=60).json()["hits"]}
    proc = subprocess.run([str(Path(sys.executable).with_name("cairn")), "search", "round invoice totals half up",
                           "--kind", "commit", "--json", "--url", url], capture_output=True, text=True, timeout=120, check=False,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}, "CAIRN_TOKEN": eng})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["path"] == f"commit:{world.rounding}"
    doc = world.services.catalog.get_document(f"pay:commit:{world.rotate}")
    assert GITLAB_TOKEN not in doc.content and "Rotate the deploy token" in doc.content  # screened like any document


def test_history_of_a_file_newest_first_with_its_hunks(url, world):
    result = call(url, token(world.services, groups=["eng"]), "history", {"path": "billing/invoice.py"})
    out = structured(result)
    assert [c["sha"] for c in out["commits"]] == [world.rounding, world.initial] and out["truncated"] is False
    newest = out["commits"][0]
    assert newest["message"] == "Round invoice totals half up PAY-7\n\nSee merge request platform/billing!4"
    assert (newest["author"], newest["date"]) == ("Ada", "2026-01-02T10:00:00+00:00")
    assert newest["references"] == ["PAY-7", "platform/billing!4"] and newest["paths"] == ["billing/invoice.py"]
    assert "-    return sum(lines)\n+    return round(sum(lines) + 0.0001, 2)" in newest["hunks"]
    assert "+def invoice_total(lines):" in out["commits"][1]["hunks"]
    text = text_of(result)
    assert text.startswith(f"pay:commit:{world.rounding[:12]} 2026-01-02T10:00:00+00:00 Ada\nReferences: PAY-7, "
                           "platform/billing!4\n```text\nRound invoice totals half up PAY-7")
    assert f"pay:billing/invoice.py in {world.rounding[:12]}\n```diff\ndiff --git a/billing/invoice.py" in text


def test_history_of_a_folder_and_of_text(url, world):
    eng = token(world.services, groups=["eng"])
    folder = structured(call(url, eng, "history", {"path": "billing/"}))
    assert [c["sha"] for c in folder["commits"]] == [world.refund, world.rounding, world.initial]
    assert "billing/refund.py" in folder["commits"][0]["hunks"]
    text = structured(call(url, eng, "history", {"text": "pay-7"}))  # any case; ops' commit is not eng's
    assert [c["sha"] for c in text["commits"]] == [world.rounding] and text["commits"][0]["hunks"] == ""
    both = structured(call(url, eng, "history", {"path": "billing", "text": "refunds"}))
    assert [c["sha"] for c in both["commits"]] == [world.refund]
    assert structured(call(url, eng, "history", {"path": "nowhere.py"}))["commits"] == []


def test_history_hunks_stay_within_max_tokens(url, world):
    result = call(url, token(world.services, groups=["eng"]), "history", {"path": "billing/", "max_tokens": 100})
    out = structured(result)
    assert out["truncated"] is True and len(out["commits"]) == 3  # every commit keeps its message
    assert sum(len(c["hunks"]) for c in out["commits"]) <= 400 and out["commits"][-1]["hunks"] == ""
    assert "Diff hunks were cut to stay within max_tokens=100" in text_of(result)


def test_history_screens_messages_and_hunks_for_secrets(url, world):
    eng = token(world.services, groups=["eng"])
    for arguments in ({"text": "rotate the deploy"}, {"path": "config/settings.py"}):
        result = call(url, eng, "history", arguments)
        out = structured(result)
        assert [c["sha"] for c in out["commits"]] == [world.rotate]
        dump = json.dumps(out) + text_of(result)
        assert GITLAB_TOKEN not in dump and "Rotate the deploy token" in dump
    assert "DEPLOY_TOKEN" in out["commits"][0]["hunks"]


def test_related_links_a_jira_key_to_its_mr_commits_files_and_pages(url, world):
    out = structured(call(url, token(world.services, groups=["eng"]), "related", {"item": "PAY-7"}))
    linked = [(i["kind"], i["document_id"]) for i in out["items"]]
    assert linked == [("issue", "jira:PAY-7"), ("merge_request", "gl:platform/billing/-/merge_requests/4"),
                      ("commit", f"pay:commit:{world.rounding}"), ("page", "wiki:ENG/123"),
                      ("code", "pay:billing/invoice.py")]
    via = {i["document_id"]: i["via"] for i in out["items"]}
    assert via["jira:PAY-7"] == "is PAY-7" and via["wiki:ENG/123"] == "mentions PAY-7"
    assert via["pay:billing/invoice.py"] == f"changed by {world.rounding[:12]}"
    assert out["items"][0]["url"] == "https://jira.example.com/PAY-7" and out["keys"][:2] == ["PAY-7",
                                                                                          "platform/billing!4"]


def test_related_from_a_commit_a_file_and_a_merge_request(url, world):
    eng = token(world.services, groups=["eng"])
    from_commit = structured(call(url, eng, "related", {"item": world.rounding[:8]}))
    assert {i["document_id"] for i in from_commit["items"]} == {
        "jira:PAY-7", "gl:platform/billing/-/merge_requests/4", "wiki:ENG/123", "pay:billing/invoice.py"}
    from_file = structured(call(url, eng, "related", {"item": "pay:billing/invoice.py"}))
    assert {(i["kind"], i["document_id"]) for i in from_file["items"]} >= {
        ("commit", f"pay:commit:{world.rounding}"), ("commit", f"pay:commit:{world.initial}"),
        ("issue", "jira:PAY-7"), ("merge_request", "gl:platform/billing/-/merge_requests/4")}
    from_mr = structured(call(url, eng, "related", {"item": "platform/billing!4"}))
    assert ("commit", f"pay:commit:{world.rounding}") in {(i["kind"], i["document_id"]) for i in from_mr["items"]}
    assert "jira:PAY-7" in {i["document_id"] for i in from_mr["items"]}
    from_page = structured(call(url, eng, "related", {"item": "wiki:ENG/123"}))
    assert {"jira:PAY-7", f"pay:commit:{world.rounding}", "pay:billing/invoice.py"} <= \
        {i["document_id"] for i in from_page["items"]}
    assert "wiki:ENG/123" not in {i["document_id"] for i in from_page["items"]}  # not linked to itself


def test_a_caller_without_access_gets_nothing(url, world):
    ops = token(world.services, groups=["ops"])
    out = structured(call(url, ops, "related", {"item": "PAY-7"}))
    assert {i["document_id"] for i in out["items"]} == {f"ops:commit:{world.hotfix}", "ops:deploy/run.sh",
                                                         "opswiki:OPS/9"}
    nobody = token(world.services, groups=["sales"])
    for tool, arguments in (("history", {"path": "billing/invoice.py"}), ("history", {"text": "invoice"}),
                            ("history", {"path": "deploy/"}), ("related", {"item": "PAY-7"})):
        result = call(url, nobody, tool, arguments)
        dump = json.dumps(result.structured_content) + text_of(result)
        assert not result.is_error and "invoice_total" not in dump and "PAY-7 hotfix" not in dump, tool
        assert structured(result).get("commits", structured(result).get("items")) == [], tool
    unreadable = call(url, nobody, "related", {"item": "pay:billing/invoice.py"})
    assert unreadable.is_error and text_of(unreadable) == text_of(call(url, nobody, "related", {"item": "pay:nope.py"}))
    refused = call(url, nobody, "related", {"item": world.rounding[:8]})
    assert refused.is_error and "no indexed commit" in text_of(refused)
    named = call(url, nobody, "history", {"path": "billing/", "sources": "pay"})
    assert named.is_error and "The sources you can read are: none." in text_of(named)


def test_bad_arguments_are_short_errors(url, world):
    eng = token(world.services, groups=["eng"])
    for tool, arguments, message in (("history", {}, "give a `path`"), ("history", {"path": "../etc"}, "bad path"),
                                     ("related", {"item": "what is this"}, "give a Jira key")):
        result = call(url, eng, tool, arguments)
        assert result.is_error and message in text_of(result) and "Traceback" not in text_of(result)


def test_rest_routes_answer_like_the_tools(url, world):
    eng = auth(token(world.services, groups=["eng"]))
    resp = httpx.get(url + "/v1/history", params={"path": "billing/invoice.py", "max_tokens": 2000}, headers=eng)
    assert resp.status_code == 200 and [c["sha"] for c in resp.json()["commits"]] == [world.rounding, world.initial]
    resp = httpx.get(url + "/v1/related", params={"item": "PAY-7"}, headers=eng)
    assert resp.status_code == 200 and resp.json()["items"][0]["document_id"] == "jira:PAY-7"
    assert httpx.get(url + "/v1/history", headers=eng).status_code == 400
    nobody = auth(token(world.services, groups=["sales"]))
    assert httpx.get(url + "/v1/history", params={"text": "invoice"}, headers=nobody).json()["commits"] == []
    assert httpx.get(url + "/v1/history", params={"text": "invoice"}).status_code == 401


def test_a_later_sync_reads_only_the_new_commit(world):
    later = commit(world.pay, {"billing/tax.py": "RATE = 0.2\n"}, "Add tax rate PAY-8", 6)
    counts = run_sync_job(world.services, "pay")
    versions = world.services.catalog.document_versions("pay")
    assert f"pay:commit:{later}" in versions and f"pay:commit:{world.initial}" in versions
    assert counts.files_changed == 2  # the new file and the new commit, nothing read again


def test_a_withheld_diff_never_names_a_credential_in_its_path(tmp_path, monkeypatch):
    """A file whose name holds a token is withheld from the hunks under its redacted path (the name itself
    would hand the token out)."""
    from indexer.catalog import open_catalog
    from indexer.secrets.screen import SecretScreen
    from retrieval.history import CommitHit, HistoryIndex

    name = f"deploy/{GITLAB_TOKEN}.txt"
    patch = (f"diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+x\n"
             "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")

    class Reader:
        def diff(self, sha: str, path: str) -> str:
            return patch

    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    catalog.upsert_source("pay", "git", {"location": str(tmp_path), "ref": ""}, ["group:eng"])
    index = HistoryIndex(catalog, None, Settings(data_dir=tmp_path), SecretScreen())  # type: ignore[arg-type]
    index._readers["pay"] = Reader()  # type: ignore[assignment]
    hit = CommitHit(document_id="pay:commit:abc", source="pay", sha="abc", date="", author="", message="m",
                    url="", references=[], paths=[])
    shown = index._screened_patch(hit, "deploy")
    assert GITLAB_TOKEN not in shown and "is withheld: secret_path" in shown and "+a = 2" in shown
