"""The real `cairn` command in a subprocess: the JSON shapes scripts and the eval harness rely on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CAIRN = str(Path(sys.executable).with_name("cairn"))


def cairn(data_dir: Path, *args: str) -> dict:
    env = {**os.environ, "CAIRN_DATA_DIR": str(data_dir)}
    env.pop("CAIRN_URL", None)
    proc = subprocess.run([CAIRN, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_index_and_search_json_shapes(tmp_path, make_repo):
    repo = make_repo("shop")
    repo.write("cart/checkout.py", "def checkout_timeout(cart):\n    raise TimeoutError('checkout timed out')\n")
    repo.write("README.md", "# Shop\n\nA tiny shop.\n")
    repo.commit()
    data = tmp_path / "data"
    summary = cairn(data, "index", str(repo.root), "--access", "public", "--json")
    assert set(summary) == {"source", "files_seen", "files_changed", "files_deleted", "files_skipped",
                            "chunks_embedded", "chunks_written", "seconds"}
    assert summary["source"] == "shop" and summary["files_changed"] == 2 and summary["chunks_embedded"] >= 2
    again = cairn(data, "index", str(repo.root), "--access", "public", "--json")
    assert (again["files_changed"], again["chunks_embedded"]) == (0, 0)
    found = cairn(data, "search", "why does checkout time out", "--limit", "5", "--source", "shop", "--json")
    first = found["results"][0]
    assert set(first) == {"source", "path", "start_line", "end_line", "symbol", "score", "snippet"}
    assert (first["source"], first["path"], first["start_line"]) == ("shop", "cart/checkout.py", 1)
    assert "checkout_timeout" in first["symbol"] and found["abstained"] is False
    nothing = cairn(data, "search", "write me a haiku about autumn", "--source", "shop", "--json")
    assert nothing == {"results": [], "abstained": True}
    vault = make_repo("vault")
    vault.write("keys.py", "def checkout_vault_rotation():\n    return 'rotate'\n")
    vault.commit()
    cairn(data, "index", str(vault.root), "--access", "group:security", "--json")
    seen = cairn(data, "search", "checkout", "--as-user", "mallory", "--json")["results"]
    assert seen and {r["source"] for r in seen} == {"shop"}
    seen = cairn(data, "search", "checkout", "--as-user", "sam", "--group", "security", "--json")["results"]
    assert {r["source"] for r in seen} == {"shop", "vault"}


def test_index_takes_a_private_repositorys_token_by_reference_only(tmp_path):
    from git_http_server import private_repo

    token = "glpat-Qp7zXn4vKmRt7kWm3qZx"
    data = tmp_path / "data"
    env = {**os.environ, "CAIRN_DATA_DIR": str(data), "REPO_TOKEN": token}
    env.pop("CAIRN_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CAIRN, *args], capture_output=True, text=True, env=env, timeout=300, check=False)

    with private_repo(tmp_path / "remote", token) as repo:
        leaked = repo.url.replace("http://", f"http://oauth2:{token}@")
        refused = run("index", leaked, "--name", "priv", "--json")
        assert refused.returncode != 0 and "--token-env" in refused.stderr and token not in refused.stderr
        done = run("index", repo.url, "--name", "priv", "--token-env", "REPO_TOKEN", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1])["files_changed"] == 1
        moved = run("sources", "set", "priv", "--location", leaked)
        assert moved.returncode != 0 and "--token-env" in moved.stdout + moved.stderr
        listed = run("sources", "--json")
        assert token not in listed.stdout + done.stdout + done.stderr + moved.stdout + moved.stderr
    for path in data.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
