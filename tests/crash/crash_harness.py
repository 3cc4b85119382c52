"""Crash tests' harness: a generated repository big enough that indexing takes seconds, a real
`cairn serve` subprocess on its own data dir, and a snapshot of what the three stores hold."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.tokens import TokenStore
from indexer.catalog.schema import documents
from indexer.models import Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.permissions import Scope, build_filter
from retrieval.query_analysis import analyse
from tests.conftest import KEPT_ENV

CAIRN = str(Path(sys.executable).with_name("cairn"))
SOURCE = "big"
QUERIES = ("FooBar137", "validate each refund up to 57 times", "render_invoice_21", "store shipment totals")
TOP = 10
DOMAINS = ("payment", "invoice", "ledger", "account", "refund", "order", "shipment", "customer", "catalog", "report")
VERBS = ("parse", "render", "validate", "retry", "load", "store", "merge", "split", "sum", "audit")


def write_big_repo(repo: Any, files: int) -> None:
    """`files` small Python modules (one short chunk each, all different) plus a README, committed."""
    for i in range(files):
        domain, verb = DOMAINS[i % len(DOMAINS)], VERBS[(i // len(DOMAINS)) % len(VERBS)]
        repo.write(f"pkg{i % 12}/{domain}_{verb}_{i}.py", f'''def {verb}_{domain}_{i}(items, limit={i}):
    """{verb.title()} each {domain} up to {i} times (FooBar{i})."""
    total = sum(item.amount * {i % 7 + 1} for item in items[:limit])
    return min(total, {1000 + i})
''')
    repo.write("README.md", "# Big\n\nA generated repository for crash tests.\n")
    repo.commit("many files")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(data_dir: Path, location: Path, embedder: Any) -> str:
    """A data dir holding the git source and an admin token (returned); the index is still empty."""
    svc = IndexServices.open(Settings(data_dir=data_dir), embedder=embedder)
    try:
        svc.catalog.upsert_source(SOURCE, "git", {"location": str(location), "ref": ""}, ["public"])
        token, _ = TokenStore(svc.catalog.engine).create("ops", [], admin=True)
    finally:
        svc.close()
    return token


class Server:
    """`cairn serve` in a subprocess: start, call, kill -9 or SIGTERM, and wait."""

    def __init__(self, data_dir: Path, token: str, log: Path) -> None:
        self.data_dir, self.token, self.log = data_dir, token, log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
        env.update(CAIRN_DATA_DIR=str(self.data_dir), CAIRN_PORT=str(self.port), CAIRN_SCHEDULER_TICK_SECONDS="0",
                   CAIRN_RECONCILE_INTERVAL_SECONDS="0", CAIRN_SHUTDOWN_GRACE_SECONDS="30")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([CAIRN, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cairn serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.call("GET", "/healthz")
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"cairn serve did not answer in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def wait_for(self, job_id: str, until: Any, timeout: float, poll: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(poll)
        raise AssertionError(f"job {job_id} never got there: {self.job(job_id)}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 90.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class IndexState:
    """Ids in each store, plus search results, for comparing two data dirs."""

    documents: dict[str, str]  # doc id -> state
    chunks: dict[str, list[str]]  # doc id -> chunk ids
    fulltext: frozenset[str]
    vectors: frozenset[str]
    lexical: dict[str, list[tuple[float, str]]]  # query -> every match as (BM25 score, chunk id), best first
    dense: dict[str, list[str]]  # query -> nearest chunk ids
    jobs: dict[str, str]  # job id -> state
    source_state: str

    @property
    def catalog_chunks(self) -> set[str]:
        return {c for ids in self.chunks.values() for c in ids}

    @property
    def embedded_chunks(self) -> set[str]:
        return {c for doc, ids in self.chunks.items() if self.documents[doc] == "indexed" for c in ids}


def snapshot(data_dir: Path, embedder: Any) -> IndexState:
    """Open the (stopped) server's data dir in-process and read every store.

    Search results are compared per engine, through the same ACL filter as a search: exact BM25 ties
    are ordered by index layout (tantivy breaks them by segment and doc address, and the layout
    legitimately differs after a crash), so the lexical list holds every match, ties ordered by id."""
    svc = IndexServices.open(Settings(data_dir=data_dir), embedder=embedder)
    try:
        with svc.catalog.engine.connect() as conn:
            states = dict(conn.execute(select(documents.c.id, documents.c.state)
                                       .where(documents.c.source == SOURCE)).all())
        flt = build_filter(Principal("ops", admin=True), Scope())
        lexical, dense = {}, {}
        for text in QUERIES:
            query = analyse(text)
            found = svc.fulltext.search(query.lexical, flt, len(states) * 4 + 10)
            lexical[text] = sorted((-round(s.score, 4), s.chunk_id) for s in found)
            dense[text] = [s.chunk_id for s in svc.vectors.search(embedder.embed_query(query.dense_text), flt, TOP)]
        jobs = {job.id: job.state for job in svc.catalog.list_jobs(SOURCE)}
        return IndexState(states, svc.catalog.chunk_ids_for(states), frozenset(svc.fulltext.ids(SOURCE)),
                          frozenset(svc.vectors.ids(SOURCE)), lexical, dense, jobs, svc.catalog.get_source(SOURCE).state)
    finally:
        svc.close()
