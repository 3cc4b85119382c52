"""Golden tests for `locate` on the golden repository (tests/retrieval/golden/repo.txt, with commit history), a
Jira ticket and a restricted source: through the MCP server (official Python SDK client), REST and the CLI,
under each caller's ACL and within the time budget."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_harness import auth, serve, token
from test_history import commit, index, new_repo
from test_mcp import run, structured

from api.app import create_app
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.packing import estimate_tokens
from workers.jobs import run_sync_job

GOLDEN = Path(__file__).resolve().parents[1] / "retrieval" / "golden"
CAIRN = str(Path(sys.executable).with_name("cairn"))
ROOMY = 30.0  # a budget no step reaches on a loaded test machine, where every step must run
TIMEOUT_REPORT = """Passing a (connect, read) timeout tuple raises ValueError

```
>>> s = tinyhttp.Session()
>>> s.get('https://example.org', timeout=(3.05, None, 1))
Traceback (most recent call last):
  File "tinyhttp/sessions.py", line 140, in send
    r = adapter.send(request, **kwargs)
  File "tinyhttp/adapters.py", line 101, in send
    connect, read = timeout
ValueError: too many values to unpack (expected 2)
```
The error should say the timeout must be a float or a (connect, read) tuple."""
STRIP_TASK = "Make should_strip_auth treat a change of port as a change of origin."
VAULT_PY = '''def rotate_vault_keys(vault):
    """Rotate every key of the vault (the secret ops procedure)."""
    return [vault.rotate(key) for key in vault.keys()]
'''


def golden_files() -> dict[str, str]:
    files: dict[str, list[str]] = {}
    current = None
    for line in (GOLDEN / "repo.txt").read_text(encoding="utf-8").split("\n"):
        if line.startswith("=== "):
            current = line[4:].strip()
            files[current] = []
        elif current is not None:
            files[current].append(line)
    return {path: "\n".join(lines).rstrip("\n") + "\n" for path, lines in files.items()}


class World:
    """`tinyhttp` (group eng) with two commits, `vault` (group ops), and ticket HTTP-7 (group eng)."""

    def __init__(self, root: Path, embedder) -> None:
        self.settings = Settings(data_dir=root / "data", history_commits=100)
        self.services = IndexServices.open(self.settings, embedder=embedder)
        files = golden_files()
        utils = files.pop("tinyhttp/utils.py")
        repo = new_repo(root / "tinyhttp")
        commit(repo, files | {"tinyhttp/utils.py": utils.replace("def super_len(o):", "def super_len(o):  # v1")},
               "Import tinyhttp 2.4.1", 1)
        self.fix = commit(repo, {"tinyhttp/utils.py": utils}, "Measure text-mode uploads in super_len HTTP-7", 2)
        vault = new_repo(root / "vault")
        commit(vault, {"vault/rotate.py": VAULT_PY}, "Vault key rotation", 3)
        for name, location, group in (("tinyhttp", repo, "group:eng"), ("vault", vault, "group:ops")):
            self.services.catalog.upsert_source(name, "git", {"location": str(location), "ref": ""}, [group])
            run_sync_job(self.services, name)
        index(self.services, "jira", "jira", "HTTP-7", "issue", "Uploads of text files send a wrong length",
              "Files opened in text mode get a Content-Length in characters, not bytes (tinyhttp/utils.py).",
              "group:eng")
        self.repo = repo


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder):
    made = World(tmp_path_factory.mktemp("locate"), embedder)
    yield made
    made.services.close()


@pytest.fixture(scope="module")
def url(world):
    with serve(create_app(world.settings, services=world.services)) as base:
        # the first search of a process loads what later ones reuse: not part of any test's time budget
        httpx.post(base + "/v1/search", json={"query": "warm up"}, timeout=120,
                   headers=auth(token(world.services, groups=["eng"]))).raise_for_status()
        yield base


def locate(url: str, tok: str, arguments: dict):
    return run(url, tok, lambda s: s.call_tool("locate", arguments))


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content)


def paths(out: dict) -> list[str]:
    return [f"{f['source']}:{f['path']}" for f in out["files"]]


def test_a_traceback_finds_the_file_of_its_innermost_frame_first(url, world):
    result = locate(url, token(world.services, groups=["eng"]), {"query": TIMEOUT_REPORT, "budget_seconds": ROOMY})
    out = structured(result)
    first = out["files"][0]
    assert paths(out)[:2] == ["tinyhttp:tinyhttp/adapters.py", "tinyhttp:tinyhttp/sessions.py"]
    assert first["evidence"][0] == "matched traceback frame tinyhttp/adapters.py:101 (in send)"
    total = len((world.repo / "tinyhttp/adapters.py").read_text().split("\n"))
    # the frame's line and the lines around it, cut at the file's end (the report's version was longer)
    assert (first["start_line"], first["end_line"], first["symbol"]) == (101 - 12, min(101 + 12, total), "send")
    assert any(e.startswith("search rank ") for e in first["evidence"])
    assert out["truncated"] is False and out["steps"] == ["search", "frames", "errors", "definitions", "commits",
                                                          "tickets", "references"]
    lines = (world.repo / "tinyhttp/adapters.py").read_text().split("\n")[first["start_line"] - 1:first["end_line"]]
    head = f"tinyhttp:tinyhttp/adapters.py:{first['start_line']}-{first['end_line']} send\n"
    assert text_of(result).startswith(head + "Why: matched traceback frame tinyhttp/adapters.py:101 (in send); ")
    assert "\n```python\n" + "\n".join(lines) + "\n```" in text_of(result)
    assert out["tokens"] == sum(f["tokens"] for f in out["files"]) and first["tokens"] == estimate_tokens("\n".join(lines))


def test_a_task_naming_an_identifier_finds_its_definition_file(url, world):
    out = structured(locate(url, token(world.services, groups=["eng"]), {"query": STRIP_TASK, "limit": 3,
                                                                                  "budget_seconds": ROOMY}))
    first = out["files"][0]
    assert paths(out)[0] == "tinyhttp:tinyhttp/sessions.py" and len(out["files"]) <= 3
    assert "defines `should_strip_auth` named in the text" in first["evidence"]
    defined = next(i for i, line in enumerate((world.repo / "tinyhttp/sessions.py").read_text().split("\n"), 1)
                   if "def should_strip_auth" in line)
    assert first["start_line"] <= defined <= first["end_line"]


def test_similar_commits_linked_tickets_and_top_hits_are_followed(url, world):
    eng = token(world.services, groups=["eng"])
    out = structured(locate(url, eng, {"query": "Follow-up to HTTP-7: text-mode uploads still get the wrong "
                                                "Content-Length from super_len", "budget_seconds": ROOMY}))
    evidence = {f"{f['source']}:{f['path']}": f["evidence"] for f in out["files"]}
    utils = evidence["tinyhttp:tinyhttp/utils.py"]
    assert paths(out)[0] == "tinyhttp:tinyhttp/utils.py"
    assert f"changed by {world.fix[:12]}, linked to HTTP-7" in utils
    assert f"changed by commit {world.fix[:12]} “Measure text-mode uploads in super_len HTTP-7” (like the text)" in utils
    assert "defines `super_len` named in the text" in utils
    assert "path tinyhttp/utils.py named in the text of issue HTTP-7" in utils  # the ticket the search found
    digest = structured(locate(url, eng, {"query": "Digest auth: handle_401 retries with a stale nonce count",
                                           "budget_seconds": ROOMY}))
    assert any("referenced by top hit" in e for f in digest["files"] for e in f["evidence"])
    assert all(f["source"] == "tinyhttp" for f in out["files"] + digest["files"])  # files only, never the ticket


def test_a_caller_without_access_gets_nothing_from_a_restricted_source(url, world):
    query = {"query": "rotate_vault_keys fails for an empty vault", "budget_seconds": ROOMY}
    ops = structured(locate(url, token(world.services, groups=["ops"]), query))
    assert paths(ops)[0] == "vault:vault/rotate.py"
    assert "defines `rotate_vault_keys` named in the text" in ops["files"][0]["evidence"]
    for groups in (["eng"], ["sales"]):
        result = locate(url, token(world.services, groups=groups), query)
        dump = json.dumps(result.structured_content) + text_of(result)
        assert "vault/rotate.py" not in dump and "secret ops procedure" not in dump, groups
    assert structured(locate(url, token(world.services, groups=["sales"]), {"query": TIMEOUT_REPORT}))["files"] == []
    named = locate(url, token(world.services, groups=["eng"]), {**query, "sources": "vault"})
    assert named.is_error and text_of(named).endswith("The sources you can read are: jira, tinyhttp.")


def test_the_time_budget_is_honoured(url, world):
    eng = token(world.services, groups=["eng"])
    out = structured(locate(url, eng, {"query": TIMEOUT_REPORT, "budget_seconds": 0.001}))
    assert out["truncated"] is True and out["steps"] == ["search"]  # later steps never started
    assert paths(out)[0] == "tinyhttp:tinyhttp/sessions.py"  # search's own order, without the frame evidence
    bad = locate(url, eng, {"query": TIMEOUT_REPORT, "budget_seconds": 0})
    assert bad.is_error and "`budget_seconds`" in text_of(bad)


def test_max_tokens_bounds_the_code_returned(url, world):
    result = locate(url, token(world.services, groups=["eng"]), {"query": TIMEOUT_REPORT, "max_tokens": 150,
                                                                    "budget_seconds": ROOMY})
    code, _, rest = text_of(result).partition("\n\nNot shown within max_tokens=150 (open them with read_file):\n")
    assert estimate_tokens(code) <= 150 and code.startswith("tinyhttp:tinyhttp/adapters.py:")
    assert rest.startswith("tinyhttp:tinyhttp/sessions.py:")  # named, with its evidence
    assert len(structured(result)["files"]) > 2  # the structured answer keeps every file


def test_rest_route_answers_like_the_tool(url, world):
    eng = token(world.services, groups=["eng"])
    mcp = structured(locate(url, eng, {"query": STRIP_TASK}))
    resp = httpx.post(url + "/v1/locate", json={"query": STRIP_TASK}, headers=auth(eng), timeout=60)
    assert resp.status_code == 200
    body = resp.json()
    assert body["files"] == mcp["files"] and set(body) == set(mcp)
    assert httpx.post(url + "/v1/locate", json={"query": " "}, headers=auth(eng), timeout=30).status_code == 400
    assert httpx.post(url + "/v1/locate", json={"query": "x", "budget_seconds": 99}, headers=auth(eng),
                      timeout=30).status_code == 422
    assert httpx.post(url + "/v1/locate", json={"query": STRIP_TASK}, timeout=30).status_code == 401
    ops = httpx.post(url + "/v1/locate", json={"query": STRIP_TASK, "sources": ["tinyhttp"]},
                     headers=auth(token(world.services, groups=["ops"])), timeout=60)
    assert ops.status_code == 200 and ops.json()["files"] == []
    query = {"query": "test_super_len_of_bytes_io fails since HTTP-7", "path_prefix": "tests", "budget_seconds": ROOMY}
    scoped = httpx.post(url + "/v1/locate", json=query, headers=auth(eng), timeout=60).json()
    found = [f["path"] for f in scoped["files"]]
    assert found[0] == "tests/test_utils.py" and all(p.startswith("tests/") for p in found)  # not HTTP-7's file


def cli(*args: str, **env: str) -> dict:
    proc = subprocess.run([CAIRN, *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_lists_files_in_rank_order_like_search_json(url, world, tmp_path):
    eng = token(world.services, groups=["eng"])
    remote = cli("locate", TIMEOUT_REPORT, "--source", "tinyhttp", "--limit", "3", "--budget", "30", "--json",
                 "--url", url, CAIRN_TOKEN=eng)
    assert [r["path"] for r in remote["results"]][:2] == ["tinyhttp/adapters.py", "tinyhttp/sessions.py"]
    assert set(remote["results"][0]) == {"source", "path", "start_line", "end_line", "symbol", "score", "evidence",
                                         "tokens"}
    assert remote["tokens"] == sum(r["tokens"] for r in remote["results"]) and remote["truncated"] is False
    repo = new_repo(tmp_path / "shop")
    commit(repo, {"cart/checkout.py": "def checkout_timeout(cart):\n    raise TimeoutError('checkout timed out')\n",
                  "README.md": "# Shop\n"}, "Shop", 1)
    data = str(tmp_path / "data")
    cli("index", str(repo), "--access", "public", "--json", CAIRN_DATA_DIR=data, CAIRN_HISTORY_COMMITS="0")
    local = cli("locate", "checkout_timeout raises too early", "--json", CAIRN_DATA_DIR=data)
    assert local["results"][0]["path"] == "cart/checkout.py"
    assert "defines `checkout_timeout` named in the text" in local["results"][0]["evidence"]
