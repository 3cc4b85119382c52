"""End to end on a real repository with secrets in it: no store ever holds one, the code around them
stays searchable, secret files are skipped and recorded, and admins see counts (never values)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.tokens import TokenStore
from indexer.chunking import chunk_document
from indexer.embedding.cache import embedding_cache
from indexer.models import Access, Document, Principal
from indexer.secrets.screen import SecretScreen
from retrieval.permissions import build_filter
from retrieval.query_analysis import analyse
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

OPERATOR = Principal("op", admin=True)
AWS_SECRET = "Jq8v3Zk9Lm2Np4Rt6Wx8Yb0Cd2Ef4Gh6Ij8Kl0Mn"
AWS_KEY_ID = "AKIAQ3EGRZ7UDXKV4N2P"
DB_PASSWORD = "S3cr3tPa55w0rdQz"
GITLAB_TOKEN = "glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4"
SLACK_HOOK = "T4K2J9QZP/B8L3M7N1R/q7Wk2Lm9Zx4Rt8Vb3Np6Yc1D"
KEY_LINES = ["MIIEowIBAAKCAQEAvR8sX2lQ0pT7mZk3yN9cW4hJ6fA1bE5gD8iK0oL2nM4qP6rS",
             "t8uV0wX2yZ4aB6cD8eF0gH2iJ4kL6mN8oP0qR2sT4uV6wX8yZ0aB2cD4eF6gH8iJ",
             "0kL2mN4oP6qR8sT0uV2wX4yZ6aB8cD0eF2gH4iJ6kL8mN0oP2qR4sT6uV8wX0yZ"]
ENV_SECRET = "Zq8Wk3Rv9Lm2Xp4Tn6Ys1BcHd0Gf5"
SECRETS = [AWS_SECRET, AWS_KEY_ID, DB_PASSWORD, GITLAB_TOKEN, SLACK_HOOK, *KEY_LINES, ENV_SECRET]

CONFIG_PY = f'''"""Billing settings and the invoice totals."""
import os

AWS_ACCESS_KEY_ID = "{AWS_KEY_ID}"
aws_secret_access_key = "{AWS_SECRET}"
DATABASE_URL = "postgres://billing:{DB_PASSWORD}@db.internal:5432/billing"
PUBLIC_TOKEN = os.environ["PUBLIC_TOKEN"]

SIGNING_KEY = """-----BEGIN RSA PRIVATE KEY-----
{chr(10).join(KEY_LINES)}
-----END RSA PRIVATE KEY-----"""


def compute_invoice_totals(lines):
    """Sum the invoice lines, tax included."""
    subtotal = sum(line.amount for line in lines)
    return round(subtotal * 1.2, 2)
'''
NOTES_MD = f"""# Deploy notes

