"""Distributed indexing throughput: 1 vs 2 embed worker processes, and the queue path vs in-process.

Each run indexes the same repository from scratch (fresh PostgreSQL database, so a cold embedding
cache; fresh data dir). Every embedder uses one ONNX thread, so two embed workers are a fair test on
two cores. The distributed runs are a real deployment: `cairn serve` (index node) + one `sync`
worker + N `embed` workers on the local Redis (db 11, flushed: do not run it next to tests/distributed) and PostgreSQL.

    git clone /work/.mirror/psf+requests/repo /tmp/queue-requests
    nice -n 10 .venv/bin/python bench/distributed_scaling.py --repo /tmp/queue-requests
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "distributed"))

from cluster import Cluster, services_up, wait_for  # noqa: E402

from api.tokens import TokenStore  # noqa: E402
from indexer.catalog.catalog import Catalog  # noqa: E402
from indexer.catalog.db import make_engine  # noqa: E402
from indexer.services import IndexServices  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from workers.jobs import run_sync_job  # noqa: E402

SOURCE = "bench"


@dataclass
class Result:
    mode: str
    files: int
    chunks: int
    seconds: float
    cpu_seconds: float = 0.0  # every process of the run (the machine is shared: wall time is noisy)
    per_process: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process and its children
    # during the indexing job (start-up, imports and model loading left out)
    embedders: list[str] = field(default_factory=list)  # which of those processes are embed workers

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def embedded_run(repo: Path, work: Path, batch_docs: int) -> Result:
    """The default deployment: one process, tasks in-process (lexical phase, then embedding)."""
    settings = Settings(data_dir=work / "embedded", embed_threads=1)
    services = IndexServices.open(settings)
    try:
        services.catalog.upsert_source(SOURCE, "git", {"location": str(repo), "ref": ""}, ["public"])
        started, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        counts = run_sync_job(services, SOURCE)
        seconds = time.perf_counter() - started
        return Result("embedded (in-process)", counts.files_changed,
                      len(services.catalog.chunk_ids_of_source(SOURCE)), seconds,
                      _cpu(resource.RUSAGE_SELF) - cpu)
    finally:
        services.close()


def distributed_run(repo: Path, work: Path, embed_workers: int, batch_docs: int) -> Result:
    cluster = Cluster(work / f"distributed-{embed_workers}", redis_db=11, settings={
        "CAIRN_EMBED_THREADS": "1", "CAIRN_QUEUE_BATCH_DOCS": str(batch_docs)}).create()
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    result: Result | None = None
    try:
        cluster.start_api()
        cluster.start_worker("sync", "sync")
        embedders = [f"embed{n + 1}" for n in range(embed_workers)]
        for name in embedders:
            cluster.start_worker(name, "embed")
        wait_for(lambda: all(b"ready." in p.log.read_bytes() for p in cluster.procs[1:]), 60, "workers")
        catalog = Catalog(make_engine(cluster.database_url))
        token, _ = TokenStore(catalog.engine).create("bench", [], admin=True)
        catalog.upsert_source(SOURCE, "git", {"location": str(repo), "ref": ""}, ["public"])
        at_start = {p.name: tree_cpu(p.popen.pid) for p in cluster.procs}
        with cluster.client(token) as client:
            job_id = client.post(f"/v1/sources/{SOURCE}/reindex", json={}).json()["id"]
        job = wait_for(lambda: _finished(catalog, job_id), 3600, "the indexing job", every=0.5)
        if job.state != "succeeded":
            raise RuntimeError(f"job {job_id} {job.state}: {job.error}")
        seconds = (job.finished_at - job.created_at).total_seconds()
        result = Result(f"distributed, {embed_workers} embed worker(s)", job.counts["files_changed"],
                        len(catalog.chunk_ids_of_source(SOURCE)), seconds,
                        per_process={p.name: round(tree_cpu(p.popen.pid) - at_start[p.name], 2)
                                     for p in cluster.procs}, embedders=embedders)
        catalog.engine.dispose()
    finally:
        cluster.destroy()  # waits for every process, so their CPU time is in RUSAGE_CHILDREN
    assert result is not None
    result.cpu_seconds = _cpu(resource.RUSAGE_CHILDREN) - cpu
    return result


def cpu_bound(one: Result, two: Result, cores: int = 2) -> float:
    """The scaling the CPU work allows: the 1-worker run cannot be shorter than its embed worker's CPU time (one
    process, one thread) and the 2-worker run than the CPU of all its processes spread over the cores; this is
    their ratio, the figure two workers would reach with no idle core at all."""
    embedding = sum(one.per_process[name] for name in one.embedders)
    everything = sum(two.per_process.values())
    return embedding / (everything / cores) if everything else 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process and its live descendants (a Celery worker's prefork
    children do the work), read from /proc."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, CPU seconds)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _finished(catalog: Catalog, job_id: str):
    job = catalog.get_job(job_id)
    return job if job and job.state in ("succeeded", "failed", "cancelled") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="git repository to index (default: this one)")
    parser.add_argument("--batch-docs", type=int, default=16, help="documents per queued batch")
    args = parser.parse_args()
    reason = services_up()
    if reason:
        sys.exit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory(prefix="cairn-dist-bench-") as tmp:
        work = Path(tmp)
        results = [embedded_run(args.repo, work, args.batch_docs),
                   distributed_run(args.repo, work, 1, args.batch_docs),
                   distributed_run(args.repo, work, 2, args.batch_docs)]
    embedded, one, two = results
    for r in results:
        print(f"{r.mode:34s} files={r.files:5d} chunks={r.chunks:6d} seconds={r.seconds:8.1f} "
              f"chunks/s={r.chunks_per_second:7.1f} cpu_seconds={r.cpu_seconds:8.1f}")
        if r.per_process:
            print("    CPU seconds per process (with its children): "
                  + ", ".join(f"{name} {cpu:.1f}" for name, cpu in r.per_process.items()))
    print(f"scaling 1 -> 2 embed workers: x{two.chunks_per_second / one.chunks_per_second:.2f} throughput")
    bound = cpu_bound(one, two)
    print(f"ceiling from the CPU work: x{bound:.2f} (if one worker's run lasted exactly its embedding CPU and the "
          "2-worker run kept both cores busy with the CPU of all its processes)")
    print(f"queue path (1 embed worker) vs embedded in-process: x{one.seconds / embedded.seconds:.2f} time, "
          f"x{one.cpu_seconds / embedded.cpu_seconds:.2f} CPU")
    print(json.dumps({"results": [asdict(r) for r in results],
                      "scaling_1_to_2": round(two.chunks_per_second / one.chunks_per_second, 3),
                      "cpu_bound": round(bound, 3),
                      "queue_time_ratio": round(one.seconds / embedded.seconds, 3),
                      "queue_cpu_ratio": round(one.cpu_seconds / embedded.cpu_seconds, 3)}))


if __name__ == "__main__":
    main()
