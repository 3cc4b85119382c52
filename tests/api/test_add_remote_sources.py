"""`POST /v1/sources` for GitLab, Jira and Confluence: stored exactly as the same entry of a sources file
(the CLI's and the file's validation, one code path), bad input refused field by field with short messages,
a credential written into the request refused (422) and found nowhere, and admins only."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import TokenStore
from connectors.config import parse_source
from workers.maintenance import intervals

SECRET = "glpat-Zr8qLw3vNx6TbK1sHy4m"


@pytest.fixture
def client(settings, services):
    with TestClient(create_app(settings, services=services)) as c:
        yield c


def auth(services, admin: bool = True) -> dict[str, str]:
    tok = TokenStore(services.catalog.engine).create("root" if admin else "alice", ["eng"], admin=admin)[0]
    return {"Authorization": f"Bearer {tok}"}


# (API body, the same source as a sources-file entry): `access` is the file's default_access, a project's or
# space's own readers the file's `access`
GOOD = {
    "gitlab": ({"name": "gl", "kind": "gitlab", "url": "https://gitlab.example.com/", "group": "platform",
                "token_env": "GITLAB_TOKEN", "internal_principal": "group:staff", "issues": False,
                "access": ["group:eng"]},
               {"name": "gl", "kind": "gitlab", "url": "https://gitlab.example.com", "group": "platform",
                "token_env": "GITLAB_TOKEN", "internal_principal": "group:staff", "issues": False,
                "default_access": ["group:eng"]}),
    "jira": ({"name": "tickets", "kind": "jira", "url": "https://example.atlassian.net", "username": "bot@example.com",
              "token_file": "/run/secrets/jira", "projects": ["SHOP"], "project_access": {"SHOP": ["group:shop"]},
              "custom_fields": {"customfield_10010": "Team"}, "access": ["group:eng", "group:support"]},
             {"name": "tickets", "kind": "jira", "url": "https://example.atlassian.net", "username": "bot@example.com",
              "token_file": "/run/secrets/jira", "projects": ["SHOP"], "access": {"SHOP": ["group:shop"]},
              "custom_fields": {"customfield_10010": "Team"}, "default_access": ["group:eng", "group:support"]}),
    "confluence": ({"name": "wiki", "kind": "confluence", "url": "https://wiki.example.com", "token_env": "WIKI",
                    "spaces": ["ENG", "OPS"], "blogposts": False, "space_access": {"OPS": ["group:ops"]}},
                   {"name": "wiki", "kind": "confluence", "url": "https://wiki.example.com", "token_env": "WIKI",
                    "spaces": ["ENG", "OPS"], "blogposts": False, "access": {"OPS": ["group:ops"]}}),
}


@pytest.mark.parametrize("kind", GOOD)
def test_each_kind_is_stored_as_its_sources_file_entry_would_be(client, services, kind):
    body, entry = GOOD[kind]
    admin = auth(services)
    added = client.post("/v1/sources", json=body | {"interval": "30m"}, headers=admin)
    assert added.status_code == 201, added.text
    shown = added.json()
    expected = parse_source(entry)
    assert (shown["kind"], shown["access"], shown["location"]) == (kind, expected.default_access, expected.location())
    row = services.catalog.get_source(body["name"])
    assert row.config == expected.catalog_config() and list(row.access) == expected.default_access
    assert intervals(services.catalog) == {body["name"]: 1800}
    listed = {s["name"]: s for s in client.get("/v1/sources", headers=admin).json()}
    assert listed[body["name"]]["access"] == expected.default_access
    again = client.post("/v1/sources", json=body, headers=admin)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


def _problems(response) -> list[tuple[list, str]]:
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"
    return [(p["loc"], p["msg"]) for p in response.json()["detail"]]


JIRA = {"name": "j", "kind": "jira", "url": "https://jira.example.com", "projects": ["SHOP"]}
BAD = [  # (body, where, what the message says)
    ({"name": "g", "kind": "gitlab", "url": "https://gitlab.example.com"}, ["body", "gitlab"],
     "give either group or projects"),
    ({"name": "g", "kind": "gitlab", "url": "https://gitlab.example.com", "group": "a", "projects": ["b"]},
     ["body", "gitlab"], "give either group or projects"),
    (JIRA | {"projects": [], "jql": "project = SHOP ORDER BY created"}, ["body", "jira"], "ORDER BY"),
    (JIRA | {"url": "ftp://jira.example.com"}, ["body", "jira", "url"], "not an http(s) URL"),
    (JIRA | {"url": "https://bot:hunter2@jira.example.com"}, ["body", "jira", "url"], "must not contain credentials"),
    (JIRA | {"access": ["team:x"]}, ["body", "jira", "access"], "bad principal 'team:x'"),
    (JIRA | {"project_access": {"SHOP": ["team:y"]}}, ["body", "jira", "project_access"], "bad principal 'team:y'"),
    (JIRA | {"permissions": "maybe"}, ["body", "jira", "permissions"], "'source' or 'config'"),
    (JIRA | {"token_env": "JIRA TOKEN"}, ["body", "jira", "token_env"], "not an environment variable name"),
    (JIRA | {"token_env": "A", "token_file": "/b"}, ["body", "jira"], "token_env or token_file, not both"),
    (JIRA | {"projekts": ["X"]}, ["body", "jira", "projekts"], "Extra inputs are not permitted"),
    (JIRA | {"default_access": ["public"]}, ["body", "jira", "default_access"], "give access"),
    (JIRA | {"interval": "soon"}, ["body", "jira", "interval"], "not a duration"),
    (JIRA | {"name": "bad name!"}, ["body", "jira", "name"], "should match pattern"),
    ({"name": "w", "kind": "confluence", "url": "https://wiki.example.com"}, ["body", "confluence", "spaces"],
     "Field required"),
    ({"name": "w", "kind": "confluence", "url": "https://wiki.example.com", "spaces": ["A"],
      "project_access": {"A": ["public"]}}, ["body", "confluence", "project_access"], "Extra inputs"),
    ({"name": "s", "kind": "svn", "url": "https://svn.example.com"}, ["body"], "kind must be one of git, gitlab"),
    ({"name": "s", "kind": "jira"}, ["body", "jira", "url"], "Field required"),
]


@pytest.mark.parametrize(("body", "where", "says"), BAD)
def test_bad_definitions_get_a_short_422_naming_the_field(client, services, body, where, says):
    problems = _problems(client.post("/v1/sources", json=body, headers=auth(services)))
    assert any(loc == where and says in msg for loc, msg in problems), problems
    assert all(len(msg) < 240 and "Traceback" not in msg for _, msg in problems)
    assert "hunter2" not in str(problems)
    assert services.catalog.list_sources() == []


@pytest.mark.parametrize("body", [GOOD["gitlab"][0], GOOD["jira"][0], GOOD["confluence"][0],
                                  {"name": "repo", "location": "https://git.example.com/repo.git"}])
@pytest.mark.parametrize("field", ["token", "password"])
def test_a_credential_in_the_request_is_refused_and_found_nowhere(client, services, caplog, capfd, body, field):
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/sources", json=body | {field: SECRET}, headers=auth(services))
    ((loc, msg),) = _problems(response)
    kind = body.get("kind", "git")
    assert loc == ["body", kind] and msg.startswith(f"{field}: credentials are never written")
    assert "token_env" in msg and "token_file" in msg and "environment variable" in msg
    assert SECRET not in response.text and services.catalog.get_source(body["name"]) is None
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err


@pytest.mark.parametrize("body", [GOOD[k][0] for k in GOOD] + [{"name": "repo", "location": "/srv/repo"}])
def test_only_admins_add_sources(client, services, body):
    assert client.post("/v1/sources", json=body).status_code == 401
    refused = client.post("/v1/sources", json=body, headers=auth(services, admin=False))
    assert refused.status_code == 403 and refused.json()["error"] == "Forbidden"
    assert services.catalog.list_sources() == []


def test_the_cli_and_the_api_store_the_same_source(client, services, tmp_path, monkeypatch):
    """`cairn sources add jira` with the options of a POST body stores the same row (one code path)."""
    from typer.testing import CliRunner

    from api.cli import app
    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine

    body = GOOD["jira"][0]
    assert client.post("/v1/sources", json=body, headers=auth(services)).status_code == 201
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.delenv("CAIRN_URL", raising=False)
    result = CliRunner().invoke(app, [
        "sources", "add", "jira", "--name", "tickets", "--url", body["url"], "--username", body["username"],
        "--token-file", body["token_file"], "--project", "SHOP", "--project-access", "SHOP=group:shop",
        "--custom-field", "customfield_10010=Team", "--access", "group:support", "--access", "group:eng"])
    assert result.exit_code == 0, result.output
    cli_row = Catalog(make_engine(f"sqlite:///{tmp_path / 'cli' / 'catalog.sqlite3'}")).get_source("tickets")
    api_row = services.catalog.get_source("tickets")
    assert (cli_row.kind, cli_row.config, cli_row.access) == (api_row.kind, api_row.config, api_row.access)
    refused = CliRunner().invoke(app, ["sources", "add", "jira", "--name", "x", "--url", body["url"],
                                       "--project", "A", "--access", "team:x"])
    assert refused.exit_code == 2 and "access: bad principal 'team:x'" in refused.output


def test_a_git_source_takes_its_interval_and_refuses_unknown_keys(client, services, make_repo):
    repo = make_repo("handbook")
    repo.write("README.md", "# Handbook\n")
    repo.commit()
    admin = auth(services)
    body = {"name": "handbook", "location": str(repo.root), "access": ["group:eng"]}
    ((loc, msg),) = _problems(client.post("/v1/sources", json=body | {"locaton": "/srv/x"}, headers=admin))
    assert loc == ["body", "git", "locaton"] and "Extra inputs" in msg  # a typo is not silently dropped
    ((loc, msg),) = _problems(client.post("/v1/sources", json=body | {"interval": "-1h"}, headers=admin))
    assert loc == ["body", "git", "interval"] and "not a duration" in msg
    assert services.catalog.list_sources() == []
    assert client.post("/v1/sources", json=body | {"interval": "2h"}, headers=admin).status_code == 201
    assert intervals(services.catalog) == {"handbook": 7200}
