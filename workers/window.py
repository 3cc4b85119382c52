"""`cairn reindex --since 2d`: make a source re-read and rewrite what it changed in a time window.

Meaning (the same for every kind of source): everything the source changed in the window is read
from the source again and applied again, however the index saw it before; nothing else is touched.
  - git: files touched by commits (committer date) in the window, on the indexed ref;
  - ticket/page sources (GitLab issues and MRs, Jira, Confluence): the listing cursors are rewound to
    min(cursor, now - window), and items whose source change time is in the window are re-read;
  - other documents (e.g. GitLab code): those the catalog indexed in the window.
It works by forgetting the catalog versions of those documents (so the incremental sync does not
skip them) and rewinding cursors; the sync that follows is an ordinary incremental one. Unchanged
chunks are re-written from the embedding cache, so they cost no embedding."""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from sqlalchemy import select, update

from connectors.base import document_id
from connectors.checkpoints import changed_part, parse_time, stamp
from indexer.catalog import Catalog
from indexer.catalog.schema import documents

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FORGOTTEN = ""  # a version no connector produces: the document is read again
BATCH = 500
MAX_DURATION = dt.timedelta(days=3650)


def parse_duration(text: str) -> dt.timedelta:
    """"90", "90s", "30m", "1h", "2d", "1w" → a timedelta (ValueError with the accepted forms otherwise)."""
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 1h, 2d, 1w)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"not a duration: {text!r} is longer than {MAX_DURATION.days} days")
    return dt.timedelta(seconds=seconds)


def rewind(catalog: Catalog, row: Any, connector: Any, window: dt.timedelta) -> int:
    """Prepare the source's next sync to re-read what changed in the window; returns how many indexed
    documents were forgotten (items changed in the window but never indexed are found by the rewound
    cursors)."""
    cutoff = dt.datetime.now(dt.UTC) - window
    if row.kind == "git":
        doc_ids = _git_touched(connector, cutoff)
    else:
        _rewind_cursors(catalog, row.name, cutoff)
        doc_ids = _changed_in_window(catalog, row.name, cutoff)
    forgotten = _forget_versions(catalog, row.name, doc_ids)
    log.info("reindex --since %s of %s: %d documents will be read again", window, row.name, forgotten)
    return forgotten


def _git_touched(connector: Any, cutoff: dt.datetime) -> set[str]:
    """Ids of the files touched by commits since `cutoff` reachable from the source's ref."""
    git_dir = connector._prepare(fetch=True)  # the connector owns cloning/fetching; reuse it
    commit = connector._resolve(git_dir)
    out = connector.git.run([f"--git-dir={git_dir}", "log", f"--since={cutoff.isoformat()}", "--no-renames",
                             "--format=", "--name-only", "-z", commit], timeout=connector.local_timeout)
    paths = {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p.strip()}
    return {document_id(connector.name, p.strip("\n")) for p in paths}


def _rewind_cursors(catalog: Catalog, source: str, cutoff: dt.datetime) -> None:
    checkpoint = catalog.get_checkpoint(source)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("scopes"), dict):
        return
    scopes = {}
    for key, scope in checkpoint["scopes"].items():
        cursor = parse_time((scope or {}).get("cursor"))
        scopes[key] = {**scope, "cursor": stamp(min(cursor, cutoff)) if cursor else None}
    catalog.set_checkpoint(source, {**checkpoint, "scopes": scopes})


def _changed_in_window(catalog: Catalog, source: str, cutoff: dt.datetime) -> set[str]:
    """Documents whose version says the source changed them since `cutoff`; documents whose version is
    not a change time (code files) count when the catalog indexed them since `cutoff`."""
    query = select(documents.c.id, documents.c.version, documents.c.indexed_at).where(documents.c.source == source)
    out: set[str] = set()
    with catalog.engine.connect() as conn:
        for doc_id, version, indexed_at in conn.execute(query):
            changed = parse_time(changed_part(version)) if version else None
            if (changed or indexed_at) >= cutoff:
                out.add(doc_id)
    return out


def _forget_versions(catalog: Catalog, source: str, doc_ids: set[str]) -> int:
    ids = sorted(doc_ids)
    forgotten = 0
    with catalog.engine.begin() as conn:
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            forgotten += conn.execute(update(documents).where(documents.c.source == source,
                                                              documents.c.id.in_(batch))
                                      .values(version=FORGOTTEN)).rowcount
    return forgotten



def rewind_for_job(catalog: Catalog, row: Any, connector: Any, job_id: str) -> int | None:
    """Apply the job's `since_seconds` parameter, if it has one (call after building the connector,
    before the crawl); returns how many documents were forgotten, or None for an ordinary job."""
    job = catalog.get_job(job_id)
    seconds = (job.params or {}).get("since_seconds") if job else None
    if not seconds:
        return None
    return rewind(catalog, row, connector, dt.timedelta(seconds=float(seconds)))
