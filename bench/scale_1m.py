"""Scale benchmark: a million synthetic chunks behind a real `cairn serve`, searched over HTTP.

    nice -n 10 .venv/bin/python bench/scale_1m.py --chunks 1000000 --data-dir /tmp/cairn-scale-1m

1. generate (resumable, cached in the data dir): code-like chunks over a vocabulary of real Python
   identifiers (the standard library's, Zipf-distributed as names are in code), ~20 sources, ACLs
   over ~50 groups. Vectors are not produced by running the model over every chunk: each
   identifier of the vocabulary is embedded once with the real model and a chunk's vector is the
   normalised mean of its identifiers' vectors plus noise, so real query embeddings land in the same
   space. Everything is written through the real stores (tantivy, Qdrant Edge) and the real catalog
   tables (search hydrates from them), then the Edge HNSW index is built.
2. serve: starts `cairn serve` on the data dir (its own process) and runs N concurrent HTTP clients
   (another process) of ACL-filtered `POST /v1/search` with real query embedding; reports latency
   percentiles, throughput, per-stage server timings, the server's RSS and an ACL check of every hit.
3. contrast: the same vectors in qdrant-client local mode (brute force in Python), vector search only
   under the same ACL filter, on a sample of queries; plus Edge's recall against that exact answer.

The report is printed as a table and written as JSON (`--report`)."""
from __future__ import annotations

import argparse
import json
import keyword
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.models import PUBLIC, Access, Chunk, Document
from indexer.stores import SearchFilter, VectorPoint

ROOT = Path(__file__).resolve().parents[1]
GROUPS = [f"group:g{i:02d}" for i in range(50)]
SOURCES = [f"team{i:02d}-service" for i in range(20)]
BATCH = 20_000  # chunks per generated batch: the unit of resumption
OPTIMIZE_EVERY = 10  # batches between HNSW builds
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{2,30}\b")
BENCH_DIR = "scale-bench"  # inside the data dir: vocabulary cache and generation state


# -- corpus -------------------------------------------------------------------------------------


def stdlib_identifiers(size: int) -> list[str]:
    """The `size` most frequent identifiers of the standard library's Python sources."""
    counts: Counter[str] = Counter()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        counts.update(_IDENT.findall(path.read_text(encoding="utf-8", errors="replace")))
    words = [w for w, _ in counts.most_common() if not keyword.iskeyword(w) and not w.startswith("__")]
    return words[:size]


@dataclass
class Vocabulary:
    words: list[str]
    vectors: np.ndarray  # one embedding per word, rows L2-normalised
    weights: np.ndarray  # Zipf sampling probabilities by rank

    @classmethod
    def load_or_build(cls, directory: Path, embedder: Any, size: int) -> Vocabulary:
        cache = directory / f"vocab-{size}.npz"
        if cache.exists():
            data = np.load(cache, allow_pickle=False)
            words, vectors = [str(w) for w in data["words"]], data["vectors"]
        else:
            words = stdlib_identifiers(size)
            vectors = np.asarray(embedder.embed_documents(words), dtype=np.float32)
            directory.mkdir(parents=True, exist_ok=True)
            np.savez(cache, words=np.array(words), vectors=vectors)
        ranks = np.arange(1, len(words) + 1, dtype=np.float64)
        weights = 1.0 / ranks
        return cls(words, vectors, weights / weights.sum())


LINE_SHAPES = (
    "    {0} = {1}.{2}({3}, {4})",
    "    if {0} is not None and {1}:",
    "        return {0}[{1}]",
    "    for {0} in {1}.{2}():",
    "        {0}.{1}({2}={3})",
    "    # {0} {1} {2} {3}",
    "    raise {0}Error(\"{1} {2}\")",
    "    {0} += {1}({2})",
)
SLOTS = 5  # identifiers drawn per line (shapes use up to 5)


@dataclass
class Batch:
    documents: list[Document]
    chunks: list[Chunk]
    by_doc: dict[str, list[Chunk]]
    vectors: np.ndarray


