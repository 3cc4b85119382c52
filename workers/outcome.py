"""How a sync that ran to its end really went: `succeeded`, `partial` (some listings or items failed:
counts and the first errors on the job, the source `degraded`) or `failed` (every listing the source
names failed and nothing at all was read). One rule for the embedded runner and the distributed finish."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from indexer.catalog import Catalog

FIRST_ERRORS = 5  # how many failures the job and the source quote (the failures table has all)


class SyncFailed(Exception):
    """A sync ran to its end but could read nothing (every listing it tried failed)."""


@dataclass(frozen=True)
class SyncOutcome:
    """A finished sync's job state, its error line, the counts added to the job, and the source state."""

    state: str  # succeeded | partial | failed
    error: str = ""
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def listed_all(self) -> bool:
        """Every listing succeeded (at most items failed): the source's last success moves."""
        return self.state != "failed" and not self.counts.get("listings_failed")

    @property
    def source_state(self) -> str:
        return {"succeeded": "idle", "partial": "degraded"}.get(self.state, "error")


def sync_outcome(catalog: Catalog, source: str, started_at: dt.datetime | None,
                 counts: dict[str, Any]) -> SyncOutcome:
    """Judge a sync by the failures it recorded (`last_seen_at` at or after `started_at`). A failure whose
    item ends in `/` is a listing (a project, space, or the whole source); any other is one item."""
    since = started_at or dt.datetime.min.replace(tzinfo=dt.UTC)
    failures = sorted((f for f in catalog.list_failures(source) if f.last_seen_at >= since),
                      key=lambda f: (not f.item.endswith("/"), f.item))
    if not failures:
        return SyncOutcome("succeeded", counts={"listings_failed": 0, "items_failed": 0, "first_errors": []})
    listings = sum(1 for f in failures if f.item.endswith("/"))
    items = len(failures) - listings
    first = [f"{f.item}: {f.error}"[:300] for f in failures[:FIRST_ERRORS]]
    read = (counts.get("files_seen", 0) - len(failures) > 0 or counts.get("files_changed", 0) > 0
            or counts.get("files_deleted", 0) > 0)
    scopes = _scopes(catalog, source)
    state = "failed" if listings and not read and scopes is not None and listings >= scopes else "partial"
    what = " and ".join(part for part in (f"{listings} listing(s)" if listings else "",
                                          f"{items} item(s)" if items else "") if part)
    gap = "nothing could be read" if state == "failed" else "the index has gaps until the next sync reads them"
    error = f"{what} failed; {gap}. First: {'; '.join(first[:2])}"
    return SyncOutcome(state, error, {"listings_failed": listings, "items_failed": items, "first_errors": first})


def _scopes(catalog: Catalog, source: str) -> int | None:
    """How many listings the source's sync makes (its projects or spaces), when its config says; None when
    it cannot tell (a GitLab group, a JQL filter): then a listing failure never proves nothing was listed."""
    row = catalog.get_source(source)
    config = row.config if row is not None else {}
    named = config.get("spaces") or ([] if config.get("jql") or config.get("group") else config.get("projects"))
    return len(named) if named else None
