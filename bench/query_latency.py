"""Embedded query latency: index a real repository, then time hybrid searches (p50/p95 per stage).

    .venv/bin/python bench/query_latency.py [--repo PATH] [--queries N]"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.models import Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

QUERIES = ["retry with exponential backoff", "where are api tokens hashed", "parse configuration file",
           "how is the permission filter built", "chunk a python file into functions", "HTTP client timeout",
           "delete documents from the index", "embedding cache lookup", "git ls-tree blob hash",
           "reciprocal rank fusion", "raise an error when the source is missing", "read settings from environment"]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = IndexServices.open(Settings(data_dir=Path(tmp)))
        svc.catalog.upsert_source("bench", "git", {"location": a.repo, "ref": ""}, ["group:eng"])
        counts = run_sync_job(svc, "bench")
        searcher = build_searcher(svc)
        who = Principal("bench", frozenset({"eng"}))
        stages: dict[str, list[float]] = {}
        rng = random.Random(7)
        searcher.search(QUERIES[0], who)  # warm-up
        for _ in range(a.queries):
            result = searcher.search(rng.choice(QUERIES), who, limit=10)
            for k, v in result.timings.items():
                stages.setdefault(k, []).append(v * 1000)
        searcher.close()
        svc.close()
    print(f"chunks indexed: {counts.chunks_written}; queries: {a.queries}")
    summary = {}
    for k, v in sorted(stages.items()):
        summary[k] = {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(pct(v, 95), 2)}
        print(f"{k:>10}: p50 {summary[k]['p50_ms']:8.2f} ms  p95 {summary[k]['p95_ms']:8.2f} ms")
    print(json.dumps({"chunks": counts.chunks_written, "stages": summary}))


if __name__ == "__main__":
    main()
