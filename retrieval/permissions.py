"""Turns a caller (Principal) and a requested scope into the engine filter; fails closed.

Sources whose access is stale (no successful sync or permissions pass for longer than the maximum
staleness) are part of the filter: their restricted documents are not served, by either engine or by
the document route, until their access is refreshed."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from connectors.git_history import COMMIT_KIND
from indexer.catalog import Catalog
from indexer.languages import canonical_language
from indexer.models import KINDS, PUBLIC, Principal
from indexer.pipeline import stale_sources
from indexer.stores import SearchFilter

log = logging.getLogger(__name__)


class ScopeError(ValueError):
    """A scope value that cannot be honoured (unknown kind, malformed path prefix)."""


@dataclass(frozen=True)
class Scope:
    """What the caller asked to search within; empty means everything they may read."""

    sources: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


# What `search` covers when the caller names no kind: everything but commit documents, which a caller asks
# for by naming the `commit` kind (code search keeps commits out of code results unless asked).
UNASKED_KINDS = tuple(k for k in KINDS if k != COMMIT_KIND)


def searched(scope: Scope) -> Scope:
    """The scope `search` runs with: the caller's, with UNASKED_KINDS when it names no kind."""
    return scope if scope.kinds else replace(scope, kinds=UNASKED_KINDS)


def build_filter(principal: Principal | None, scope: Scope = Scope(), stale: Collection[str] = ()) -> SearchFilter:
    """The filter both engines apply. No principal → a filter that matches nothing. `stale`: sources
    whose restricted chunks are left out (`StaleSources.current()`)."""
    for kind in scope.kinds:
        if kind not in KINDS:
            raise ScopeError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    for prefix in scope.path_prefixes:
        if ".." in prefix.split("/") or "\0" in prefix:
            raise ScopeError(f"bad path prefix {prefix!r}")
    principals = tuple(principal.principals()) if principal else ()
    return SearchFilter(principals=principals, sources=tuple(scope.sources),
                        path_prefixes=tuple(p for p in scope.path_prefixes if p.strip("/")),
                        languages=tuple(dict.fromkeys(canonical_language(x) for x in scope.languages if x.strip())),
                        kinds=tuple(scope.kinds), stale_sources=tuple(sorted(stale)))


def readable(acl: Collection[str], source: str, who: Principal, stale: Collection[str]) -> bool:
    """The document route's check, the same rule as the engines': the ACL shares a principal with the
    caller, and a document of a stale source is readable only when it is public."""
    return bool(set(acl) & set(who.principals())) and (source not in stale or PUBLIC in acl)


class StaleSources:
    """The stale set, read from the catalog at most every `ttl` seconds and shared by every request.

    Never fails open: when the catalog cannot be read the error propagates (the request fails) rather
    than an empty set being served."""

    def __init__(self, catalog: Catalog, max_staleness: float, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.max_staleness = max_staleness
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._value: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def current(self) -> frozenset[str]:
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.ttl:
                value = stale_sources(self.catalog, self.max_staleness)
                if value != self._value:
                    log.warning("sources with stale permissions (restricted documents not served): %s",
                                sorted(value) or "none")
                self._value, self._read_at = value, now
            return self._value

    def invalidate(self) -> None:
        """Read the catalog again on the next request (a pass or a sync just finished)."""
        with self._lock:
            self._read_at = None