def make_batch(vocab: Vocabulary, number: int, size: int, lines: int = 12, noise: float = 0.35) -> Batch:
    """Batch `number` of the corpus: the same chunks and vectors every time (seeded by its number)."""
    rng = np.random.default_rng(1_000 + number)
    prng = random.Random(number)
    words = vocab.words
    n_words = len(words)
    idents = rng.choice(n_words, size=(size, lines, SLOTS), p=vocab.weights)
    local = rng.integers(0, n_words, size=(size, 4))  # a chunk's own recurring names
    use_local = rng.random((size, lines, SLOTS)) < 0.3
    idents = np.where(use_local, local[np.arange(size)[:, None, None], rng.integers(0, 4, (size, lines, SLOTS))],
                      idents)
    shapes = rng.integers(0, len(LINE_SHAPES), size=(size, lines))
    flat = idents.reshape(size, -1)
    summed = np.zeros((size, vocab.vectors.shape[1]), dtype=np.float32)
    for column in range(flat.shape[1]):
        summed += vocab.vectors[flat[:, column]]
    vectors = summed / flat.shape[1] + noise * rng.standard_normal(summed.shape).astype(np.float32) / np.sqrt(
        summed.shape[1])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    documents: list[Document] = []
    chunks: list[Chunk] = []
    by_doc: dict[str, list[Chunk]] = {}
    at = 0
    while at < size:
        n = min(size - at, prng.randint(1, 9))
        source = prng.choice(SOURCES)
        module = f"{words[int(local[at, 0])]}/{words[int(local[at, 1])]}_{number}_{at}.py"
        roll = prng.random()
        principals = [PUBLIC] if roll < 0.1 else prng.sample(GROUPS, prng.randint(1, 2))
        access = Access.of(*principals)
        acl = tuple(access.acl())
        doc_id = f"{source}:{module}"
        doc_chunks = []
        for ordinal in range(n):
            row = at + ordinal
            name = words[int(local[row, 2])]
            body = [LINE_SHAPES[s].format(*(words[int(i)] for i in idents[row, k]))
                    for k, s in enumerate(shapes[row])]
            start = ordinal * (lines + 2) + 1
            content = f"def {name}({words[int(local[row, 3])]}):\n" + "\n".join(body)
            doc_chunks.append(Chunk(doc_id=doc_id, source=source, path=module, ordinal=ordinal, start_line=start,
                                    end_line=start + lines, content=content, header=module,
                                    symbol=f"{module[:-3].replace('/', '.')}.{name}", language="python",
                                    acl=acl))
        text = "\n\n".join(c.content for c in doc_chunks)
        documents.append(Document(id=doc_id, source=source, path=module, content=text, version=f"v{number}",
                                  access=access, language="python"))
        by_doc[doc_id] = doc_chunks
        chunks += doc_chunks
        at += n
    return Batch(documents, chunks, by_doc, vectors)


# -- generation ---------------------------------------------------------------------------------


def open_services(data_dir: Path, embedder: Any = None):
    from indexer.services import IndexServices
    from indexer.settings import Settings

    return IndexServices.open(Settings(data_dir=data_dir), embedder=embedder)


