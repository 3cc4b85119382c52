"""`cairn sources` (list), `cairn sources add gitlab|jira|confluence` and `cairn sources load FILE.yaml`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from indexer.catalog import Catalog
from indexer.catalog.db import make_engine

EXAMPLE = Path(__file__).resolve().parents[2] / "infra" / "sources.example.yaml"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CAIRN_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result
    run.catalog = lambda: Catalog(make_engine(f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}"))
    return run


def test_add_sources_and_list_them(cli, monkeypatch):
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-never-stored")
    added = json.loads(cli("sources", "add", "gitlab", "--name", "gl", "--url", "https://gitlab.example.com",
                           "--token-env", "GITLAB_TOKEN", "--group", "platform", "--internal-principal",
                           "group:staff", "--json").stdout)
    assert added == {"name": "gl", "kind": "gitlab", "location": "https://gitlab.example.com/platform", "access": []}
    cli("sources", "add", "jira", "--name", "jira", "--url", "https://example.atlassian.net", "--username",
        "bot@example.com", "--token-env", "JIRA_TOKEN", "--project", "SHOP", "--project-access", "SHOP=group:shop",
        "--custom-field", "customfield_10010=Team")
    cli("sources", "add", "confluence", "--name", "wiki", "--url", "https://wiki.example.com", "--token-file",
        "/run/secrets/wiki", "--space", "ENG", "--space", "OPS", "--access", "group:staff")
    rows = {r["name"]: r for r in json.loads(cli("sources", "--json").stdout)}
    assert {n: r["kind"] for n, r in rows.items()} == {"gl": "gitlab", "jira": "jira", "wiki": "confluence"}
    assert rows["wiki"]["access"] == ["group:staff"] and rows["gl"]["documents"] == 0
    stored = cli.catalog().get_source("jira").config
    assert stored["access"] == {"SHOP": ["group:shop"]} and stored["custom_fields"] == {"customfield_10010": "Team"}
    assert "glpat-never-stored" not in str(cli.catalog().get_source("gl").config)
    assert "gl" in cli("sources").stdout  # the table without --json


def test_bad_definitions_are_refused(cli):
    cli("sources", "add", "gitlab", "--name", "ok", "--url", "https://gitlab.example.com", "--group", "g")
    out = cli("sources", "add", "gitlab", "--name", "gl", "--url", "https://bot:glpat-123@gitlab.example.com",
              "--group", "g", code=2).output
    assert "must not contain credentials" in out and "glpat-123" not in out
    cli("sources", "add", "jira", "--name", "j", "--url", "https://jira.example.com", "--project-access", "nokey",
        "--project", "A", code=2)
    assert [r.name for r in cli.catalog().list_sources()] == ["ok"]


def test_load_a_sources_file(cli, tmp_path):
    rows = json.loads(cli("sources", "load", str(EXAMPLE), "--json").stdout)
    assert [(r["name"], r["kind"]) for r in rows] == [("gitlab", "gitlab"), ("jira", "jira"), ("wiki", "confluence")]
    again = json.loads(cli("sources", "load", str(EXAMPLE), "--json").stdout)  # loading twice updates in place
    assert again == rows and len(cli.catalog().list_sources()) == 3
    clash = tmp_path / "clash.yaml"
    clash.write_text("sources:\n  - {name: gitlab, kind: jira, url: 'https://j.example', projects: [A]}\n")
    assert "exists with kind 'gitlab'" in cli("sources", "load", str(clash), code=2).output


def test_add_with_an_interval_schedules_the_source_and_a_bad_interval_stores_nothing(cli):
    from workers.maintenance import intervals

    cli("sources", "add", "jira", "--name", "tickets", "--url", "https://example.atlassian.net",
        "--token-env", "JIRA_TOKEN", "--project", "SHOP", "--interval", "30m")
    cli("sources", "add", "confluence", "--name", "wiki", "--url", "https://wiki.example.com",
        "--token-env", "WIKI_TOKEN", "--space", "ENG", "--interval", "0")
    cli("sources", "add", "confluence", "--name", "docs", "--url", "https://wiki.example.com",
        "--token-env", "WIKI_TOKEN", "--space", "DOC")
    assert intervals(cli.catalog()) == {"tickets": 1800, "wiki": 0}  # docs: the default interval
    refused = cli("sources", "add", "jira", "--name", "later", "--url", "https://example.atlassian.net",
                  "--token-env", "JIRA_TOKEN", "--project", "OPS", "--interval", "soon", code=2)
    assert "not a duration" in refused.output and cli.catalog().get_source("later") is None
