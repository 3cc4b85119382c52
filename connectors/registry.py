"""Builds a connector for a catalog source row, chosen by the source's explicit kind."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from connectors.base import Connector, ConnectorError
from indexer.models import Access
from indexer.settings import Settings

_Source = TypeVar("_Source")


def _source_config(row: Any, kind: type[_Source]) -> _Source:
    """The row's validated config, as the type its kind's connector takes."""
    from connectors.config import from_catalog

    config = from_catalog(row)
    if not isinstance(config, kind):
        raise ConnectorError(f"source {row.name!r}: a {row.kind} source holds a {type(config).__name__}")
    return config


def _git(row: Any, settings: Settings) -> Connector:
    from connectors.base import AuthFailed
    from connectors.config import (
        CREDENTIALS_IN_URL,
        CREDENTIALS_REMOVED,
        CREDENTIALS_REMOVED_HINT,
        read_token,
        url_has_credentials,
    )
    from connectors.git_repos import GitRepoConnector

    config = row.config
    if url_has_credentials(config["location"]):  # never used, even if a row was written around the checks
        raise AuthFailed(f"source {row.name!r}: {CREDENTIALS_IN_URL}")
    token_env, token_file = config.get("token_env") or "", config.get("token_file") or ""
    if config.get(CREDENTIALS_REMOVED) and not (token_env or token_file):
        raise AuthFailed(f"source {row.name!r}: {CREDENTIALS_REMOVED_HINT.format(name=row.name)}")
    token = (lambda: read_token(row.name, token_env, token_file)) if token_env or token_file else None
    return GitRepoConnector(name=row.name, location=config["location"], ref=config.get("ref") or None,
                            access=Access.of(*row.access), workdir=Path(settings.data_dir) / "repos",
                            max_file_bytes=settings.max_file_bytes, token=token,
                            username=config.get("username") or "", history_commits=settings.history_commits)


def _gitlab(row: Any, settings: Settings) -> Connector:
    from connectors.config import GitLabSource
    from connectors.gitlab import GitLabConnector

    return GitLabConnector(_source_config(row, GitLabSource), workdir=Path(settings.data_dir) / "repos",
                           max_file_bytes=settings.max_file_bytes)


def _jira(row: Any, settings: Settings) -> Connector:
    from connectors.config import JiraSource
    from connectors.jira import JiraConnector

    return JiraConnector(_source_config(row, JiraSource))


def _confluence(row: Any, settings: Settings) -> Connector:
    from connectors.config import ConfluenceSource
    from connectors.confluence import ConfluenceConnector

    return ConfluenceConnector(_source_config(row, ConfluenceSource))


CONNECTORS: dict[str, Callable[[Any, Settings], Connector]] = {
    "git": _git, "gitlab": _gitlab, "jira": _jira, "confluence": _confluence}


# Where each kind's connector class lives, to read its class attributes without building one.
CLASSES: dict[str, tuple[str, str]] = {
    "git": ("connectors.git_repos", "GitRepoConnector"), "gitlab": ("connectors.gitlab", "GitLabConnector"),
    "jira": ("connectors.jira", "JiraConnector"), "confluence": ("connectors.confluence", "ConfluenceConnector")}


def access_from_source(kind: str) -> bool:
    """Whether documents of this kind take their access from the source (and so need permissions
    passes). An unknown kind answers True: its access cannot be vouched for (fail closed)."""
    import importlib

    if kind not in CLASSES:
        return True
    module, name = CLASSES[kind]
    return bool(getattr(importlib.import_module(module), name).access_from_source)


def build_connector(row: Any, settings: Settings) -> Connector:
    try:
        factory = CONNECTORS[row.kind]
    except KeyError:
        raise ConnectorError(f"source {row.name!r} has unknown kind {row.kind!r}; "
                             f"known kinds: {', '.join(CONNECTORS)}") from None
    return factory(row, settings)