def generate(data_dir: Path, chunks: int, vocab_size: int = 8_000, embedder: Any = None,
             log=print) -> dict[str, Any]:
    """Write the corpus into `data_dir` (resuming where a previous run stopped); returns ingest stats."""
    svc = open_services(data_dir, embedder)
    try:
        state_dir = data_dir / BENCH_DIR
        vocab = Vocabulary.load_or_build(state_dir, svc.embedder, vocab_size)
        state_file = state_dir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        if state.get("chunks") not in (None, chunks) or state.get("vocab") not in (None, vocab_size):
            raise SystemExit(f"{data_dir} holds a corpus of {state.get('chunks')} chunks "
                             f"(vocabulary {state.get('vocab')}); use another --data-dir")
        state.update(chunks=chunks, vocab=vocab_size)
        state.setdefault("batches_done", 0)
        state.setdefault("seconds", {"make": 0.0, "lexical": 0.0, "catalog": 0.0, "vectors": 0.0})
        n_batches = -(-chunks // BATCH)
        for number in range(state["batches_done"], n_batches):
            size = min(BATCH, chunks - number * BATCH)
            t = time.perf_counter()
            batch = make_batch(vocab, number, size)
            t1 = time.perf_counter()
            svc.fulltext.upsert(batch.chunks)
            svc.fulltext.commit()
            t2 = time.perf_counter()
            svc.catalog.replace_documents([(d, batch.by_doc[d.id], None) for d in batch.documents], state="indexed")
            t3 = time.perf_counter()
            svc.vectors.upsert([VectorPoint(c, v) for c, v in zip(batch.chunks, batch.vectors.tolist(), strict=True)])
            t4 = time.perf_counter()
            seconds = state["seconds"]
            for key, value in (("make", t1 - t), ("lexical", t2 - t1), ("catalog", t3 - t2), ("vectors", t4 - t3)):
                seconds[key] += value
            state["batches_done"] = number + 1
            log(f"batch {number + 1}/{n_batches}: {size} chunks (make {t1 - t:.1f}s, tantivy {t2 - t1:.1f}s, "
                f"catalog {t3 - t2:.1f}s, edge {t4 - t3:.1f}s)")
            # HNSW is built every OPTIMIZE_EVERY batches, as a sync would after each of its runs: the
            # pause is proportional to the points added since the last build, never the whole index.
            if state["batches_done"] % OPTIMIZE_EVERY == 0 or state["batches_done"] == n_batches:
                optimize(svc, state, log)
            state_file.write_text(json.dumps(state))
        if not state.get("optimized"):
            optimize(svc, state, log)
            state_file.write_text(json.dumps(state))
        return state
    finally:
        svc.close()


def optimize(svc: Any, state: dict[str, Any], log) -> None:
    t = time.perf_counter()
    svc.vectors.optimize()
    elapsed = time.perf_counter() - t
    state["optimize_seconds"] = round(state.get("optimize_seconds", 0.0) + elapsed, 1)
    state["optimized"] = state["batches_done"] * BATCH >= state["chunks"]
    log(f"edge optimize: {elapsed:.1f}s")


# -- callers and queries ------------------------------------------------------------------------


def make_callers(n: int, seed: int = 11) -> list[tuple[str, list[str]]]:
    """(user, groups) of non-admin callers holding three groups each."""
    rng = random.Random(seed)
    return [(f"bench{i}", [g.split(":", 1)[1] for g in rng.sample(GROUPS, 3)]) for i in range(n)]


def make_queries(vocab_words: list[str], n: int, seed: int = 5) -> list[str]:
    """Short developer queries over the vocabulary's frequent-but-not-trivial names."""
    rng = random.Random(seed)
    pool = vocab_words[20:2_000]
    shapes = ("where is {0} computed", "{0} {1}", "how does {0} handle {1}", "{0} raises {1} error",
              "call {0} with {1} and {2}", "{0}")
    return [rng.choice(shapes).format(*rng.sample(pool, 3)) for _ in range(n)]


def caller_filter(groups: list[str], user: str) -> SearchFilter:
    return SearchFilter(principals=tuple(sorted({PUBLIC, f"user:{user}", *(f"group:{g}" for g in groups)})))


# -- serving and clients ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(pid: int) -> dict[str, int]:
    """The process's memory (MiB) from /proc: resident now, peak, anonymous and file-backed parts."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) // 1024
    return out


def children(pid: int) -> list[int]:
    """The process's live child processes (e.g. the vector process of `cairn serve`), recursively."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *children(int(child))]
    return out


def server_rss(pid: int) -> dict[str, Any]:
    """RSS of the server and of each of its child processes (MiB), and their total VmRSS."""
    parts = {"server": rss(pid)} | {f"child {c}": rss(c) for c in children(pid)}
    return parts | {"total_VmRSS": sum(p["VmRSS"] for p in parts.values())}


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """User + system CPU time of a process, all threads (from /proc/<pid>/stat), and optionally of
    its live child processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + (sum(cpu_seconds(c) for c in children(pid)) if with_children else 0.0)


def start_server(data_dir: Path, port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, CAIRN_DATA_DIR=str(data_dir), CAIRN_PORT=str(port), CAIRN_HOST="127.0.0.1",
               CAIRN_RATE_LIMIT_PER_MINUTE="0", **(env or {}))
    cairn = Path(sys.executable).with_name("cairn")
    command = [str(cairn)] if cairn.exists() else [sys.executable, "-m", "api.cli"]
    return subprocess.Popen([*command, "serve"], env=env, cwd=ROOT, stdout=log_path.open("wb"),
                            stderr=subprocess.STDOUT)


def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> float:
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"cairn serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"cairn serve did not become healthy within {timeout}s")


def run_clients(url: str | list[str], work: list[tuple[str, str]], clients: int, warmup: int,
                transport: str = "http.client") -> dict[str, Any]:
    """`clients` threads, each a blocking keep-alive HTTP client sending its share of (token, query)
    back to back. The clients share the server's two cores, so their own CPU is measured and
    reported; `http.client` (stdlib) costs a fraction of `httpx` per request (see `--client`)."""
    lock = threading.Lock()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    queue = list(enumerate(work))

    urls = [url] if isinstance(url, str) else url

    def client(number: int) -> None:
        post = _poster(urls[number % len(urls)], transport)  # several servers: clients spread evenly
        while True:
            with lock:
                if not queue:
                    return
                index, (token, query) = queue.pop()
            start = time.perf_counter()
            status, text = post(token, query)
            elapsed = time.perf_counter() - start
            if status != 200:
                with lock:
                    errors.append(f"{status} {text[:200]}")
                continue
            body = json.loads(text)
            with lock:
                results.append({"index": index, "ms": elapsed * 1000, "timings": body["timings_ms"],
                                "ids": [h["id"] for h in body["hits"]]})

    post = _poster(urls[0], transport)  # warm-up, not measured
    for token, query in work[:warmup]:
        post(token, query)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "client_cpu_s": cpu, "results": results, "errors": errors}


def _poster(url: str, transport: str):
    """A function (token, query) -> (status, body text) on one keep-alive connection."""
    if transport == "httpx":
        import httpx

        http = httpx.Client(base_url=url, timeout=60)

        def post(token: str, query: str) -> tuple[int, str]:
            response = http.post("/v1/search", json={"query": query, "limit": 10},
                                 headers={"authorization": f"Bearer {token}"})
            return response.status_code, response.text
        return post
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def post(token: str, query: str) -> tuple[int, str]:
        conn.request("POST", "/v1/search", body=json.dumps({"query": query, "limit": 10}),
                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    return post


def client_main() -> None:
    """Entry point of the separate client process: reads its job as JSON on stdin, answers on stdout."""
    job = json.loads(sys.stdin.read())
    out = run_clients(job["url"], [tuple(w) for w in job["work"]], job["clients"], job["warmup"],
                      job.get("transport", "http.client"))
    sys.stdout.write(json.dumps(out))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p95": round(percentile(values, 95), 1),
            "p99": round(percentile(values, 99), 1), "mean": round(statistics.fmean(values), 1)}


def drive(url: str | list[str], work: list[tuple[str, str]], clients: int, warmup: int,
          transport: str = "http.client") -> dict[str, Any]:
    """Run the clients in their own process (their CPU is not the server's GIL's problem)."""
    job = {"url": url, "work": work, "clients": clients, "warmup": warmup, "transport": transport}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "client"], input=json.dumps(job),
                          capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout)


def serve_bench(data_dir: Path, queries: int, clients: int, n_callers: int = 16, single_queries: int = 100,
                transport: str = "http.client",
                warmup: int = 20, startup_timeout: float = 900, log=print) -> dict[str, Any]:
    """Start `cairn serve`, drive it from a client process, check every hit's ACL; returns the report."""
    from api.tokens import TokenStore
    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine

    engine = make_engine(f"sqlite:///{data_dir / 'catalog.sqlite3'}")
    tokens = TokenStore(engine)
    callers = make_callers(n_callers)
    issued = [(tokens.create(user, groups, name="scale-bench")[0], user, groups) for user, groups in callers]
    vocab = json.loads((data_dir / BENCH_DIR / "state.json").read_text())["vocab"]
    words = Vocabulary.load_or_build(data_dir / BENCH_DIR, None, vocab).words
    texts = make_queries(words, queries + warmup)
    rng = random.Random(3)
    assignment = [rng.randrange(len(issued)) for _ in texts]
    work = [(issued[a][0], q) for a, q in zip(assignment, texts, strict=True)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = data_dir / BENCH_DIR / "server.log"
    server = start_server(data_dir, port, server_log)
    try:
        startup = wait_healthy(url, server, startup_timeout)
        if warmup:
            drive(url, work[queries:], 1, warmup=0)  # warm-up: first-use costs, page cache
        rss_idle = server_rss(server.pid)
        log(f"server up in {startup:.1f}s, RSS {rss_idle}")
        load_before = os.getloadavg()[0]
        cpu_before = cpu_seconds(server.pid, with_children=True)
        answer = drive(url, work[:queries], clients, warmup=0, transport=transport)
        server_cpu = cpu_seconds(server.pid, with_children=True) - cpu_before
        load_after = os.getloadavg()[0]
        rss_after = server_rss(server.pid)
        single = drive(url, work[:single_queries], 1, warmup=0, transport=transport) if single_queries else None
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    results = answer["results"]
    if not results:
        raise RuntimeError(f"no successful searches; errors: {answer['errors'][:3]}")
    violations, hits = acl_violations(Catalog(engine), results, assignment, issued)
    stages: dict[str, list[float]] = {}
    for r in results:
        for stage, ms in r["timings"].items():
            stages.setdefault(stage, []).append(ms)
    engine.dispose()
    return {
        "clients": clients, "queries": len(results), "errors": len(answer["errors"]),
        "error_samples": answer["errors"][:3], "wall_s": round(answer["wall_s"], 1),
        "throughput_qps": round(len(results) / answer["wall_s"], 1),
        "latency_ms": summary([r["ms"] for r in results]),
        "server_stages_ms": {k: summary(v) for k, v in sorted(stages.items())},
        "hits_checked": hits, "acl_violations": violations, "empty_results": sum(not r["ids"] for r in results),
        "startup_s": round(startup, 1), "server_rss_mib": {"idle": rss_idle, "after": rss_after},
        "server_cpu_ms_per_query": round(server_cpu * 1000 / len(results), 1),
        "client": transport, "client_cpu_ms_per_query": round(answer["client_cpu_s"] * 1000 / len(results), 1),
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "single_client_latency_ms": summary([r["ms"] for r in single["results"]]) if single else None,
    }


def acl_violations(catalog: Any, results: list[dict[str, Any]], assignment: list[int],
                   issued: list[tuple[str, str, list[str]]]) -> tuple[int, int]:
    """How many returned hits the caller may not read (by the catalog's ACL of each chunk), of how many."""
    ids = {cid for r in results for cid in r["ids"]}
    rows = catalog.get_chunks(ids)
    bad = total = 0
    for r in results:
        _, user, groups = issued[assignment[r["index"]]]
        allowed = set(caller_filter(groups, user).principals)
        for cid in r["ids"]:
            total += 1
            row = rows.get(cid)
            if row is None or not allowed & set(row.acl):
                bad += 1
    return bad, total


# -- serving layouts side by side ---------------------------------------------------------------


def prepare_layouts(data_dir: Path, log=print) -> list[str]:
    """Mint the layouts run's tokens and bring `<data-dir>-replica` up to date (copied once; later
    only its catalog, through SQLite's backup so the WAL's latest writes come along)."""
    import contextlib
    import shutil
    import sqlite3

    from api.tokens import TokenStore
    from indexer.catalog.db import make_engine

    engine = make_engine(f"sqlite:///{data_dir / 'catalog.sqlite3'}")
    issued = [TokenStore(engine).create(user, groups, name="scale-layouts")[0] for user, groups in make_callers(16)]
    engine.dispose()
    replica = data_dir.with_name(data_dir.name + "-replica")
    if not replica.exists():
        log(f"copying the corpus to {replica}")
        shutil.copytree(data_dir, replica)
        return issued
    fresh = replica / "catalog.sqlite3.new"
    fresh.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(data_dir / "catalog.sqlite3")) as source, \
            contextlib.closing(sqlite3.connect(fresh)) as target:
        source.backup(target)
    for suffix in ("-wal", "-shm"):
        (replica / f"catalog.sqlite3{suffix}").unlink(missing_ok=True)
    os.replace(fresh, replica / "catalog.sqlite3")
    return issued


def layouts_bench(data_dir: Path, queries: int, clients: int, rounds: int = 2, log=print) -> list[dict[str, Any]]:
    """The same closed-loop run against three layouts, alternated `rounds` times on one corpus:
    `cairn serve` with the vector index in-process, with its vector process (the default), and two
    independent servers on two copies of the corpus with the clients split between them: no split of
    one server into processes can beat the last, so it bounds what process parallelism can give on
    this machine. The copy (`<data-dir>-replica`, as big as the corpus) is kept for later runs."""
    # Tokens and the replica's catalog are written by a short-lived process: this one keeps no SQLite
    # state for files that the servers it starts and stops write between rounds.
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "prepare-layouts", str(data_dir)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    issued = json.loads(done.stdout.strip().splitlines()[-1])
    replica = data_dir.with_name(data_dir.name + "-replica")
    words = Vocabulary.load_or_build(data_dir / BENCH_DIR, None,
                                     json.loads((data_dir / BENCH_DIR / "state.json").read_text())["vocab"]).words
    rng = random.Random(3)
    texts = make_queries(words, queries + 40)
    work = [(issued[rng.randrange(len(issued))], q) for q in texts]
    layouts = {"in-process": ([data_dir], "false"), "vector-process": ([data_dir], "true"),
               "two servers": ([data_dir, replica], "true")}
    rows = []
    for number in range(rounds):
        for name, (dirs, vector_process) in layouts.items():
            servers, urls = [], []
            try:
                for directory in dirs:
                    port = free_port()
                    env = {"CAIRN_VECTOR_PROCESS": vector_process}
                    servers.append(start_server(directory, port, directory / BENCH_DIR / "server.log", env))
                    urls.append(f"http://127.0.0.1:{port}")
                for url, server in zip(urls, servers, strict=True):
                    wait_healthy(url, server, 900)
                    drive(url, work[queries:], 1, warmup=0)  # first-use costs, page cache
                before = sum(cpu_seconds(s.pid, with_children=True) for s in servers)
                answer = drive(urls, work[:queries], clients, warmup=0)
                cpu = sum(cpu_seconds(s.pid, with_children=True) for s in servers) - before
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=60)
            latencies = [r["ms"] for r in answer["results"]]
            row = {"layout": name, "round": number + 1, "errors": len(answer["errors"]),
                   "throughput_qps": round(len(latencies) / answer["wall_s"], 1), "latency_ms": summary(latencies),
                   "server_cpu_ms_per_query": round(cpu * 1000 / max(1, len(latencies)), 1)}
            log(f"layout {name} (round {number + 1}): {row['throughput_qps']} q/s, {row['latency_ms']}, "
                f"{row['errors']} errors")
            rows.append(row)
    return rows


