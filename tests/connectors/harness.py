"""Helpers for connector tests: register a source, sync it, look at the index, search as someone, kill a sync."""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from connectors.config import parse_source
from connectors.registry import build_connector
from indexer.models import Principal
from indexer.pipeline.sync import SyncCounts, SyncRunner
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

# Fast but real retry behaviour: small backoff and read timeout, the usual number of attempts.
FAST = {"retry_backoff_seconds": 0.02, "timeout_seconds": 1.0, "max_attempts": 5}


def register(services: Any, data: Mapping[str, Any]) -> Any:
    """Validate a source definition and store it in the catalog, as `cairn sources add/load` does."""
    config = parse_source({**FAST, **data})
    services.catalog.upsert_source(config.name, config.kind, config.catalog_config(), config.default_access)
    return config


def sync(services: Any, name: str, full: bool = False) -> SyncCounts:
    return run_sync_job(services, name, full=full)


def indexed(services: Any, name: str) -> dict[str, str]:
    """doc id → version of everything the catalog holds for a source."""
    return services.catalog.document_versions(name)


def same_documents(docs: Mapping[str, str]) -> dict[str, str]:
    """Versions keyed by path alone, to compare two sources that indexed the same thing."""
    return {doc_id.split(":", 1)[1]: version for doc_id, version in docs.items()}


def consistent(services: Any, name: str) -> bool:
    """Both engines and the catalog hold exactly the same chunks (nothing lost, nothing duplicated)."""
    catalog = set(services.catalog.chunk_ids_of_source(name))
    return services.fulltext.ids(name) == catalog == services.vectors.ids(name)


def search(services: Any, query: str, principal: Principal | None, limit: int = 20) -> list[Any]:
    searcher = build_searcher(services)
    searcher.relevance_floor = 0.0  # these tests check who reads what, not relevance: every hit counts
    try:
        return searcher.search(query, principal, limit=limit).hits
    finally:
        searcher.close()


def found_docs(services: Any, query: str, principal: Principal | None) -> set[str]:
    return {hit.doc_id for hit in search(services, query, principal, limit=50)}


class Interrupted(Exception):
    """Stands for the worker being killed in the middle of a sync."""


def interrupted_sync(services: Any, name: str, after: int, batch_docs: int = 2) -> None:
    """Run a sync that dies after `after` items, flushing small batches (as a long sync would)."""
    connector = build_connector(services.catalog.get_source(name), services.settings)
    original = connector.sync

    def dying(checkpoint: Any, known: Any) -> Iterator[Any]:
        yield from itertools.islice(original(checkpoint, known), after)
        raise Interrupted

    connector.sync = dying
    with pytest.raises(Interrupted):
        SyncRunner(services.pipeline, batch_docs=batch_docs).run(connector)


def resolve_links(app: Any, linked: Callable[[Principal], Iterable[str]]) -> None:
    """Give every Principal the app's tokens and sessions yield its namespaced principals (`linked`), as
    request-time identity resolution does (indexer/identity: `linked_principals`). Call inside the app's
    lifespan (its stores exist then)."""
    def wrap(resolve: Callable[..., Any]) -> Callable[..., Any]:
        def resolved(*args: Any) -> Any:
            found = resolve(*args)
            if isinstance(found, Principal):
                return dataclasses.replace(found, linked=frozenset(linked(found)))
            if isinstance(found, tuple) and len(found) == 2 and isinstance(found[1], Principal):
                return found[0], dataclasses.replace(found[1], linked=frozenset(linked(found[1])))
            return found
        return resolved

    for store, method in (("tokens", "resolve"), ("tokens", "resolve_with_id"), ("sessions", "resolve")):
        target = getattr(app.state, store)
        setattr(target, method, wrap(getattr(target, method)))


REALMS = ("gitlab", "jira", "confluence", "atlassian")  # the default realms of the fakes' sources


def fake_identities(who: Principal) -> set[str]:
    """What the identity layer resolves for a test caller named alike on every fake: their account in each
    realm (GitLab's numeric id, Jira's and Confluence's Data Center user keys, Atlassian Cloud's accountId,
    which the fakes take as given: `acc-alice`, or `alice` itself) and their token's groups as the group of
    that name in each realm."""
    from fake_gitlab import user_id
    from fake_jira import user_key

    out = {f"{realm}:group:{g}" for realm in REALMS for g in who.groups}
    if who.user.startswith("acc-"):
        return out | {f"atlassian:user:{who.user}"}
    return out | {f"gitlab:user:{user_id(who.user)}", f"jira:user:{user_key(who.user)}",
                  f"confluence:user:key-{who.user}", f"atlassian:user:{who.user}"}
