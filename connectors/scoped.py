"""The sync shared by Jira and Confluence: per-scope incremental listing, retries, reconciliation, deletions."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from atlassian.errors import ApiError

from connectors.base import Checkpoint, ConnectorError, SyncItem
from connectors.checkpoints import CheckpointedSync, SyncState
from connectors.git_process import redact
from connectors.http_policy import PolicySession, quiet_client_loggers
from indexer.models import Deletion, Document, SyncFailure

log = logging.getLogger(__name__)

REMOTE_ERRORS = (requests.RequestException, ApiError)


@dataclass(frozen=True)
class ScopeSpec:
    """One incrementally listed part of the source (a Jira project, a Confluence space)."""

    key: str  # checkpoint key
    ident: str  # a change resets the cursor
    access_digest: str  # a change resets the cursor: every item is read again under the new access
    prefix: str  # the ids of this scope's documents start with it
    data: Mapping[str, Any] = field(default_factory=dict)  # what the connector needs to list it
    error: str = ""  # the scope could not be opened this sync


@dataclass(frozen=True)
class Listed:
    """An item as a listing shows it: enough to decide whether it changed."""

    doc_id: str
    path: str
    changed: str  # the source's last-change timestamp (orders the listing; the cursor)
    version: str  # item_version(...): what the index holds when it is up to date
    raw: Mapping[str, Any]
    complete: bool  # `raw` holds everything needed to build the Document


def atlassian_client(factory: Callable[..., Any], cfg: Any) -> tuple[Any, str]:
    """An atlassian-python-api client on our HTTP policy session (its own retries off); returns it and
    the secret it was given, so error messages can be scrubbed of it."""
    quiet_client_loggers()
    token = cfg.token()
    auth: dict[str, Any] = {"username": cfg.username, "password": token} if cfg.username else {"token": token}
    client = factory(cfg.url, cloud=cfg.cloud, session=PolicySession(cfg.http_policy()),
                     timeout=int(cfg.timeout_seconds), verify_ssl=cfg.verify_tls, backoff_and_retry=False,
                     retry_with_header=False, **auth)
    return client, token


class ScopedConnector(CheckpointedSync):
    """Subclasses provide `_open`, `_scopes`, `_list`, `_read` and `_read_again`."""

    access_from_source = True  # documents' access comes from the source and is part of their version

    def __init__(self, name: str, overlap_minutes: float, reconcile_minutes: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.overlap = timedelta(minutes=overlap_minutes)
        self.reconcile_every = reconcile_minutes * 60
        self.clock = clock
        self._secrets: list[str] = []
        self._state: SyncState | None = None
        self._specs: dict[str, ScopeSpec] = {}

    # -- hooks ----------------------------------------------------------------------------------

    def _open(self) -> None:
        """Build the client (reading the credential now). Raise ConnectorError when it cannot work."""
        raise ConnectorError("not a connector")

    def _scopes(self) -> list[ScopeSpec]:
        raise ConnectorError("not a connector")

    def _list(self, spec: ScopeSpec, since: datetime | None, brief: bool) -> Iterator[Listed]:
        """Items changed at or after `since` (all when None), oldest change first."""
        raise ConnectorError("not a connector")

    def _read(self, spec: ScopeSpec, listed: Listed) -> Document:
        raise ConnectorError("not a connector")

    def _read_parts(self, spec: ScopeSpec, listed: Listed) -> list[SyncItem]:
        """The item's Document, then its restricted parts as their own Documents (ids: the item's id +
        `#...`), and SyncFailures about them. Known parts not returned are deleted."""
        return [self._read(spec, listed)]

    def _read_again(self, spec: ScopeSpec, doc_id: str, what: Mapping[str, Any]) -> Listed | None:
        """An item that failed before, fetched on its own; None when it no longer exists."""
        raise ConnectorError("not a connector")

    # -- the Connector contract -----------------------------------------------------------------

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        self._state = state = SyncState(known=known, previous=checkpoint or {}, clock=self.clock,
                                        reconcile_every=self.reconcile_every)
        self._open()
        self._specs = {spec.key: spec for spec in self._scopes()}
        log.info("sync %s: %d scopes", self.name, len(self._specs))
        for spec in self._specs.values():
            yield from self._incremental(spec, state)
        yield from self._retries(state)
        if state.reconcile_due():
            yield from self._reconcile(state)
        yield from self._deletions(known, state)
        state.finished = True
        log.info("sync %s done: %d items present, %d to retry", self.name, len(state.seen), len(state.retry))

    def list_ids(self) -> set[str]:
        state = self._state
        if state is None or not state.finished:
            state = SyncState(known={})
            self._open()
            self._specs = {spec.key: spec for spec in self._scopes()}
            for _ in self._reconcile(state, fetch=False):
                pass
        if not state.complete_listing():
            raise ConnectorError(f"source {self.name!r}: some scopes could not be listed completely; not pruning")
        return set(state.seen)

    # -- the steps ------------------------------------------------------------------------------

    def _incremental(self, spec: ScopeSpec, state: SyncState) -> Iterator[SyncItem]:
        if spec.error:
            state.keep_scope(spec.key)
            state.seen |= {d for d in state.known if d.startswith(spec.prefix)}
            yield SyncFailure(self.name, f"{spec.key}/", spec.error)
            return
        scope = state.open_scope(spec.key, spec.ident, spec.access_digest)
        since = state.since(spec.key, self.overlap)
        try:
            for listed in self._list(spec, since, brief=False):
                items = self._visit(spec, listed, state)
                state.advance(spec.key, listed.changed)
                yield from items
        except REMOTE_ERRORS as exc:
            state.scope_failed(spec.key)
            yield SyncFailure(self.name, f"{spec.key}/", f"listing failed: {self.clean(exc)}")
            return
        scope.complete = since is None

    def _visit(self, spec: ScopeSpec, listed: Listed, state: SyncState, fetch: bool = True) -> list[SyncItem]:
        if state.unchanged(listed.doc_id, listed.version) or not fetch:
            state.seen |= self._known_parts(listed.doc_id, state)
            return []
        try:
            items = self._read_parts(spec, listed)
        except Exception as exc:  # noqa: BLE001 - one bad item never stops the sync; it is retried
            state.failed(listed.doc_id, {"scope": spec.key, "path": listed.path})
            state.seen |= self._known_parts(listed.doc_id, state)
            log.warning("sync %s: %s failed: %s", self.name, listed.path, type(exc).__name__)
            return [SyncFailure(self.name, listed.path, self.clean(exc))]
        state.succeeded(listed.doc_id)
        parts = {item.id for item in items if isinstance(item, Document)}
        for part in parts - {listed.doc_id}:
            state.succeeded(part)
        return items + [Deletion(d) for d in sorted(self._known_parts(listed.doc_id, state) - parts)]

    @staticmethod
    def _known_parts(doc_id: str, state: SyncState) -> set[str]:
        """Indexed documents that are restricted parts of this item (`<doc id>#...`)."""
        return {d for d in state.known if d.startswith(doc_id + "#")}

    def _retries(self, state: SyncState) -> Iterator[SyncItem]:
        """Items that failed in an earlier sync and were not met again in this one."""
        for doc_id, what in list(state.retry.items()):
            spec = self._specs.get(str(what.get("scope")))
            if doc_id in state.handled or spec is None or spec.error:
                if spec is None:
                    state.forget(doc_id)  # its scope is gone; deletion handles the document
                continue
            try:
                listed = self._read_again(spec, doc_id, what)
            except REMOTE_ERRORS as exc:
                state.failed(doc_id, what)
                yield SyncFailure(self.name, str(what.get("path") or doc_id.split(":", 1)[1]), self.clean(exc))
                continue
            if listed is None:
                state.forget(doc_id)
                continue
            yield from self._visit(spec, listed, state)

    def _reconcile(self, state: SyncState, fetch: bool = True) -> Iterator[SyncItem]:
        """List every item of scopes not listed completely yet: stale or missed items are read, and
        the complete listing lets deletions (and moves away) be found."""
        ok = True
        for spec in self._specs.values():
            if spec.error or spec.key in state.failed_scopes:
                ok = False
                continue
            scope = state.scopes.get(spec.key) or state.open_scope(spec.key, spec.ident, spec.access_digest)
            if scope.complete:
                continue
            try:
                for listed in self._list(spec, None, brief=True):
                    yield from self._visit(spec, listed, state, fetch)
                scope.complete = True
            except REMOTE_ERRORS as exc:
                ok = False
                state.scope_failed(spec.key)
                yield SyncFailure(self.name, f"{spec.key}/", f"listing failed: {self.clean(exc)}")
        if ok:
            state.reconciled()

    def _deletions(self, known: Mapping[str, str], state: SyncState) -> Iterator[SyncItem]:
        """Known items of completely listed scopes that were not met, and of scopes that are gone."""
        doomed: set[str] = set()
        for key, scope in state.scopes.items():
            if scope.complete:
                doomed |= {d for d in known if d.startswith(self._specs[key].prefix)}
        for key in state.old_scope_keys() - set(self._specs):
            doomed |= {d for d in known if d.startswith(self.scope_prefix(key))}
        for doc_id in sorted(doomed - state.seen):
            state.forget(doc_id)
            yield Deletion(doc_id)

    def scope_prefix(self, key: str) -> str:
        """The id prefix of a scope's documents, from its key alone (for scopes no longer configured)."""
        return f"{self.name}:{key}/"

    def clean(self, error: object) -> str:
        """An error message fit for logs and the catalog: no secrets, no credentials in URLs, bounded."""
        text = f"{type(error).__name__}: {error}" if isinstance(error, Exception) else str(error)
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return redact(" ".join(text.split()))[:500]