The deploy bot uses the token {GITLAB_TOKEN} to tag releases.
Alerts go to https://hooks.slack.com/services/{SLACK_HOOK} after the canary rollout.
"""
ENV_FILE = f"STRIPE_SECRET={ENV_SECRET}\nDEBUG=1\n"


@pytest.fixture
def leaky_repo(make_repo):
    repo = make_repo("leaky")
    repo.write("billing/config.py", CONFIG_PY)
    repo.write("docs/deploy.md", NOTES_MD)
    repo.write(".env", ENV_FILE)
    repo.write(".env.example", "STRIPE_SECRET=\nDEBUG=1\n")
    repo.write("deploy/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END OPENSSH PRIVATE KEY-----\n")
    repo.commit("leaky")
    return repo


def index(services, repo, full=False):
    services.catalog.upsert_source("leaky", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    return run_sync_job(services, "leaky", full=full)


def files_under(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


def test_no_store_holds_a_secret_and_the_code_around_them_is_searchable(services, settings, leaky_repo, caplog):
    with caplog.at_level(logging.DEBUG):
        index(services, leaky_repo)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "leaky:billing/config.py" in logged  # the redactions are logged, by rule, path and line...
    assert [s for s in SECRETS if s in logged] == []  # ...never with a secret

    for path in files_under(settings.data_dir):  # every byte on disk: tantivy, Qdrant Edge, SQLite + WAL
        data = path.read_bytes()
        assert [s for s in SECRETS if s.encode() in data] == [], path

    flt = build_filter(OPERATOR)
    for secret in SECRETS:
        assert services.fulltext.search(analyse(secret).lexical, flt, 10) == [], secret

    catalog = services.catalog
    chunk_ids = set(catalog.chunk_ids_of_source("leaky"))
    rows = catalog.get_chunks(chunk_ids).values()
    stored = [catalog.get_document(f"leaky:{p}").content for p in ("billing/config.py", "docs/deploy.md")]
    texts = [r.content for r in rows] + [r.header for r in rows] + stored
    assert [s for s in SECRETS if any(s in t for t in texts)] == []
    assert services.vectors.ids("leaky") == chunk_ids  # every vector is one of these redacted chunks

    # The embedding cache holds the redacted chunks' hashes, and no hash of the original text.
    with catalog.engine.connect() as conn:
        cached = set(conn.execute(select(embedding_cache.c.content_hash)).scalars())
    original = Document(id="leaky:billing/config.py", source="leaky", path="billing/config.py", content=CONFIG_PY,
                        version="x", access=Access.of("public"), language="python")
    raw = [c for c in chunk_document(original) if any(s in c.content for s in SECRETS)]
    assert raw and not {c.content_hash for c in raw} & cached
    assert {r.content_hash for r in rows} <= cached

    searcher = build_searcher(services)
    try:
        hits = searcher.search("compute_invoice_totals", OPERATOR, limit=5).hits
        assert hits[0].path == "billing/config.py"
        assert searcher.search("canary rollout alerts", OPERATOR, limit=5).hits[0].path == "docs/deploy.md"
    finally:
        searcher.close()
    # Line numbers are the file's: the function starts where it did before the key block was redacted.
    start = CONFIG_PY.splitlines().index("def compute_invoice_totals(lines):") + 1
    assert any(r.start_line <= start <= r.end_line and "def compute_invoice_totals" in r.content for r in rows)
    assert "[REDACTED:aws-secret-key]" in stored[0] and "[REDACTED:private-key]" in stored[0]


def test_secret_files_are_skipped_and_recorded_with_their_reason(services, leaky_repo):
    counts = index(services, leaky_repo)
    skipped = {s.path: (s.reason, s.detail) for s in services.catalog.list_skipped("leaky")}
    assert skipped[".env"] == ("secret_file", "environment file (.env)")
    assert skipped["deploy/id_rsa"] == ("secret_file", "SSH private key")
    assert ".env.example" not in skipped and services.catalog.get_document("leaky:.env.example") is not None
    assert services.catalog.get_document("leaky:.env") is None
    assert counts.files_changed == 3  # config.py, deploy.md, .env.example


def test_admins_see_counts_per_rule_and_file_never_values(services, leaky_repo):
    index(services, leaky_repo)
    summary = services.pipeline.redactions.summary("leaky")
    assert summary.total == 6 and summary.files == 2 and summary.secret_files == 2
    assert {rule: (c.redactions, c.files) for rule, c in summary.rules.items()} == {
        "aws-access-key-id": (1, 1), "aws-secret-key": (1, 1), "url-password": (1, 1), "private-key": (1, 1),
        "gitlab-token": (1, 1), "slack-webhook": (1, 1)}
    files = services.pipeline.redactions.files("leaky")
    assert {(f.path, f.rule): f.lines for f in files}[("billing/config.py", "private-key")] == (10,)
    index(services, leaky_repo)  # an unchanged re-sync changes nothing
    assert services.pipeline.redactions.summary("leaky") == summary


def test_sources_endpoint_shows_redactions_to_admins_only(services, settings, leaky_repo):
    index(services, leaky_repo)
    tokens = TokenStore(services.catalog.engine)
    admin, reader = tokens.create("root", [], admin=True)[0], tokens.create("u", [])[0]
    with TestClient(create_app(settings, services=services)) as client:
        as_admin = client.get("/v1/sources", headers={"Authorization": f"Bearer {admin}"}).json()
        as_reader = client.get("/v1/sources", headers={"Authorization": f"Bearer {reader}"}).json()
        state = client.get("/ui/admin/state", headers={"Authorization": f"Bearer {admin}"}).json()
    assert as_admin[0]["redactions"]["total"] == 6 and as_admin[0]["redactions"]["secret_files"] == 2
    assert as_admin[0]["redactions"]["rules"]["gitlab-token"] == {"redactions": 1, "files": 1}
    assert as_reader[0]["redactions"] is None
    assert state["sources"][0]["redactions"]["files"] == 2
    body = str(as_admin) + str(state)
    assert [s for s in SECRETS if s in body] == []


def test_a_secret_file_indexed_before_is_removed_and_its_counts_follow_deletions(services, leaky_repo):
    services.pipeline.secrets = SecretScreen(allow_paths=[".env"])  # as if indexed before the rule existed
    index(services, leaky_repo)
    assert services.catalog.get_document("leaky:.env") is not None
    services.pipeline.secrets = SecretScreen()
    counts = index(services, leaky_repo, full=True)
    assert services.catalog.get_document("leaky:.env") is None and counts.chunks_deleted >= 1
    assert ENV_SECRET not in str(services.catalog.get_chunks(services.catalog.chunk_ids_of_source("leaky")))
    assert services.vectors.ids("leaky") == set(services.catalog.chunk_ids_of_source("leaky"))
    assert ".env" in {s.path for s in services.catalog.list_skipped("leaky")}

    leaky_repo.remove("docs/deploy.md")
    leaky_repo.commit("drop notes")
    index(services, leaky_repo)
    summary = services.pipeline.redactions.summary("leaky")
    assert summary.files == 1 and "gitlab-token" not in summary.rules


def test_every_document_path_is_screened_not_only_git(services):
    """Tickets and pages reach the pipeline as Documents too: their text and titles are redacted."""
    issue = Document(id="jira:OPS-7", source="jira", path="OPS-7", kind="issue", version="2024-01-01",
                     access=Access.of("public"), title=f"Rotate {GITLAB_TOKEN}",
                     content=f"The old token {GITLAB_TOKEN} leaked; DB is postgres://ops:{DB_PASSWORD}@db/ops\n")
    services.pipeline.apply_lexical([issue])
    stored = services.catalog.get_document("jira:OPS-7")
    assert GITLAB_TOKEN not in stored.content + stored.title and DB_PASSWORD not in stored.content
    assert stored.version == "2024-01-01"
    assert services.pipeline.chunk(issue) and all(GITLAB_TOKEN not in c.content for c in services.pipeline.chunk(issue))
