"""Fixtures for connector tests: fake GitLab, Jira (Cloud and Data Center) and Confluence servers."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_confluence import FakeConfluence
from fake_gitlab import FakeGitLab
from fake_jira import FakeJira


@pytest.fixture
def gitlab_server() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    fake.server.start()
    yield fake
    fake.server.stop()


@pytest.fixture
def jira_server() -> Iterator[FakeJira]:
    """A Jira Cloud (REST v3 search with nextPageToken, ADF bodies)."""
    fake = FakeJira(cloud=True)
    fake.server.start()
    yield fake
    fake.server.stop()


@pytest.fixture(params=["cloud", "datacenter"])
def any_jira(request: pytest.FixtureRequest) -> Iterator[FakeJira]:
    """Jira Cloud and Jira Data Center (REST v2 search with startAt, wiki markup)."""
    fake = FakeJira(cloud=request.param == "cloud")
    fake.server.start()
    yield fake
    fake.server.stop()


@pytest.fixture
def confluence_server() -> Iterator[FakeConfluence]:
    fake = FakeConfluence()
    fake.server.start()
    yield fake
    fake.server.stop()
