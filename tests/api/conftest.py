"""API test fixtures: a small corpus in two permission groups, indexed once per test module."""
from __future__ import annotations

import pytest
from api_harness import INVOICE_PY, REFUND_PY, RETRY_PY, ROLLOUT_PY, WEB_URL, git_repo

from indexer.documents import Access, Document
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """Sources `eng` (group eng: pkg/retry.py, billing/invoice.py), `ops` (group ops: deploy/rollout.py)
    and `web` (group eng: a document with a GitLab link). Shared by a module's tests: read, don't change."""
    root = tmp_path_factory.mktemp("corpus")
    services = IndexServices.open(Settings(data_dir=root / "data"), embedder=embedder)
    repos = {"eng": git_repo(root / "eng", {"pkg/retry.py": RETRY_PY, "billing/invoice.py": INVOICE_PY}),
             "ops": git_repo(root / "ops", {"deploy/rollout.py": ROLLOUT_PY})}
    for name, repo in repos.items():
        services.catalog.upsert_source(name, "git", {"location": str(repo), "ref": ""}, [f"group:{name}"])
        run_sync_job(services, name)
    services.catalog.upsert_source("web", "git", {"location": "https://gitlab.example.com/platform/billing.git"},
                                   ["group:eng"])
    doc = Document(id="web:payments/refund.py", source="web", path="payments/refund.py", content=REFUND_PY,
                   version="1", access=Access.of("group:eng"), language="python", url=WEB_URL)
    services.pipeline.apply_lexical([doc])
    services.pipeline.embed_pending("web")
    yield services
    services.close()
