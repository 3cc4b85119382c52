"""The real `cairn` command talking to a real uvicorn server with a token (CAIRN_URL/CAIRN_TOKEN)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_harness import serve, token

from api.app import create_app
from tests.conftest import KEPT_ENV

CAIRN = str(Path(sys.executable).with_name("cairn"))


@pytest.fixture(scope="module")
def url(corpus):
    with serve(create_app(corpus.settings, services=corpus)) as base:
        yield base


def cairn(*args: str, tok: str = "", url: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    env.update({"CAIRN_TOKEN": tok} if tok else {})
    env.update({"CAIRN_URL": url} if url else {})
    return subprocess.run([CAIRN, *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_search_over_http_runs_as_the_tokens_user(url, corpus):
    proc = cairn("search", "backoff delay", "--url", url, "--json", tok=token(corpus, groups=["eng"]))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert results[0]["path"] == "pkg/retry.py" and {r["source"] for r in results} <= {"eng", "web"}
    ops = cairn("search", "rollout canary", "--json", tok=token(corpus, groups=["ops"]), url=url)
    assert {r["source"] for r in json.loads(ops.stdout)["results"]} == {"ops"}


def test_sources_over_http_and_a_bad_token(url, corpus):
    proc = cairn("sources", "--json", tok=token(corpus, groups=["ops"]), url=url)
    assert proc.returncode == 0 and [s["name"] for s in json.loads(proc.stdout)] == ["ops"]
    bad = cairn("search", "x", "--url", url, "--json", tok="cairn_revoked-or-forged")
    assert bad.returncode != 0 and "401" in bad.stderr


def test_eval_through_a_server_runs_as_the_tokens_user(url, corpus, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "backoff delay", "source": "eng", "expected_paths": ["pkg/retry.py"]})
                       + "\n")
    seen = cairn("eval", str(queries), "--json", tok=token(corpus, groups=["eng"]), url=url)
    assert seen.returncode == 0, seen.stderr
    report = json.loads(seen.stdout)
    assert report["queries"] == 1 and report["metrics"]["recall@10"] == 1.0
    blind = json.loads(cairn("eval", str(queries), "--url", url, "--json", tok=token(corpus, groups=["ops"])).stdout)
    assert blind["metrics"]["recall@10"] == 0.0 and blind["misses"]  # eng is not ops's to read
