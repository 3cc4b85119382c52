"""How long a background generation rebuild takes next to the first indexing, and what it costs queries.

Indexes a git repository, then reopens it as if INDEX_VERSION had been bumped (same model, so the
embedding cache answers) and times the rebuild, while a thread searches the serving generation;
query latency during the build is compared with latency measured just before it, in the same run.

    nice -n 10 .venv/bin/python bench/generation_rebuild.py --repo /work/main
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import indexer.services as services_module
from indexer.generations.serving import GenerationReader
from indexer.models import Principal
from indexer.services import IndexServices, build_embedder
from indexer.settings import Settings
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

QUERIES = ("open the index services", "parse a git tree", "hybrid search fusion", "token hashing",
           "retry with backoff", "chunk a python file into symbols")
WHO = Principal("bench", admin=True)


def latencies(searcher: object, seconds: float, stop: threading.Event | None = None) -> list[float]:
    out, deadline, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        started = time.perf_counter()
        searcher.search(QUERIES[i % len(QUERIES)], WHO, limit=10)
        out.append(time.perf_counter() - started)
        i += 1
    return out


class FollowingSearcher:
    """Searches whatever generation serves, as the app does (see api.app.follow_generation_swap)."""

    def __init__(self, svc: IndexServices) -> None:
        self.svc, self.current = svc, GenerationReader(build_searcher(svc))
        svc.generations.on_swap(self._follow)

    def _follow(self) -> None:
        retired, self.current = self.current, GenerationReader(build_searcher(self.svc))
        retired.retire()

    def search(self, *args: object, **kwargs: object) -> object:
        return self.current.search(*args, **kwargs)


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    embedder = build_embedder(Settings())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        version = services_module.INDEX_VERSION
        services_module.INDEX_VERSION = version - 1
        svc = IndexServices.open(settings, embedder=embedder)
        svc.catalog.upsert_source("repo", "git", {"location": args.repo, "ref": ""}, ["public"])
        started = time.perf_counter()
        counts = run_sync_job(svc, "repo")
        first = time.perf_counter() - started
        svc.close()
        services_module.INDEX_VERSION = version

        svc = IndexServices.open(settings, embedder=embedder)
        searcher = FollowingSearcher(svc)
        idle = latencies(searcher, args.idle_seconds)
        done = threading.Event()
        during: list[float] = []
        reader = threading.Thread(target=lambda: during.extend(latencies(searcher, 3600, done)))
        reader.start()
        started = time.perf_counter()
        assert svc.generations.run(), "the rebuild did not complete"
        rebuild = time.perf_counter() - started
        done.set()
        reader.join()
        chunks = len(svc.fulltext.ids())
        searcher.current.close()
        svc.close()
    print(f"documents={counts.files_changed} chunks={chunks}")
    print(f"first index: {first:.1f}s; rebuild (INDEX_VERSION bump, cached embeddings): {rebuild:.1f}s "
          f"(ratio {rebuild / first:.2f})")
    print(f"query p50/p95 ms idle: {p(idle, 50):.1f}/{p(idle, 95):.1f} (n={len(idle)}); during the rebuild: "
          f"{p(during, 50):.1f}/{p(during, 95):.1f} (n={len(during)}); p50 ratio {p(during, 50) / p(idle, 50):.2f}")


if __name__ == "__main__":
    main()
