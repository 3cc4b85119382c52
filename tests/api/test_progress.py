"""In-process progress: the embedding line gets its total (the chunks the files left to embed) and an ETA,
and no line ever shows an unknown total as `N/?`."""
from __future__ import annotations

import io
import time

from rich.console import Console

from api.progress import SyncProgress
from indexer.pipeline.sync import SyncCounts


def test_the_embedding_line_has_a_total_and_an_eta_and_ends_complete(monkeypatch):
    monkeypatch.setattr("api.progress.REFRESH", 0.0)
    pending = [40]
    sink = io.StringIO()
    progress = SyncProgress(Console(file=sink, width=120), pending=lambda: pending[0])
    counts = SyncCounts(files_seen=12, files_changed=12)
    with progress:
        progress.update("lexical", counts)
        files = progress.progress.tasks[progress.files]
        assert files.total is None and "?" not in str(progress.progress.columns[3].render(files))
        progress.update("embedding", counts)  # the files are read: 40 chunks wait for embedding
        chunks = progress.progress.tasks[progress.chunks]
        assert (files.total, chunks.total, chunks.visible) == (12, 40, True)
        for left in (30, 20, 10):
            time.sleep(0.05)
            pending[0] = left
            counts.chunks_embedded += 10
            progress.update("dense", counts)
        assert chunks.completed == 30
        assert "ETA" in str(progress.progress.columns[5].render(chunks))
        pending[0] = 0
    assert chunks.completed == 40
    assert "12/12" in sink.getvalue() and "40/40" in sink.getvalue() and "/?" not in sink.getvalue()


def test_a_failed_sync_leaves_no_progress_lines_behind():
    sink = io.StringIO()
    try:
        with SyncProgress(Console(file=sink, width=120), pending=lambda: 0) as progress:
            progress.update("lexical", SyncCounts(files_seen=3))
            raise RuntimeError("the repository is gone")
    except RuntimeError:
        pass
    assert sink.getvalue().strip() == ""
