"""`cairn sources set|remove` and `cairn index` on an existing source, in-process and against a server:
changed options are applied (never ignored) or refused with a non-zero exit."""
from __future__ import annotations

import json

import pytest
from api_harness import build_corpus, git_repo, serve, token
from test_remote_cli import cairn
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from indexer.models import Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.searcher import build_searcher

RETRY = "def retry_with_backoff(call):\n    return call()\n"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CAIRN_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, code: int = 0, stdin: str | None = None):
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exit_code == code, result.output
        return result
    return run


def readers(settings: Settings, embedder, source: str, groups: list[str]) -> set[str]:
    """Which of these groups find the source's retry function (one search per group)."""
    services = IndexServices.open(settings, embedder=embedder)
    try:
        searcher = build_searcher(services)
        found = {g for g in groups if any(h.source == source for h in searcher.search(
            "retry with backoff", Principal("u", frozenset({g}))).hits)}
        searcher.close()
        return found
    finally:
        services.close()


def test_in_process_index_applies_changed_options_and_set_and_remove_work(cli, tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data")
    repo = git_repo(tmp_path / "repo", {"pkg/retry.py": RETRY})
    first = cli("index", str(repo), "--name", "r")
    assert "only admins will read it" in first.output
    assert readers(settings, embedder, "r", ["a", "b"]) == set()
    changed = cli("index", str(repo), "--name", "r", "--access", "group:a", "--json")
    assert "changed access" in changed.output and "only admins" not in changed.output
    assert readers(settings, embedder, "r", ["a", "b"]) == {"a"}
    kept = cli("index", str(repo), "--name", "r", "--json")  # no --access: the list is kept
    assert "changed access" not in kept.output and readers(settings, embedder, "r", ["a", "b"]) == {"a"}
    result = json.loads(cli("sources", "set", "r", "--access", "group:b", "--interval", "2h", "--json").stdout)
    assert result["changed"] == ["access", "interval"] and result["access"]["chunks_embedded"] == 0
    assert readers(settings, embedder, "r", ["a", "b"]) == {"b"}
    assert "http(s) clone URLs only" in cli("sources", "set", "r", "--token-env", "TOKEN", code=2).output  # a local path
    assert "nothing to change" in cli("sources", "set", "r", code=2).output
    assert "no source named" in cli("sources", "set", "nope", "--no-access", code=1).output
    assert "not removed" in cli("sources", "remove", "r", stdin="n\n", code=1).output
    removed = json.loads(cli("sources", "remove", "r", "--yes", "--json").stdout)["removed"]
    assert removed["documents"] == 1 and removed["schedule"] == 1
    assert json.loads(cli("sources", "--json").stdout) == []
    assert readers(settings, embedder, "r", ["a", "b"]) == set()


def test_in_process_set_changes_a_remote_sources_credential_reference(cli, tmp_path):
    cli("sources", "add", "gitlab", "--name", "gl", "--url", "https://gitlab.example.com", "--group", "g",
        "--token-env", "GITLAB_TOKEN")
    result = json.loads(cli("sources", "set", "gl", "--token-file", "/run/secrets/gl", "--json").stdout)
    assert result["changed"] == ["token_env", "token_file"] and "sync" not in result
    services = IndexServices.open(Settings(data_dir=tmp_path / "data"))
    try:
        config = services.catalog.get_source("gl").config
    finally:
        services.close()
    assert config["token_file"] == "/run/secrets/gl" and config["token_env"] == ""
    refused = cli("sources", "set", "gl", "--location", "https://bot:glpat-1@gitlab.example.com", code=2).output
    assert "must not contain credentials" in " ".join(refused.split()) and "glpat-1" not in refused


@pytest.fixture
def server(tmp_path, embedder):
    _, services = build_corpus(tmp_path, embedder)
    with serve(create_app(services.settings, services=services)) as base:
        yield base, services
    services.close()


def test_remote_index_on_an_existing_source_applies_changed_options_or_fails(server):
    base, services = server
    admin = token(services, admin=True)
    location = services.catalog.get_source("eng").config["location"]
    proc = cairn("index", location, "--name", "eng", "--access", "group:new", "--json", tok=admin, url=base)
    assert proc.returncode == 0, proc.stderr
    assert "changed access" in proc.stderr and services.catalog.get_source("eng").access == ("group:new",)
    assert json.loads(proc.stdout)["files_changed"] == 0  # the access job rewrote them; the sync had nothing to do
    reader = token(services, groups=["new"])
    denied = cairn("index", location, "--name", "eng", "--access", "group:other", tok=reader, url=base)
    assert denied.returncode != 0 and "403" in denied.stderr
    assert services.catalog.get_source("eng").access == ("group:new",)
    services.catalog.upsert_source("gl", "gitlab", {"url": "https://gitlab.example.com", "group": "g"}, [])
    wrong = cairn("index", location, "--name", "gl", "--access", "group:x", tok=admin, url=base)
    assert wrong.returncode != 0 and "not a git repository" in wrong.stderr


def test_remote_sources_set_and_remove(server):
    base, services = server
    admin = token(services, admin=True)
    proc = cairn("sources", "set", "ops", "--access", "group:eng", "--json", tok=admin, url=base)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["changed"] == ["access"] and result["jobs"]["access"]["chunks_embedded"] == 0
    bad = cairn("sources", "set", "ops", "--access", "team:x", tok=admin, url=base)
    assert bad.returncode != 0 and "team:x" in bad.stderr
    gone = cairn("sources", "remove", "ops", "--yes", "--json", tok=admin, url=base)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["removed"]["documents"] == 1 and services.catalog.get_source("ops") is None
    again = cairn("sources", "remove", "ops", "--yes", tok=admin, url=base)
    assert again.returncode != 0 and "no source named 'ops'" in again.stderr
