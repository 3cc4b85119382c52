"""A credential in a file's path: the file is skipped (`secret_path`) and recorded under its redacted path,
so no document id, path, title, chunk, store, log line or API answer ever holds the credential."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import TokenStore
from indexer.models import Access, Document, SkipReason
from indexer.secrets.screen import SecretScreen
from workers.jobs import run_sync_job

GITHUB_TOKEN = "ghp_R3k9vXw2LqP8sT6yZ1bN4mC7dF0gH5jK2aQe"
GITLAB_TOKEN = "glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4"
SLACK_TOKEN = "xoxb-2718281828-3141592653-Zq8Wk3Rv9Lm2Xp4Tn6Ys1Bc"
TOKENS = [GITHUB_TOKEN, GITLAB_TOKEN, SLACK_TOKEN]
SECRET_PATHS = {  # path → its redacted form, as recorded
    f"deploy/{GITHUB_TOKEN}.txt": "deploy/[REDACTED:github-token].txt",
    f"mirrors/{GITLAB_TOKEN}/settings.yaml": "mirrors/[REDACTED:gitlab-token]/settings.yaml",
    f"assets/{SLACK_TOKEN}.png": "assets/[REDACTED:slack-token].png",  # binary: skipped by the connector
}


@pytest.fixture
def repo(make_repo):
    repo = make_repo("named")
    repo.write(f"deploy/{GITHUB_TOKEN}.txt", "release notes for the canary rollout\n")
    repo.write(f"mirrors/{GITLAB_TOKEN}/settings.yaml", "mirror:\n  interval: 300\n")
    repo.write(f"assets/{SLACK_TOKEN}.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    repo.write("src/billing.py", "def compute_invoice_totals(lines):\n    return sum(lines)\n")
    repo.commit("files named after tokens")
    return repo


def index(services, repo, full=False):
    services.catalog.upsert_source("named", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    return run_sync_job(services, "named", full=full)


def files_under(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


def leaked(text: str) -> list[str]:
    return [t for t in TOKENS if t in text]


def test_screen_skips_a_document_whose_path_holds_a_credential():
    doc = Document(id=f"s:deploy/{GITHUB_TOKEN}.txt", source="s", path=f"deploy/{GITHUB_TOKEN}.txt",
                   content="plain text\n", version="v1", access=Access(), title=f"deploy/{GITHUB_TOKEN}.txt")
    screened = SecretScreen().screen([doc])
    assert screened.documents == [] and screened.skipped_ids == [doc.id]  # the id, to remove an older version
    skip = screened.skipped[0]
    assert skip.reason == SkipReason.SECRET_PATH and skip.path == "deploy/[REDACTED:github-token].txt"
    assert "github-token" in skip.detail and not leaked(skip.detail)


def test_a_file_named_after_a_token_is_never_indexed_stored_logged_or_served(services, settings, repo, caplog):
    with caplog.at_level(logging.DEBUG):
        index(services, repo)
    assert not leaked("\n".join(r.getMessage() for r in caplog.records))

    skipped = {s.path: s.reason for s in services.catalog.list_skipped("named")}
    assert skipped == {SECRET_PATHS[f"deploy/{GITHUB_TOKEN}.txt"]: "secret_path",
                       SECRET_PATHS[f"mirrors/{GITLAB_TOKEN}/settings.yaml"]: "secret_path",
                       SECRET_PATHS[f"assets/{SLACK_TOKEN}.png"]: "binary"}
    assert list(services.catalog.document_versions("named")) == ["named:src/billing.py"]
    assert services.pipeline.redactions.summary("named").secret_files == 2

    for path in files_under(settings.data_dir):  # every byte on disk: catalog, tantivy, Qdrant Edge, WAL
        assert not leaked(path.read_bytes().decode("latin-1")), path

    tokens = TokenStore(services.catalog.engine)
    admin = tokens.create("root", [], admin=True)[0]
    auth = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(settings, services=services)) as client:
        for secret_path in SECRET_PATHS:
            assert client.get(f"/v1/documents/named:{secret_path}", headers=auth).status_code == 404
        for token in TOKENS:
            hits = client.post("/v1/search", json={"query": token}, headers=auth).json()["hits"]
            assert not leaked(str(hits))
        found = client.post("/v1/search", json={"query": "compute_invoice_totals"}, headers=auth).json()["hits"]
        assert found and found[0]["path"] == "src/billing.py"
        assert not leaked(client.get("/v1/sources", headers=auth).text)
        assert not leaked(client.get("/ui/admin/state", headers=auth).text)


def test_a_file_indexed_before_the_rule_is_removed_by_the_next_full_sync(services, repo):
    services.pipeline.secrets = SecretScreen(allow_paths=["deploy/**"])  # as if indexed before the rule existed
    index(services, repo)
    assert f"named:deploy/{GITHUB_TOKEN}.txt" in services.catalog.document_versions("named")
    services.pipeline.secrets = SecretScreen()
    counts = index(services, repo, full=True)
    assert counts.chunks_deleted >= 1
    assert not leaked(" ".join(services.catalog.document_versions("named")))
    chunks = services.catalog.get_chunks(services.catalog.chunk_ids_of_source("named")).values()
    assert not leaked(" ".join(f"{c.doc_id} {c.path} {c.header}" for c in chunks))
    assert services.vectors.ids("named") == set(services.catalog.chunk_ids_of_source("named"))
