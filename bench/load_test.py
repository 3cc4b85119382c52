"""Load test: concurrent clients mixing REST search, Continue context and MCP tool calls against a real
`cairn serve` process on loopback, while full reindexes of the indexed source run back to back.

    .venv/bin/python bench/load_test.py --repo /tmp/ops-requests --clients 50 --duration 60

The server is a separate process (its own data directory, indexed first with `cairn index`; pass
--data-dir to reuse one). Reports requests, errors (any non-2xx including 429, any transport error or
timeout, any MCP tool error), p50/p95/p99 per kind, throughput, reindex jobs, and the server's RSS
(VmRSS, RssAnon and RssFile from /proc/<pid>/status, sampled every second) from the end of warm-up
(the first --warmup-fraction of the run) to the end. Prints a table on stderr and one JSON line on
stdout; exits 1 when there were errors or the heap (RssAnon: a leak shows there, while RssFile
follows the size of the mapped index files) grew by more than --max-rss-growth-mb."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CAIRN = str(Path(sys.executable).with_name("cairn"))
SOURCE = "load"
QUERIES = ["how are redirects followed", "retry with exponential backoff", "parse the content type header",
           "where are cookies merged into the request", "session keeps connection pool",
           "raise an error for a bad status code", "proxy environment variables", "encode multipart form data",
           "timeout for connect and read", "authentication with digest", "stream the response body in chunks",
           "def prepare_url", "HTTPAdapter send", "chunk a python file into functions", "read settings from env"]
GREP_PATTERNS = ["def get", "return self", "import os", "raise ValueError", "class Session", "timeout"]
SYMBOLS = ["Session", "HTTPAdapter", "prepare_url", "get_auth_from_url", "request", "Response", "merge_setting"]
KINDS = (("search", 4), ("context", 3), ("mcp", 3))
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)  # (source, path) seen in hits, for read_file

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    started: float = field(default_factory=time.monotonic)

    def fail(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 20:
            self.samples.append(f"{time.monotonic() - self.started:.1f}s {kind}: {what}"[:300])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def memory_kb(pid: int) -> tuple[int, int, int]:
    """(VmRSS, RssAnon, RssFile) of a process: heap growth shows in RssAnon; RssFile is the mapped index
    files' pages in the page cache (their size follows the index on disk, not the requests served)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields.get(name, "0 kB").split()[0]) for name in ("VmRSS", "RssAnon", "RssFile"))


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cairn(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([CAIRN, *args], env=env, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"cairn {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def prepare(data_dir: Path, repo: str, env: dict[str, str]) -> tuple[str, str]:
    """Index the repository once (reused when the data dir already has it); mint a reader and an admin token."""
    if not (data_dir / "catalog.sqlite3").exists():
        print(f"indexing {repo} into {data_dir} ...", file=sys.stderr)
        print(cairn(env, "index", repo, "--name", SOURCE, "--access", "group:eng", "--json").strip(), file=sys.stderr)
    reader = json.loads(cairn(env, "tokens", "create", "--user", "load-reader", "--group", "eng", "--json"))["token"]
    admin = json.loads(cairn(env, "tokens", "create", "--user", "load-admin", "--admin", "--json"))["token"]
    return reader, admin


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([CAIRN, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"cairn serve exited with {server.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("cairn serve did not become healthy")


class LoadClient:
    """One simulated user: picks a kind of call at random, sends it, records latency or the error."""

    def __init__(self, http: httpx.AsyncClient, token: str, stats: Stats, seed: int) -> None:
        self.http, self.stats, self.rng = http, stats, random.Random(seed)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.next_id = 0

    async def run(self, deadline: float) -> None:
        kinds, weights = zip(*KINDS, strict=True)
        while time.monotonic() < deadline:
            kind = self.rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                problem = await getattr(self, kind)()
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc!r}"
            self.stats.latencies[kind].append(time.perf_counter() - started)
            if problem:
                self.stats.fail(kind, problem)

    async def post(self, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.auth | (headers or {}))

    async def search(self) -> str | None:
        resp = await self.post("/v1/search", {"query": self.rng.choice(QUERIES), "limit": 10})
        if resp.status_code != 200:
            return f"{resp.status_code} {resp.text[:200]}"
        hits = resp.json()["hits"]
        if hits and len(self.stats.documents) < 200:
            self.stats.documents.append({"source": hits[0]["source"], "path": hits[0]["path"]})
        return None

    async def context(self) -> str | None:
        body = {"query": "", "fullInput": self.rng.choice(QUERIES), "options": {"repos": [SOURCE], "limit": 8}}
        resp = await self.post("/v1/context", body)
        if resp.status_code != 200 or not isinstance(resp.json(), list):
            return f"{resp.status_code} {resp.text[:200]}"
        return None

    def tool_call(self) -> tuple[str, dict]:
        tool = self.rng.choice(["search", "search", "grep", "find_symbol", "read_file", "list_sources"])
        if tool == "read_file" and self.stats.documents:
            doc = self.rng.choice(self.stats.documents)
            return tool, {**doc, "start_line": 1, "end_line": 60}
        return {"search": ("search", {"query": self.rng.choice(QUERIES), "limit": 5}),
                "grep": ("grep", {"pattern": self.rng.choice(GREP_PATTERNS), "limit": 20}),
                "find_symbol": ("find_symbol", {"name": self.rng.choice(SYMBOLS)}),
                }.get(tool, ("list_sources", {}))

    async def mcp(self) -> str | None:
        """A raw JSON-RPC `tools/call` over Streamable HTTP (stateless server: no session needed)."""
        self.next_id += 1
        name, arguments = self.tool_call()
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        resp = await self.post("/mcp", body, MCP_HEADERS)
        if resp.status_code != 200:
            return f"{resp.status_code} {resp.text[:200]}"
        answer = resp.json()
        if "error" in answer or answer.get("result", {}).get("isError"):
            return f"mcp {name}: {json.dumps(answer)[:200]}"
        return None


async def reindex_loop(http: httpx.AsyncClient, token: str, stop: asyncio.Event, stats: Stats,
                       jobs: dict[str, int]) -> None:
    """Full reindexes of the source, one after another, for as long as the load runs."""
    auth = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        resp = await http.post(f"/v1/sources/{SOURCE}/reindex", json={"full": True}, headers=auth)
        if resp.status_code != 202:
            stats.fail("reindex", f"{resp.status_code} {resp.text[:200]}")
            return
        job_id = resp.json()["id"]
        while True:
            await asyncio.sleep(0.5)
            job = (await http.get(f"/v1/jobs/{job_id}", headers=auth)).json()
            if job["state"] not in ("queued", "running"):
                break
        jobs[job["state"]] = jobs.get(job["state"], 0) + 1
        if job["state"] != "succeeded":
            stats.fail("reindex", f"job {job_id} {job['state']}: {job.get('error')}")


async def sample_rss(pid: int, stop: asyncio.Event, stats: Stats, samples: list[tuple]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, stats.requests, *memory_kb(pid)))
        await asyncio.sleep(1.0)
    samples.append((time.monotonic() - started, stats.requests, *memory_kb(pid)))


async def drive(base: str, pid: int, reader: str, admin: str, clients: int, duration: float,
                reindex: bool = True) -> dict:
    stats, jobs, samples = Stats(), {}, []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        warm = LoadClient(http, reader, Stats(), seed=0)
        for kind in ("search", "context", "mcp", "search", "mcp"):  # first calls load lazily built state
            await getattr(warm, kind)()
        stats.documents, stats.started = warm.stats.documents, time.monotonic()
        stop = asyncio.Event()
        background = [asyncio.create_task(sample_rss(pid, stop, stats, samples))]
        if reindex:
            background.append(asyncio.create_task(reindex_loop(http, admin, stop, stats, jobs)))
        started = time.monotonic()
        await asyncio.gather(*(LoadClient(http, reader, stats, seed=n + 1).run(started + duration)
                               for n in range(clients)))
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(asyncio.gather(*background), timeout=600)  # the reindex running now finishes
    return {"stats": stats, "jobs": jobs, "samples": samples, "elapsed": elapsed}


def report(run: dict, clients: int, warmup_fraction: float) -> dict:
    stats, samples, elapsed = run["stats"], run["samples"], run["elapsed"]
    kinds = {kind: {"requests": len(v), "errors": stats.errors.get(kind, 0),
                    "p50_ms": round(percentile(v, 50) * 1000, 1), "p95_ms": round(percentile(v, 95) * 1000, 1),
                    "p99_ms": round(percentile(v, 99) * 1000, 1), "max_ms": round(max(v, default=0) * 1000, 1)}
             for kind, v in sorted(stats.latencies.items())}
    load_samples = [s for s in samples if s[0] <= elapsed] or samples
    warm = next((s for s in load_samples if s[0] >= warmup_fraction * elapsed), load_samples[-1])
    end = load_samples[-1]
    rss = {"start_mb": mb(load_samples[0][2]), "after_warmup_mb": mb(warm[2]), "end_mb": mb(end[2]),
           "max_mb": mb(max(s[2] for s in load_samples)), "growth_mb": mb(end[2] - warm[2]),
           "anon_after_warmup_mb": mb(warm[3]), "anon_end_mb": mb(end[3]), "anon_growth_mb": mb(end[3] - warm[3]),
           "file_after_warmup_mb": mb(warm[4]), "file_end_mb": mb(end[4]), "file_growth_mb": mb(end[4] - warm[4]),
           "requests_measured": end[1] - warm[1], "samples": len(load_samples)}
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": stats.requests,
            "errors": sum(stats.errors.values()), "throughput_rps": round(stats.requests / elapsed, 1),
            "kinds": kinds, "reindex_jobs": run["jobs"], "rss": rss, "error_samples": stats.samples}


def print_table(result: dict) -> None:
    err = sys.stderr
    print(f"{result['clients']} clients, {result['seconds']} s: {result['requests']} requests, "
          f"{result['errors']} errors, {result['throughput_rps']} req/s; reindex jobs {result['reindex_jobs']}", file=err)
    for kind, k in result["kinds"].items():
        print(f"  {kind:>8}: {k['requests']:6d} req  {k['errors']:3d} err  p50 {k['p50_ms']:8.1f} ms  "
              f"p95 {k['p95_ms']:8.1f} ms  p99 {k['p99_ms']:8.1f} ms  max {k['max_ms']:8.1f} ms", file=err)
    r = result["rss"]
    print(f"  server RSS: start {r['start_mb']} MB, after warm-up {r['after_warmup_mb']} MB, end {r['end_mb']} MB, "
          f"max {r['max_mb']} MB; growth {r['growth_mb']} MB over {r['requests_measured']} requests "
          f"(heap/anon {r['anon_after_warmup_mb']} -> {r['anon_end_mb']} MB, {r['anon_growth_mb']:+} MB; "
          f"mapped files {r['file_after_warmup_mb']} -> {r['file_end_mb']} MB, {r['file_growth_mb']:+} MB)", file=err)
    for sample in result["error_samples"]:
        print(f"  error: {sample}", file=err)


def stop_server(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(ROOT), help="git repository to index (default: this one)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--data-dir", type=Path, default=None, help="reuse this data dir (indexed on first use)")
    ap.add_argument("--warmup-fraction", type=float, default=0.2, help="RSS baseline taken after this part of the run")
    ap.add_argument("--no-reindex", action="store_true", help="requests only (tells their memory from the reindex's)")
    ap.add_argument("--samples-out", type=Path, default=None,
                    help="write the memory samples [seconds, requests, rss_kb, anon_kb, file_kb] here as JSON")
    ap.add_argument("--relevance-floor", type=float, default=None,
                    help="the server's CAIRN_RELEVANCE_FLOOR (default: the setting's default; 0 = off)")
    ap.add_argument("--history-weight", type=float, default=None,
                    help="the server's CAIRN_HISTORY_WEIGHT (default: the setting's default; 0 = off)")
    ap.add_argument("--max-rss-growth-mb", type=float, default=64.0,
                    help="most the server's heap (RssAnon) may grow from warm-up to the end")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cairn-load-") as tmp:
        data_dir = (a.data_dir or Path(tmp) / "data").absolute()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(CAIRN_DATA_DIR=str(data_dir), CAIRN_RATE_LIMIT_PER_MINUTE="100000000")
        if a.relevance_floor is not None:
            env["CAIRN_RELEVANCE_FLOOR"] = str(a.relevance_floor)
        if a.history_weight is not None:
            env["CAIRN_HISTORY_WEIGHT"] = str(a.history_weight)
        reader, admin = prepare(data_dir, a.repo, env)
        port = free_port()
        server = start_server(env, port, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, server)
            run = asyncio.run(drive(base, server.pid, reader, admin, a.clients, a.duration, not a.no_reindex))
        finally:
            code = stop_server(server)
        result = report(run, a.clients, a.warmup_fraction)
        if a.samples_out:
            a.samples_out.write_text(json.dumps(run["samples"]))
        log = (Path(tmp) / "server.log").read_text(errors="replace")
        result["server_exit_code"] = code
        result["server_log_tracebacks"] = log.count("Traceback")
    print_table(result)
    result["passed"] = result["errors"] == 0 and result["rss"]["anon_growth_mb"] <= a.max_rss_growth_mb
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
