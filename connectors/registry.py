"""Builds a connector for a catalog source row, chosen by the source's explicit kind."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.base import Connector, ConnectorError
from indexer.models import Access
from indexer.settings import Settings


def _git(row: Any, settings: Settings) -> Connector:
    from connectors.git_repos import GitRepoConnector

    config = row.config
    return GitRepoConnector(name=row.name, location=config["location"], ref=config.get("ref") or None,
                            access=Access.of(*row.access), workdir=Path(settings.data_dir) / "repos",
                            max_file_bytes=settings.max_file_bytes)


def _gitlab(row: Any, settings: Settings) -> Connector:
    from connectors.config import from_catalog
    from connectors.gitlab import GitLabConnector

    return GitLabConnector(from_catalog(row), workdir=Path(settings.data_dir) / "repos",
                           max_file_bytes=settings.max_file_bytes)


def _jira(row: Any, settings: Settings) -> Connector:
    from connectors.config import from_catalog
    from connectors.jira import JiraConnector

    return JiraConnector(from_catalog(row))


def _confluence(row: Any, settings: Settings) -> Connector:
    from connectors.config import from_catalog
    from connectors.confluence import ConfluenceConnector

    return ConfluenceConnector(from_catalog(row))


CONNECTORS: dict[str, Callable[[Any, Settings], Connector]] = {
    "git": _git, "gitlab": _gitlab, "jira": _jira, "confluence": _confluence}


def build_connector(row: Any, settings: Settings) -> Connector:
    try:
        factory = CONNECTORS[row.kind]
    except KeyError:
        raise ConnectorError(f"source {row.name!r} has unknown kind {row.kind!r}; "
                             f"known kinds: {', '.join(CONNECTORS)}") from None
    return factory(row, settings)
