"""Rich progress for long work: a sync running in this process, or jobs watched through the catalog/API."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from indexer.pipeline.sync import SyncCounts

FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")


class SyncProgress:
    """Two lines: files read (lexically indexed) and chunks embedded; the second has a total and ETA."""

    def __init__(self, console: Console, enabled: bool = True, pending_total: Any = None) -> None:
        self.enabled = enabled
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                                 console=console, disable=not enabled, transient=False)
        self.files = self.progress.add_task("files", total=None, detail="")
        self.chunks = self.progress.add_task("embedding", total=None, detail="", visible=False)

    def __enter__(self) -> SyncProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, phase: str, counts: SyncCounts, pending: int | None = None) -> None:
        detail = (f"changed {counts.files_changed} skipped {counts.files_skipped} "
                  f"deleted {counts.files_deleted} failed {counts.files_failed}")
        self.progress.update(self.files, completed=counts.files_seen, detail=detail)
        if phase == "dense":
            self.progress.update(self.chunks, visible=True, completed=counts.chunks_embedded, total=pending,
                                 detail=f"chunks written {counts.chunks_written}")


def describe_rates(job: dict) -> str:
    """"12.5 files/s, 40.1 chunks/s, ETA 1m20s" from a job's recorded progress (missing parts left out)."""
    parts = []
    if job.get("items_per_second") is not None:
        parts.append(f"{job['items_per_second']:g} files/s")
    if job.get("chunks_per_second") is not None:
        parts.append(f"{job['chunks_per_second']:g} chunks/s")
    if job.get("eta_seconds") is not None and job.get("state") in ("running", "cancelling"):
        parts.append(f"ETA {format_seconds(job['eta_seconds'])}")
    return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class JobsView:
    """One line per job: source and state, a bar of chunks embedded (done of total), counts, rates, ETA."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                                 console=console, disable=not enabled, transient=False)
        self.rows: dict[str, Any] = {}

    def __enter__(self) -> JobsView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, job: dict) -> None:
        description = f"{job['source']} [dim]{job['kind']}[/dim] {job['state']}"
        if job.get("phase") and job["state"] not in FINISHED:
            description += f" ({job['phase']})"
        detail = (f"files {job.get('files_seen', 0)} changed {job.get('files_changed', 0)} "
                  f"skipped {job.get('files_skipped', 0)} deleted {job.get('files_deleted', 0)} "
                  f"failed {job.get('files_failed', 0)} embedded {job.get('chunks_embedded', 0)}")
        rates = describe_rates(job)
        detail += f"  {rates}" if rates else ""
        if job.get("stalled") and job["state"] not in FINISHED:
            detail += f"  [yellow]{job['stalled']}[/yellow]"
        total = job.get("total") or None
        if job["id"] not in self.rows:
            self.rows[job["id"]] = self.progress.add_task(description, total=total, detail=detail)
        self.progress.update(self.rows[job["id"]], description=description, total=total,
                             completed=job.get("done") or 0, detail=detail)


def watch_jobs(fetch: Callable[[str], dict], job_ids: Sequence[str], console: Console, enabled: bool = True,
               poll: float = 0.5) -> list[dict]:
    """Poll jobs (through the API or the catalog) until every one has finished; returns their last state."""
    latest: dict[str, dict] = {}
    with JobsView(console, enabled=enabled) as view:
        while True:
            for job_id in job_ids:
                if latest.get(job_id, {}).get("state") not in FINISHED:
                    latest[job_id] = fetch(job_id)
                    view.update(latest[job_id])
            if all(latest[j]["state"] in FINISHED for j in job_ids):
                return [latest[j] for j in job_ids]
            time.sleep(poll)


def watch_remote_job(client: Any, job_id: str, console: Console, enabled: bool = True) -> dict:
    """Poll a server job until it ends, showing its counts, rates and ETA."""
    return watch_jobs(client.job, [job_id], console, enabled=enabled)[0]
