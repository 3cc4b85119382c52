"""A private git repository added, synced and changed through a running server: the token is given by
reference (`token_env`), a URL with credentials is refused everywhere, and the token appears in no catalog
byte, API answer, log line or file under the data directory; `location` is shown to admins only."""
from __future__ import annotations

import logging

import httpx
import pytest
from api_harness import auth, build_corpus, serve, token
from git_http_server import private_repo
from test_source_lifecycle import wait_job

from api.app import create_app

TOKEN = "glpat-Hv4nBq8sLpXw2Zq8mK3t"


@pytest.fixture
def server(tmp_path, embedder):
    _, services = build_corpus(tmp_path, embedder)
    with private_repo(tmp_path / "remote", TOKEN) as repo, serve(create_app(services.settings, services=services)) as base:
        yield base, services, repo
    services.close()


def _no_trace(services, text: str) -> None:
    """The token is in no file under the data directory (catalog, its WAL, clones, indexes)."""
    for path in services.settings.data_dir.rglob("*"):
        if path.is_file():
            assert text.encode() not in path.read_bytes(), path


def test_a_private_repository_by_token_reference_leaves_no_trace(server, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    base, services, repo = server
    admin, reader = token(services, admin=True), token(services, groups=["eng"])
    monkeypatch.setenv("REPO_TOKEN", TOKEN)
    leaked = repo.url.replace("http://", f"http://oauth2:{TOKEN}@")
    refused = httpx.post(f"{base}/v1/sources", json={"name": "priv", "location": leaked}, headers=auth(admin))
    assert refused.status_code == 400 and "--token-env" in refused.text and TOKEN not in refused.text
    assert services.catalog.get_source("priv") is None
    added = httpx.post(f"{base}/v1/sources", json={"name": "priv", "location": repo.url, "token_env": "REPO_TOKEN",
                                                   "access": ["group:eng"]}, headers=auth(admin))
    assert added.status_code == 201, added.text
    job = httpx.post(f"{base}/v1/sources/priv/reindex", headers=auth(admin)).json()
    assert wait_job(base, admin, job["id"])["state"] == "succeeded"
    assert set(services.catalog.document_versions("priv")) == {"priv:app.py"} and repo.authorized
    # a PATCH with credentials in the URL is refused; a new reference is taken and synced
    bad = httpx.patch(f"{base}/v1/sources/priv", json={"location": leaked}, headers=auth(admin))
    assert bad.status_code == 400 and "--token-env" in bad.text
    monkeypatch.setenv("OTHER_TOKEN", TOKEN)
    repo.commit({"lib.py": "def private_helper():\n    return 3\n"})
    changed = httpx.patch(f"{base}/v1/sources/priv", json={"token_env": "OTHER_TOKEN"}, headers=auth(admin)).json()
    assert changed["changed"] == ["token_env"] and [j["kind"] for j in changed["jobs"]] == ["index"]
    assert wait_job(base, admin, changed["jobs"][0]["id"])["state"] == "succeeded"
    assert "priv:lib.py" in services.catalog.document_versions("priv")
    # location: admins only
    mine = {s["name"]: s for s in httpx.get(f"{base}/v1/sources", headers=auth(reader)).json()}
    assert set(mine) == {"eng", "priv", "web"} and all(s["location"] is None for s in mine.values())
    everything = {s["name"]: s for s in httpx.get(f"{base}/v1/sources", headers=auth(admin)).json()}
    assert everything["priv"]["location"] == repo.url
    answers = " ".join(httpx.get(f"{base}{path}", headers=auth(admin)).text
                       for path in ("/v1/sources", "/v1/jobs", f"/v1/jobs/{job['id']}"))
    assert TOKEN not in answers
    _no_trace(services, TOKEN)
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out and TOKEN not in err


def test_a_missing_token_is_the_sources_clear_error(server, monkeypatch):
    base, services, repo = server
    admin = token(services, admin=True)
    monkeypatch.delenv("REPO_TOKEN", raising=False)
    httpx.post(f"{base}/v1/sources", json={"name": "priv", "location": repo.url, "token_env": "REPO_TOKEN"},
               headers=auth(admin)).raise_for_status()
    job = httpx.post(f"{base}/v1/sources/priv/reindex", headers=auth(admin)).json()
    done = wait_job(base, admin, job["id"])
    assert done["state"] == "failed" and "REPO_TOKEN is not set" in done["error"]
    source = next(s for s in httpx.get(f"{base}/v1/sources", headers=auth(admin)).json() if s["name"] == "priv")
    assert source["state"] == "error" and "REPO_TOKEN" in source["last_error"]
