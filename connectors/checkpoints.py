"""The bookkeeping of ticket and page syncs: per-scope cursors, seen items, retries and the JSON checkpoint.

A scope is what the source lists incrementally (a GitLab project's issues, a Jira project, a
Confluence space). Items are listed oldest change first, so a scope's cursor (the last change
time processed) is a valid resume point after every item: an interrupted sync resumes there, and
items it lists again are recognised by their unchanged version and cost nothing. A change of the
scope's identity (a renamed project) or of its access resets the cursor, so every item is read
again under the new access. Failed items are kept for retry until they succeed."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Checkpoint, Connector, ConnectorError

VERSION_SEP = "|"


def parse_time(value: Any) -> datetime | None:
    """A source timestamp (ISO 8601, `Z` or `+hhmm` zones) as an aware UTC datetime."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_version(changed: str, access_digest: str) -> str:
    """A document's version: when the source last changed it, and which access it was indexed with."""
    return f"{changed}{VERSION_SEP}{access_digest}"


def changed_part(version: str) -> str:
    return version.split(VERSION_SEP, 1)[0]


@dataclass
class Scope:
    """One incrementally listed part of a source."""

    ident: str = ""  # e.g. the project's path; a change resets the cursor
    access: str = ""  # digest of the scope's access; a change resets the cursor
    cursor: str | None = None  # stamp() of the last change processed, in listing order
    complete: bool = False  # listed from the beginning to the end in this sync (set in memory only)

    def to_json(self) -> dict[str, Any]:
        return {"ident": self.ident, "access": self.access, "cursor": self.cursor}


@dataclass
class SyncState:
    """What one sync of a ticket/page source knows and has done; `checkpoint()` works at any time."""

    known: Mapping[str, str]
    previous: Checkpoint = field(default_factory=dict)
    reconcile_every: float = 6 * 3600.0
    clock: Any = time.time
    scopes: dict[str, Scope] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # doc ids the source has, as met during this sync
    handled: set[str] = field(default_factory=set)  # doc ids read (or failed) during this sync
    retry: dict[str, dict[str, Any]] = field(default_factory=dict)  # doc id → what to fetch again
    reconciled_at: float | None = None
    finished: bool = False
    failed_scopes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        prev = self.previous or {}
        self.retry = {k: dict(v) for k, v in (prev.get("retry") or {}).items()}
        self.reconciled_at = prev.get("reconciled_at")
        self._old_scopes = {k: Scope(v.get("ident", ""), v.get("access", ""), v.get("cursor"))
                            for k, v in (prev.get("scopes") or {}).items()}

    # -- scopes --------------------------------------------------------------------------------

    def open_scope(self, key: str, ident: str, access: str) -> Scope:
        """The scope's state for this sync; its cursor is dropped when its identity or access changed."""
        old = self._old_scopes.get(key)
        cursor = old.cursor if old and old.ident == ident and old.access == access else None
        scope = Scope(ident, access, cursor)
        self.scopes[key] = scope
        return scope

    def since(self, key: str, overlap: timedelta) -> datetime | None:
        """Where to list the scope from: its cursor minus the overlap window (None: from the start)."""
        cursor = parse_time(self.scopes[key].cursor)
        return cursor - overlap if cursor else None

    def advance(self, key: str, changed: Any) -> None:
        when = parse_time(changed)
        scope = self.scopes[key]
        current = parse_time(scope.cursor)
        if when and (current is None or when > current):
            scope.cursor = stamp(when)

    def scope_failed(self, key: str) -> None:
        """Listing the scope failed part-way. Its cursor stays where the listing got to (items are
        listed in change order, so everything before it was processed); it gets no deletions."""
        self.failed_scopes.add(key)

    def keep_scope(self, key: str) -> None:
        """The scope could not be opened this sync: keep its previous state, and it gets no deletions."""
        old = self._old_scopes.get(key)
        if old is not None:
            self.scopes[key] = Scope(old.ident, old.access, old.cursor)
        self.failed_scopes.add(key)

    def keep_scopes_of(self, ident: str) -> None:
        """Keep every previous scope of something (e.g. a project path) that could not be read this sync."""
        for key, old in self._old_scopes.items():
            if old.ident == ident:
                self.keep_scope(key)

    def old_scope_keys(self) -> set[str]:
        return set(self._old_scopes)

    def old_ident(self, key: str) -> str:
        old = self._old_scopes.get(key)
        return old.ident if old else ""

    # -- items ---------------------------------------------------------------------------------

    def unchanged(self, doc_id: str, version: str) -> bool:
        """Record that the source has `doc_id`; True when there is nothing to read: the index holds
        this version, or this sync already read the item (or failed to)."""
        self.seen.add(doc_id)
        if doc_id in self.handled:
            return True
        return self.known.get(doc_id) == version and doc_id not in self.retry

    def failed(self, doc_id: str, what: Mapping[str, Any]) -> None:
        self.seen.add(doc_id)
        self.handled.add(doc_id)
        self.retry[doc_id] = dict(what)

    def succeeded(self, doc_id: str) -> None:
        self.seen.add(doc_id)
        self.handled.add(doc_id)
        self.retry.pop(doc_id, None)

    def forget(self, doc_id: str) -> None:
        """The item is gone at the source: nothing to retry."""
        self.retry.pop(doc_id, None)

    # -- reconciliation ------------------------------------------------------------------------

    def reconcile_due(self) -> bool:
        if self.reconciled_at is None:
            return True
        return self.clock() - float(self.reconciled_at) >= self.reconcile_every

    def reconciled(self) -> None:
        self.reconciled_at = self.clock()

    def complete_listing(self) -> bool:
        """Every open scope was listed from its beginning in this sync, without failures."""
        return bool(self.scopes) and not self.failed_scopes and all(s.complete for s in self.scopes.values())

    # -- the checkpoint ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """Valid mid-sync (everything processed so far is covered) and at the end.

        Scopes not visited in this sync keep their previous state until the sync finished, so an
        interrupted sync does not forget the cursors of scopes it had not reached yet."""
        scopes = {} if self.finished else {k: v.to_json() for k, v in self._old_scopes.items()}
        scopes.update({k: v.to_json() for k, v in self.scopes.items()})
        return {"scopes": scopes, "retry": dict(sorted(self.retry.items())), "reconciled_at": self.reconciled_at}


class CheckpointedSync(Connector):
    """The checkpoint half of the Connector contract for connectors that keep a SyncState."""

    _state: SyncState | None = None

    def partial_checkpoint(self) -> Checkpoint | None:
        """A checkpoint covering what was yielded so far (the sync loop stores it after each batch)."""
        return self._state.checkpoint() if self._state else None

    def next_checkpoint(self) -> Checkpoint:
        if self._state is None or not self._state.finished:
            raise ConnectorError("next_checkpoint() called before the sync was consumed")
        return self._state.checkpoint()
