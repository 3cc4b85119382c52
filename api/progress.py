"""Rich progress for long work: counts, rate and ETA for a sync, locally or for a remote job."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from indexer.sync import SyncCounts


class SyncProgress:
    """Two lines: files read (lexically indexed) and chunks embedded; the second has a total and ETA."""

    def __init__(self, console: Console, enabled: bool = True, pending_total: Any = None) -> None:
        self.enabled = enabled
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                                 console=console, disable=not enabled, transient=False)
        self.files = self.progress.add_task("files", total=None, detail="")
        self.chunks = self.progress.add_task("embedding", total=None, detail="", visible=False)

    def __enter__(self) -> "SyncProgress":
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


def watch_remote_job(client: Any, job_id: str, console: Console, enabled: bool = True) -> dict:
    """Poll a server job until it ends, showing its counts."""
    with SyncProgress(console, enabled=enabled) as view:
        def on_update(job: dict) -> None:
            c = job.get("counts") or {}
            counts = SyncCounts(**{k: v for k, v in c.items() if k in SyncCounts.__dataclass_fields__})
            view.update(c.get("phase", "lexical"), counts)
        return client.wait(job_id, on_update=on_update)