# -- qdrant-client local mode contrast ----------------------------------------------------------


def qdrant_local_bench(data_dir: Path, queries: int, embedder: Any = None, log=print) -> dict[str, Any]:
    """The corpus's vectors in qdrant-client local mode; ACL-filtered vector search on a sample of
    queries, and Edge's recall@10 against that exact answer (run while no server holds the shard)."""
    from indexer.stores.qdrant_server import QdrantServerStore

    state = json.loads((data_dir / BENCH_DIR / "state.json").read_text())
    svc = open_services(data_dir, embedder)  # the Edge shard as the server opens it (wherever its generation lives)
    embedder = svc.embedder
    vocab = Vocabulary.load_or_build(data_dir / BENCH_DIR, embedder, state["vocab"])
    store = QdrantServerStore(":memory:", "scale", embedder.dim)
    t = time.perf_counter()
    for number in range(-(-state["chunks"] // BATCH)):
        batch = make_batch(vocab, number, min(BATCH, state["chunks"] - number * BATCH))
        store.upsert([VectorPoint(c, v) for c, v in zip(batch.chunks, batch.vectors.tolist(), strict=True)])
    load_s = time.perf_counter() - t
    log(f"qdrant local: loaded {state['chunks']} points in {load_s:.0f}s")
    callers = make_callers(16)
    texts = make_queries(vocab.words, queries, seed=17)
    vectors = [embedder.embed_query(q) for q in texts]
    filters = [caller_filter(*reversed(callers[i % len(callers)])) for i in range(len(texts))]
    local_ms, exact = [], []
    for vector, flt in zip(vectors, filters, strict=True):
        start = time.perf_counter()
        exact.append(store.search(vector, flt, 10))
        local_ms.append((time.perf_counter() - start) * 1000)
    local_rss = rss(os.getpid())
    store.close()
    edge = svc.vectors
    edge_ms, recall = [], []
    for vector, flt, truth in zip(vectors, filters, exact, strict=True):
        start = time.perf_counter()
        found = edge.search(vector, flt, 10)
        edge_ms.append((time.perf_counter() - start) * 1000)
        want = {s.chunk_id for s in truth}
        recall.append(len(want & {s.chunk_id for s in found}) / max(1, len(want)))
    svc.close()
    return {"queries": len(texts), "load_s": round(load_s, 1), "local_ms": summary(local_ms),
            "local_rss_mib": local_rss, "edge_direct_ms": summary(edge_ms),
            "edge_recall_at_10": round(statistics.fmean(recall), 3)}


# -- index maintenance while serving ------------------------------------------------------------


def maintenance_bench(data_dir: Path, points: int, embedder: Any = None, log=print,
                      modes: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """What building HNSW for `points` new vectors costs a serving process, with the vector index
    in-process and in its own process (`vector_process`), side by side. The optimize runs on a job
    thread (as after a sync) while another thread keeps running full hybrid searches (embedding,
    BM25, vectors, rerank); reports the longest gap between two answers and how many came back
    without dense results (`partial`, the vector process past its search timeout). The points are
    removed again afterwards (the corpus stays as generated)."""
    from indexer.models import Principal
    from indexer.services import IndexServices
    from indexer.settings import Settings
    from retrieval.searcher import build_searcher

    out: dict[str, Any] = {"points": points}
    for vector_process in modes:
        svc = IndexServices.open(Settings(data_dir=data_dir, vector_process=vector_process), embedder=embedder)
        searcher = build_searcher(svc)
        try:
            vocab = Vocabulary.load_or_build(data_dir / BENCH_DIR, svc.embedder, json.loads(
                (data_dir / BENCH_DIR / "state.json").read_text())["vocab"])
            extra = make_batch(vocab, 10_000, points)  # a batch number no corpus reaches
            caller = Principal("maintenance", frozenset({"g01", "g02", "g03"}))
            queries = make_queries(vocab.words, 50)
            svc.vectors.upsert([VectorPoint(c, v) for c, v in zip(extra.chunks, extra.vectors.tolist(), strict=True)])
            searcher.search(queries[0], caller)  # warm
            gaps: list[float] = []
            done = threading.Event()
            outcome: dict[str, float] = {}

            def build(vectors: Any, outcome: dict[str, float], done: threading.Event) -> None:
                start = time.perf_counter()
                vectors.optimize()
                outcome["optimize_s"] = time.perf_counter() - start
                done.set()

            worker = threading.Thread(target=build, args=(svc.vectors, outcome, done))
            searches = partial = 0
            last = time.perf_counter()
            worker.start()
            while not done.is_set():  # the gap between two answers
                result = searcher.search(queries[searches % len(queries)], caller)
                partial += bool(result.partial)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                searches += 1
                time.sleep(0.005)
            worker.join()
            svc.vectors.delete([c.id for c in extra.chunks])
            svc.vectors.optimize()
            key = "vector_process" if vector_process else "in_process"
            out[key] = {"optimize_s": round(outcome["optimize_s"], 2), "searches_during": searches,
                        "partial_answers": partial, "longest_gap_s": round(max(gaps, default=0.0), 2)}
            log(f"maintenance ({key}): {out[key]}")
        finally:
            searcher.close()
            svc.close()
    return out


# -- report -------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    upkeep = report.get("maintenance")
    for key in ("in_process", "vector_process"):
        if upkeep and key in upkeep:
            u = upkeep[key]
            print(f"HNSW build for {upkeep['points']} new points while searching ({key.replace('_', ' ')}): "
                  f"optimize {u['optimize_s']}s, longest gap between answers {u['longest_gap_s']}s "
                  f"({u['searches_during']} searches, {u['partial_answers']} without dense results)")
    serve = report.get("serve")
    if serve:
        lat = serve["latency_ms"]
        print(f"\nHTTP /v1/search, {report['chunks']:,} chunks, {serve['clients']} clients, "
              f"{serve['queries']} queries ({serve['errors']} errors)")
        print(f"  latency ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  mean {lat['mean']}")
        print(f"  throughput: {serve['throughput_qps']} queries/s; server CPU {serve['server_cpu_ms_per_query']} "
              f"ms per query; machine load average {serve['load_average']} (2 cores)")
        print(f"  clients ({serve['client']}, same machine): {serve['client_cpu_ms_per_query']} ms CPU per query")
        if serve.get("single_client_latency_ms"):
            print(f"  one client alone, latency ms: {serve['single_client_latency_ms']}")
        for stage, s in serve["server_stages_ms"].items():
            print(f"  server {stage:>8}: p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}")
        print(f"  server RSS MiB: {serve['server_rss_mib']}")
        print(f"  ACL: {serve['acl_violations']} violations in {serve['hits_checked']} hits; "
              f"{serve['empty_results']} empty results")
    for row in report.get("layouts", []):
        lat = row["latency_ms"]
        print(f"layout {row['layout']:>14} round {row['round']}: {row['throughput_qps']:6.1f} q/s  p50 {lat['p50']:6.1f}  "
              f"p95 {lat['p95']:6.1f}  p99 {lat['p99']:6.1f} ms  CPU {row['server_cpu_ms_per_query']} ms/query  "
              f"{row['errors']} errors")
    local = report.get("qdrant_local")
    if local:
        print(f"qdrant-client local mode ({local['queries']} queries, 1 client, vector search only): "
              f"{local['local_ms']}; RSS {local['local_rss_mib']}")
        print(f"edge direct (same queries): {local['edge_direct_ms']}; recall@10 vs exact "
              f"{local['edge_recall_at_10']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client_main()
        return
    if len(sys.argv) > 2 and sys.argv[1] == "prepare-layouts":
        print(json.dumps(prepare_layouts(Path(sys.argv[2]), log=lambda *_: None)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "cairn-scale")
    ap.add_argument("--vocab", type=int, default=8_000, help="identifiers in the vocabulary")
    ap.add_argument("--queries", type=int, default=2_000, help="HTTP searches in the timed run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--single-queries", type=int, default=100, help="queries of a one-client pass (service time)")
    ap.add_argument("--local-queries", type=int, default=50,
                    help="queries for the qdrant-client local contrast (brute force: keep it small); 0 skips")
    ap.add_argument("--client", choices=("http.client", "httpx"), default="http.client",
                    help="the load generator's HTTP library (it runs on the same cores as the server)")
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--maintenance-points", type=int, default=20_000,
                    help="new vectors indexed while searching, to measure the pause (0 skips)")
    ap.add_argument("--layouts", type=int, default=0, metavar="ROUNDS",
                    help="also compare serving layouts (in-process, vector process, two servers) this many "
                         "rounds, --queries each (0 skips; copies the corpus once)")
    ap.add_argument("--report", type=Path, help="write the report as JSON here")
    a = ap.parse_args()
    report: dict[str, Any] = {"chunks": a.chunks}
    report["generate"] = generate(a.data_dir, a.chunks, a.vocab)
    if not a.skip_serve:
        report["serve"] = serve_bench(a.data_dir, a.queries, a.clients, single_queries=a.single_queries,
                                      transport=a.client)
    if a.layouts:
        report["layouts"] = layouts_bench(a.data_dir, a.queries, a.clients, a.layouts)
    if a.local_queries:
        report["qdrant_local"] = qdrant_local_bench(a.data_dir, a.local_queries)
    if a.maintenance_points:
        report["maintenance"] = maintenance_bench(a.data_dir, a.maintenance_points)
    print_report(report)
    text = json.dumps(report)
    print(text)
    if a.report:
        a.report.write_text(text)


if __name__ == "__main__":
    main()
