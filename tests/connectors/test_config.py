"""Source configuration: YAML loading, validation, credentials by reference only, catalog round trip."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from connectors.base import AuthFailed
from connectors.config import (
    ConfluenceSource,
    GitLabSource,
    JiraSource,
    SourceConfigError,
    from_catalog,
    load_sources,
    parse_source,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "infra" / "sources.example.yaml"
GITLAB = {"name": "gl", "kind": "gitlab", "url": "https://gitlab.example.com/", "group": "platform",
          "token_env": "GITLAB_TOKEN"}


def test_the_example_file_is_valid():
    sources = load_sources(EXAMPLE)
    assert [type(s) for s in sources] == [GitLabSource, JiraSource, ConfluenceSource]
    assert sources[1].cloud and sources[2].cloud and sources[0].location() == "https://gitlab.example.com/platform"


@pytest.mark.parametrize("change, message", [
    ({"token": "glpat-123"}, "never written in configuration"),
    ({"password": "x"}, "never written in configuration"),
    ({"url": "https://bot:glpat-123@gitlab.example.com"}, "must not contain credentials"),
    ({"url": "ftp://gitlab.example.com"}, "not an http(s) URL"),
    ({"token_env": "NOT A NAME"}, "not an environment variable name"),
    ({"token_file": "/run/secrets/gl"}, "not both"),
    ({"projects": ["a/b"]}, "either group or projects"),
    ({"group": ""}, "either group or projects"),
    ({"name": "bad name!"}, "name"),
    ({"default_access": ["everyone"]}, "bad principal"),
    ({"internal_principal": "staff"}, "bad principal"),
    ({"kind": "svn"}, "kind"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_definitions_are_explained(change, message):
    with pytest.raises(SourceConfigError) as caught:
        parse_source({**GITLAB, **change})
    assert message in str(caught.value)
    assert "glpat-123" not in str(caught.value) or "token" in change


def test_jira_and_confluence_rules():
    with pytest.raises(SourceConfigError, match="projects and/or jql"):
        parse_source({"name": "j", "kind": "jira", "url": "https://jira.example.com"})
    with pytest.raises(SourceConfigError, match="ORDER BY"):
        parse_source({"name": "j", "kind": "jira", "url": "https://jira.example.com", "jql": "a = b order by c"})
    with pytest.raises(SourceConfigError, match="spaces"):
        parse_source({"name": "w", "kind": "confluence", "url": "https://wiki.example.com", "spaces": []})
    jira = parse_source({"name": "j", "kind": "jira", "url": "https://jira.example.com", "projects": ["A"],
                         "access": {"A": ["group:a"]}, "default_access": ["group:all"]})
    assert not jira.cloud and jira.configured_access("A") == ["group:a"]
    assert jira.configured_access("B") == ["group:all"]


def test_tokens_are_read_at_use_from_env_or_file(tmp_path, monkeypatch):
    config = parse_source(GITLAB)
    with pytest.raises(AuthFailed, match="GITLAB_TOKEN is not set"):
        config.token()
    monkeypatch.setenv("GITLAB_TOKEN", " glpat-abc \n")
    assert config.token() == "glpat-abc"
    secret = tmp_path / "token"
    secret.write_text("file-token\n")
    from_file = parse_source({**GITLAB, "token_env": "", "token_file": str(secret)})
    assert from_file.token() == "file-token"
    with pytest.raises(AuthFailed, match="cannot read token_file"):
        parse_source({**GITLAB, "token_env": "", "token_file": str(tmp_path / "missing")}).token()


def test_catalog_round_trip_stores_no_secret(monkeypatch):
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-abc")
    config = parse_source({**GITLAB, "default_access": ["group:dev"]})
    stored = config.catalog_config()
    assert "glpat-abc" not in str(stored) and stored["token_env"] == "GITLAB_TOKEN"
    row = SimpleNamespace(name="gl", kind="gitlab", config=stored, access=["group:dev"])
    assert from_catalog(row) == config


def test_load_reports_file_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{name: a, kind: gitlab, url: 'https://g.example', group: x}, "
                   "{name: a, kind: gitlab, url: 'https://g.example', group: y}]")
    with pytest.raises(SourceConfigError, match="duplicate source names: a"):
        load_sources(bad)
    bad.write_text("sources: {}")
    with pytest.raises(SourceConfigError, match="top-level `sources:` list"):
        load_sources(bad)
    bad.write_text("sources: [\n")
    with pytest.raises(SourceConfigError, match="not valid YAML"):
        load_sources(bad)
    bad.write_text("sources:\n  - {name: w, kind: confluence, url: 'https://w.example'}\n")
    with pytest.raises(SourceConfigError, match=r"sources\[0\].*spaces"):
        load_sources(bad)
