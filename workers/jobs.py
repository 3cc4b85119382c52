"""Runs a source's sync as a recorded job: the one code path behind CLI, API and Celery tasks."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from connectors.registry import build_connector
from indexer.services import IndexServices
from indexer.sync import SyncCounts, SyncRunner

log = logging.getLogger(__name__)

Observer = Callable[[str, SyncCounts], None]


def new_job(services: IndexServices, source: str, kind: str = "index") -> str:
    job_id = str(uuid.uuid4())
    services.catalog.create_job(job_id, source, kind)
    return job_id


def run_sync_job(services: IndexServices, source: str, job_id: str | None = None, full: bool = False,
                 observe: Observer | None = None) -> SyncCounts:
    """Sync one source and record the job's state and counts; the error is recorded, then re-raised."""
    catalog = services.catalog
    job_id = job_id or new_job(services, source, "reindex" if full else "index")
    row = catalog.get_source(source)
    if row is None:
        catalog.update_job(job_id, state="failed", error=f"no source named {source!r}")
        raise LookupError(f"no source named {source!r}")
    catalog.update_job(job_id, state="running")
    catalog.set_source_state(source, "syncing")
    last_write = [0.0]

    def on_progress(phase: str, counts: SyncCounts) -> None:
        now = time.monotonic()
        if now - last_write[0] > 1.0:  # the catalog is not a progress bar: write at most once a second
            catalog.update_job(job_id, counts=counts.as_dict() | {"phase": phase})
            last_write[0] = now
        if observe:
            observe(phase, counts)

    try:
        connector = build_connector(row, services.settings)
        counts = SyncRunner(services.pipeline).run(connector, full=full, observe=on_progress)
    except Exception as exc:
        log.exception("job %s for source %s failed", job_id, source)
        catalog.update_job(job_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        catalog.set_source_state(source, "error", error=f"{type(exc).__name__}: {exc}")
        raise
    catalog.update_job(job_id, state="succeeded", counts=counts.as_dict())
    catalog.set_source_state(source, "idle")
    return counts
