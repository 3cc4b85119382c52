"""API test fixtures: a small corpus in two permission groups, indexed once per test module."""
from __future__ import annotations

import pytest
from api_harness import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """The harness corpus (eng, ops, web). Shared by a module's tests: read, don't change."""
    _, services = build_corpus(tmp_path_factory.mktemp("corpus"), embedder)
    yield services
    services.close()
