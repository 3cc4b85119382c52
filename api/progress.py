"""Rich progress for long work: a sync running in this process, or jobs watched through the catalog/API."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

from indexer.pipeline.sync import SyncCounts

FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")


REFRESH = 0.5  # seconds between two counts of the chunks still to embed (one catalog query each)


class _Count(ProgressColumn):
    """`done/total`, or just `done` while the total is unknown (never `2018/?`)."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        return Text(f"{done}/{int(task.total)}" if task.total is not None else str(done), style="progress.download")


class _Time(ProgressColumn):
    """`ETA 3m10s`, counting down from the estimate made when progress last moved (`eta_at`, set by
    SyncProgress), else the time spent so far."""

    def render(self, task: Task) -> Text:
        eta_at = task.fields.get("eta_at")
        if not task.finished and eta_at is not None:
            return Text(f"ETA {format_seconds(max(eta_at - time.monotonic(), 0))}", style="progress.remaining")
        return Text(format_seconds((task.finished_time if task.finished else task.elapsed) or 0),
                    style="progress.elapsed")


class SyncProgress:
    """Two lines: files read (and searchable by keyword), then chunks embedded out of those the files left
    to embed. That total is known once the files are read (the chunks pending in the catalog, counted by
    `pending`), so the second line has a bar and an ETA, as the server's job view does."""

    def __init__(self, console: Console, enabled: bool = True, pending: Callable[[], int] | None = None) -> None:
        self.enabled = enabled
        self.pending = pending
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Count(),
                                 TextColumn("{task.fields[detail]}"), _Time(),
                                 console=console, disable=not enabled, transient=False)
        self.files = self.progress.add_task("files", total=None, detail="")
        self.chunks = self.progress.add_task("embedding", total=None, detail="", visible=False)
        self.to_embed: int | None = None  # chunks pending when the embedding started
        self.cleared = 0
        self.counted_at = 0.0

    def __enter__(self) -> SyncProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # the error is reported on its own: no half-drawn bars (or blank line) above it
            if self.enabled:
                self.progress.live.transient = True
                self.progress.live.stop()
            return
        if self.to_embed is not None:  # the last count may have been skipped (REFRESH)
            self.progress.update(self.chunks, completed=self.to_embed)
        self.progress.__exit__(*exc)

    def update(self, phase: str, counts: SyncCounts) -> None:
        detail = (f"changed {counts.files_changed} skipped {counts.files_skipped} "
                  f"deleted {counts.files_deleted} failed {counts.files_failed}")
        self.progress.update(self.files, completed=counts.files_seen, detail=detail)
        if phase not in ("embedding", "dense"):
            return
        if self.to_embed is None:  # the files are all read: their line is complete, the chunks' total known
            self.progress.update(self.files, total=counts.files_seen)
            self.to_embed = self.pending() if self.pending else None
            self.progress.reset(self.chunks, total=self.to_embed, visible=True)  # its clock starts now
        done = self._done(counts)
        task = self.progress.tasks[self.chunks]
        if done != task.completed and done > 0 and task.total and task.elapsed:
            # The average rate since the embedding started, as the server's job ETA (workers.jobs.JobMeter):
            # batches land a minute apart on a busy machine, too far apart for rich's 30-second speed window.
            self.progress.update(self.chunks, eta_at=time.monotonic() + task.elapsed * (task.total - done) / done)
        self.progress.update(self.chunks, completed=done, detail=f"chunks written {counts.chunks_written}")

    def _done(self, counts: SyncCounts) -> int:
        """Chunks cleared from the pending queue (embedded, or found in the embedding cache)."""
        if self.pending is None or self.to_embed is None:
            return counts.chunks_embedded
        now = time.monotonic()
        if now - self.counted_at >= REFRESH:
            self.counted_at = now
            self.cleared = max(self.to_embed - self.pending(), 0)
        return self.cleared


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
