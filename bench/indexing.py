"""Indexing throughput on a real repository: files/s, chunks/s, time until lexically searchable and
until fully embedded, then an unchanged re-sync as a share of the full index.

    .venv/bin/python bench/indexing.py [--repo PATH] [--ref REF]

Numbers are printed as a table and as one JSON line (to keep with a note)."""
from __future__ import annotations

import argparse
import json
import multiprocessing.forkserver
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.pipeline import prepare as lexical_prep
from indexer.pipeline.apply import BatchCounts
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import fulltext
from workers.jobs import run_sync_job


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--ref", default="")
    ap.add_argument("--lexical-only", action="store_true",
                    help="stop each sync after the keyword phase (no embedding): lexical throughput alone")
    ap.add_argument("--writer-threads", type=int, nargs="*", default=[],
                    help="tantivy writer threads to compare, run alternately (e.g. 0 1); lexical only")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds for --writer-threads")
    a = ap.parse_args()
    if a.writer_threads:
        compare_writer_threads(a.repo, a.ref, a.writer_threads, a.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        svc = IndexServices.open(Settings(data_dir=Path(tmp)))
        if a.lexical_only:
            svc.pipeline.embed_pending = lambda *_a, **_k: BatchCounts()
        svc.catalog.upsert_source("bench", "git", {"location": a.repo, "ref": a.ref}, ["public"])
        marks: dict[str, float] = {}
        t0 = time.perf_counter()
        cpu0 = time.process_time()

        def observe(phase: str, _counts) -> None:
            if phase == "embedding" and "lexical_done" not in marks:
                marks["lexical_done"] = time.perf_counter() - t0
                marks["lexical_cpu_main"] = time.process_time() - cpu0
                marks["lexical_cpu_workers"] = workers_cpu_seconds()  # the pool was made by this sync
                marks["lexical_cpu"] = marks["lexical_cpu_main"] + marks["lexical_cpu_workers"]

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
           "lexical_chunks_per_cpu_s": round(full.chunks_written / max(marks.get("lexical_cpu", 0.0), 1e-9), 1),
           "lexical_cpu_main_s": round(marks.get("lexical_cpu_main", 0.0), 2),
           "lexical_cpu_workers_s": round(marks.get("lexical_cpu_workers", 0.0), 2),
           "index_workers": svc.settings.index_workers,
           "load_average": round(os.getloadavg()[0], 1),
           "embed_chunks_per_s": round(full.chunks_embedded / max(total - lexical, 1e-9), 1),
           "resync_seconds": round(resync, 3), "resync_share": round(resync / total, 4),
           "resync_embedded": again.chunks_embedded}
    for k, v in row.items():
        print(f"{k:>24}: {v}")
    print(json.dumps(row))


def workers_cpu_seconds() -> float:
    """CPU seconds of the batch-preparing worker processes and the forkserver they come from (all of
    this process's pool, which the timed sync started): /proc, Linux only; 0 elsewhere."""
    pids = [p.pid for p in lexical_prep.pool_processes()]
    forkserver = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
    pids += [forkserver] if forkserver else []
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def lexical_run(repo: str, ref: str) -> dict[str, float]:
    """One keyword-only sync into a fresh data dir: chunks, wall seconds and CPU seconds (all threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = IndexServices.open(Settings(data_dir=Path(tmp)))
        svc.pipeline.embed_pending = lambda *_a, **_k: BatchCounts()
        svc.catalog.upsert_source("bench", "git", {"location": repo, "ref": ref}, ["public"])
        t0, cpu0 = time.perf_counter(), time.process_time()
        counts = run_sync_job(svc, "bench")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        svc.close()
    return {"chunks": counts.chunks_written, "wall_s": wall, "cpu_s": cpu}


def compare_writer_threads(repo: str, ref: str, variants: list[int], rounds: int) -> None:
    """Lexical throughput per tantivy writer thread count, variants alternated so load drifts hit all."""
    results: dict[int, list[dict[str, float]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for threads in variants:
            fulltext.WRITER_THREADS = threads
            results[threads].append(lexical_run(repo, ref))
    rows = {}
    for threads, runs in results.items():
        chunks = runs[0]["chunks"]
        wall = statistics.median(r["wall_s"] for r in runs)
        cpu = statistics.median(r["cpu_s"] for r in runs)
        rows[threads] = {"writer_threads": threads, "chunks": chunks, "median_wall_s": round(wall, 2),
                         "chunks_per_s": round(chunks / wall, 1), "chunks_per_cpu_s": round(chunks / cpu, 1)}
        print(json.dumps(rows[threads]))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
