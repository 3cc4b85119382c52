"""Opt-in: the connectors against real GitLab/Jira/Confluence instances (read-only), skipped without credentials.

GitLab:      CAIRN_LIVE_GITLAB_URL, CAIRN_LIVE_GITLAB_TOKEN, CAIRN_LIVE_GITLAB_GROUP
Jira:        CAIRN_LIVE_JIRA_URL, CAIRN_LIVE_JIRA_TOKEN, CAIRN_LIVE_JIRA_PROJECT [, CAIRN_LIVE_JIRA_USER]
Confluence:  CAIRN_LIVE_CONFLUENCE_URL, CAIRN_LIVE_CONFLUENCE_TOKEN, CAIRN_LIVE_CONFLUENCE_SPACE
             [, CAIRN_LIVE_CONFLUENCE_USER]
The tokens stay in the environment: sources reference them by variable name."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from connectors.config import parse_source
from connectors.registry import build_connector
from workers.jobs import run_sync_job

P = "CAIRN_LIVE_"
SOURCES = {
    "gitlab": (["GITLAB_URL", "GITLAB_TOKEN", "GITLAB_GROUP"],
               lambda: {"url": os.environ[P + "GITLAB_URL"], "token_env": P + "GITLAB_TOKEN",
                        "group": os.environ[P + "GITLAB_GROUP"], "internal_principal": "group:live-org"}),
    "jira": (["JIRA_URL", "JIRA_TOKEN", "JIRA_PROJECT"],
             lambda: {"url": os.environ[P + "JIRA_URL"], "token_env": P + "JIRA_TOKEN",
                      "username": os.environ.get(P + "JIRA_USER", ""), "projects": [os.environ[P + "JIRA_PROJECT"]]}),
    "confluence": (["CONFLUENCE_URL", "CONFLUENCE_TOKEN", "CONFLUENCE_SPACE"],
                   lambda: {"url": os.environ[P + "CONFLUENCE_URL"], "token_env": P + "CONFLUENCE_TOKEN",
                            "username": os.environ.get(P + "CONFLUENCE_USER", ""),
                            "spaces": [os.environ[P + "CONFLUENCE_SPACE"]]}),
}


def _missing(kind: str) -> list[str]:
    return [P + name for name in SOURCES[kind][0] if not os.environ.get(P + name)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.skipif(
    bool(_missing(kind)), reason=f"live {kind} test: set {', '.join(_missing(kind))}")) for kind in SOURCES])
def test_live_full_then_incremental_sync(services, kind):
    build = SOURCES[kind][1]
    config = parse_source({"name": f"live-{kind}", "kind": kind, "reconcile_minutes": 0, **build()})
    services.catalog.upsert_source(config.name, config.kind, config.catalog_config(), config.default_access)
    first = run_sync_job(services, config.name)
    indexed = services.catalog.document_versions(config.name)
    assert first.files_failed == 0, services.catalog.list_failures(config.name)
    assert indexed, "the source has no documents the token can read"
    host = urlsplit(config.url).hostname
    for doc_id in list(indexed)[:50]:
        doc = services.catalog.get_document(doc_id)
        assert urlsplit(doc.url).hostname == host, doc.url
    second = run_sync_job(services, config.name)
    assert (second.files_changed, second.files_deleted, second.files_failed) == (0, 0, 0)
    connector = build_connector(services.catalog.get_source(config.name), services.settings)
    assert connector.list_ids() == set(services.catalog.document_versions(config.name))
    token = os.environ[config.token_env]
    assert token not in str(services.catalog.get_source(config.name))
