"""A person's Principal when a request arrives: whether they are still active (read every time, so a
deprovisioned person is refused at once) and their namespaced principals (linked accounts, synced
memberships, IdP groups), cached for a few seconds so each request does not re-read links and memberships."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from indexer.identity.people import People
from indexer.identity.store import IdentityStore, linked_principals
from indexer.models import Principal

MAX_ENTRIES = 10_000  # past this, expired entries are dropped, then everything (a cache, not a store)

CacheKey = tuple[str, tuple[str, ...]]


class IdentityResolver:
    """subject (+ the request's IdP groups, when it carries any) → Principal, or None for a person
    Cairn does not know or who was deactivated."""

    def __init__(self, store: IdentityStore, admin_groups: Iterable[str], ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.people = People(store.engine)
        self.admin_groups = frozenset(admin_groups)
        self.ttl = ttl_seconds
        self.clock = clock
        self._cache: dict[CacheKey, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def person(self, subject: str, idp_groups: Iterable[str] | None = None, fresh: bool = False) -> Principal | None:
        """The live Principal of `subject`. `idp_groups` are the groups the request itself carries (a
        session's sign-in, a JWT's groups claim); None = the request carries none (a personal token, a
        JWT without the claim): the groups of the person's last sign-in apply. `fresh` skips the cache."""
        found = self.people.get(subject)
        if found is None or not found.active:
            return None
        groups = found.groups if idp_groups is None else tuple(sorted({g for g in idp_groups if g.strip()}))
        return Principal(user=found.display, subject=subject, admin=bool(self.admin_groups & set(groups)),
                         linked=self._linked(subject, groups, fresh))

    def forget(self, subject: str) -> None:
        """Drop what is cached for `subject` (after an admin changed their links in this process)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == subject]:
                del self._cache[key]

    def _linked(self, subject: str, groups: tuple[str, ...], fresh: bool) -> frozenset[str]:
        if self.ttl <= 0 or fresh:
            return linked_principals(self.store, subject, groups)
        key, now = (subject, groups), self.clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = linked_principals(self.store, subject, groups)
        with self._lock:
            if len(self._cache) >= MAX_ENTRIES:
                self._evict(now)
            self._cache[key] = (now + self.ttl, found)
        return found

    def _evict(self, now: float) -> None:
        for key in [k for k, (expires, _) in self._cache.items() if expires <= now]:
            del self._cache[key]
        if len(self._cache) >= MAX_ENTRIES:
            self._cache.clear()
