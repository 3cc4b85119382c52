"""Indexing throughput on a real repository: files/s, chunks/s, time until lexically searchable and
until fully embedded, then an unchanged re-sync as a share of the full index.

    .venv/bin/python bench/indexing.py [--repo PATH] [--ref REF]

Numbers are printed as a table and as one JSON line (to keep with a note)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.services import IndexServices  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from workers.jobs import run_sync_job  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--ref", default="")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = IndexServices.open(Settings(data_dir=Path(tmp)))
        svc.catalog.upsert_source("bench", "git", {"location": a.repo, "ref": a.ref}, ["public"])
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        def observe(phase: str, _counts) -> None:
            if phase == "embedding" and "lexical_done" not in marks:
                marks["lexical_done"] = time.perf_counter() - t0

        full = run_sync_job(svc, "bench", observe=observe)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        again = run_sync_job(svc, "bench")
        resync = time.perf_counter() - t1
        svc.close()
    lexical = marks.get("lexical_done", total)
    row = {"repo": a.repo, "files_indexed": full.files_changed, "files_skipped": full.files_skipped,
           "chunks": full.chunks_written, "chunks_embedded": full.chunks_embedded,
           "seconds_until_lexical": round(lexical, 2), "seconds_until_embedded": round(total, 2),
           "files_per_s": round(full.files_changed / total, 1), "chunks_per_s": round(full.chunks_written / total, 1),
           "lexical_chunks_per_s": round(full.chunks_written / lexical, 1),
           "embed_chunks_per_s": round(full.chunks_embedded / max(total - lexical, 1e-9), 1),
           "resync_seconds": round(resync, 3), "resync_share": round(resync / total, 4),
           "resync_embedded": again.chunks_embedded}
    for k, v in row.items():
        print(f"{k:>24}: {v}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
