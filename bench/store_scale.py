"""Store benchmarks: tantivy indexing throughput and query latency, Qdrant Edge and qdrant-client latency."""
from __future__ import annotations

import argparse
import functools
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.identifiers import code_tokens
from indexer.models import PUBLIC, Access, Chunk
from indexer.stores import LexicalQuery, SearchFilter, VectorPoint
from indexer.stores.edge import EdgeVectorStore
from indexer.stores.fulltext import TantivyIndex
from indexer.stores.qdrant_server import QdrantServerStore

PARTS = (
    "get", "set", "parse", "load", "save", "user", "account", "http", "response", "request", "client",
    "server", "cache", "index", "query", "token", "search", "result", "error", "config", "path", "file",
    "line", "chunk", "vector", "store", "read", "write", "open", "close", "build", "make", "node", "tree",
    "list", "map", "item", "value", "key", "name", "data", "time", "date", "size", "count", "limit", "offset",
    "page", "source", "group", "role",
)
USERS = [f"user:u{i}" for i in range(40)]
GROUPS = [f"group:g{i}" for i in range(12)]


def make_identifier(rng: random.Random) -> str:
    parts = rng.sample(PARTS, rng.randint(1, 3))
    if rng.random() < 0.5:
        return parts[0] + "".join(p.title() for p in parts[1:])
    return "_".join(parts)


class Vocabulary:
    """Identifiers drawn Zipf-like from a fixed set, as names repeat in real code."""

    def __init__(self, rng: random.Random, size: int = 20_000):
        self.rng = rng
        self.words = list(dict.fromkeys(make_identifier(rng) for _ in range(size)))
        self.cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(self.words))))

    def __call__(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cum)[0]


def random_acl(rng: random.Random) -> list[str]:
    roll = rng.random()
    if roll < 0.4:
        return [PUBLIC]
    if roll < 0.8:
        return rng.sample(GROUPS, rng.randint(1, 2))
    return rng.sample(USERS, rng.randint(1, 3))


def synthetic_chunks(n: int, seed: int = 7, lines: int = 30) -> list[Chunk]:
    rng = random.Random(seed)
    ident = Vocabulary(rng)
    out = []
    for i in range(n):
        body = "\n".join(
            f"    {ident()} = {ident()}({ident()}, {rng.randint(0, 99)})  # {rng.choice(PARTS)} {rng.choice(PARTS)}"
            for _ in range(lines))
        source = f"repo{i * 5 // n}"  # contiguous per source, as a sync writes one source at a time
        path = f"src/{rng.choice(PARTS)}/{ident()}.py"
        out.append(Chunk(doc_id=f"{source}:{path}", source=source, path=path, ordinal=i, start_line=1,
                         end_line=lines, content=f"def {ident()}(self):\n{body}",
                         symbol=f"{rng.choice(PARTS)}.{ident()}", language="python",
                         acl=tuple(Access.of(*random_acl(rng)).acl())))
    return out


def caller(rng: random.Random) -> SearchFilter:
    return SearchFilter(principals=(PUBLIC, rng.choice(USERS), *rng.sample(GROUPS, 2)))


def latency_ms(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def bench_lexical(n: int, batch: int) -> None:
    chunks = synthetic_chunks(n)
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        index = TantivyIndex(Path(tmp))
        start, cpu = time.perf_counter(), time.process_time()
        for at in range(0, n, batch):
            index.upsert(chunks[at:at + batch])
            index.commit()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"tantivy index: {n} chunks in {elapsed:.1f}s = {n / elapsed:,.0f} chunks/s wall "
              f"({cpu:.1f} CPU-s, all threads; commit every {batch})")

        def query() -> object:
            words = code_tokens(f"{make_identifier(rng)} {rng.choice(PARTS)}")
            return index.search(LexicalQuery(terms=tuple((w, 1.0) for w in words)), caller(rng), 50)

        p50, p95 = latency_ms(query, 200)
        print(f"tantivy query (5 shards, ACL filter, top 50): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        start = time.perf_counter()
        count = len(index.ids())
        print(f"tantivy ids(): {count} ids in {(time.perf_counter() - start) * 1000:.0f} ms")
        index.close()


def vectors_and_points(n: int, dim: int) -> tuple[np.ndarray, list[VectorPoint]]:
    data = np.random.default_rng(3).standard_normal((n, dim)).astype(np.float32)
    chunks = synthetic_chunks(n, lines=1)
    return data, [VectorPoint(c, v) for c, v in zip(chunks, data.tolist(), strict=True)]


def vector_latency(store, dim: int, label: str) -> None:
    rng = random.Random(2)
    queries = np.random.default_rng(4).standard_normal((200, dim)).tolist()
    narrow = SearchFilter(principals=(USERS[0],))
    for name, make_filter in (("caller ACL", lambda: caller(rng)), ("one user only", lambda: narrow)):
        runs = iter([functools.partial(store.search, q, make_filter(), 50) for q in queries])
        p50, p95 = latency_ms(lambda runs=runs: next(runs)(), len(queries))
        print(f"{label} [{name}] top 50: p50 {p50:.2f} ms, p95 {p95:.2f} ms")


def bench_edge(n: int, dim: int) -> None:
    _, points = vectors_and_points(n, dim)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeVectorStore(Path(tmp) / "edge", dim)
        start = time.perf_counter()
        store.upsert(points)
        print(f"edge upsert: {n} points ({dim}-d) in {time.perf_counter() - start:.1f}s")
        vector_latency(store, dim, f"edge {n} plain")
        start = time.perf_counter()
        store.optimize()
        print(f"edge optimize: {time.perf_counter() - start:.1f}s")
        vector_latency(store, dim, f"edge {n} optimized")
        store.close()


def bench_qdrant_local(n: int, dim: int) -> None:
    _, points = vectors_and_points(n, dim)
    store = QdrantServerStore(":memory:", "bench", dim)
    start = time.perf_counter()
    store.upsert(points)
    print(f"qdrant local upsert: {n} points in {time.perf_counter() - start:.1f}s")
    vector_latency(store, dim, f"qdrant local {n}")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=50_000, help="synthetic chunks for tantivy")
    parser.add_argument("--batch", type=int, default=5_000, help="chunks per tantivy commit")
    parser.add_argument("--points", type=int, default=20_000, help="random vectors for the vector stores")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--only", choices=("lexical", "edge", "qdrant"), action="append")
    args = parser.parse_args()
    only = set(args.only or ("lexical", "edge", "qdrant"))
    if "lexical" in only:
        bench_lexical(args.chunks, args.batch)
    if "edge" in only:
        bench_edge(args.points, args.dim)
    if "qdrant" in only:
        bench_qdrant_local(args.points, args.dim)


if __name__ == "__main__":
    main()
