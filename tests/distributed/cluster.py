"""A real distributed deployment on this machine: `cairn serve` + `celery worker` processes on the local
Redis and a fresh PostgreSQL database. Used by tests/distributed and bench/distributed_scaling.py."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import KEPT_ENV

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("CAIRN_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")


def python_module(repo: str, n: int) -> str:
    return (f'"""Module {n} of {repo}: helpers for the {repo} service."""\n\n\n'
            f"def {repo}_helper_{n}(value: int) -> int:\n"
            f'    """Scale a value for {repo} step {n}."""\n'
            f"    total = value * {n + 1}\n    for step in range({n + 2}):\n        total += step\n"
            f"    return total\n\n\n"
            f"class {repo.title()}Worker{n}:\n    def run(self, items):\n"
            f"        return [{repo}_helper_{n}(i) for i in items]\n\n"
            f"    def describe(self) -> str:\n        return 'worker {n} of {repo}'\n")


def fill_repo(root: Path, name: str, files: int, extra: dict[str, str] | None = None) -> Path:
    """A real git repository with `files` Python modules, a README and `extra` files, committed."""
    contents = {f"src/{name}_{n}.py": python_module(name, n) for n in range(files)}
    contents["README.md"] = f"# {name}\n\nThe {name} service.\n\n## Usage\n\nRun `{name} serve`.\n"
    for path, text in {**contents, **(extra or {})}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env, capture_output=True)
    return root


def services_up() -> str | None:
    """Why the deployment cannot run here (None when Redis and PostgreSQL answer)."""
    for name, port in (("Redis", REDIS_PORT), ("PostgreSQL", 5432)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return f"{name} is not reachable on 127.0.0.1:{port}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    url: str = ""  # a `cairn serve` node's

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """kill -9 the whole process group (a Celery worker and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """Processes of one deployment sharing a PostgreSQL database and a Redis db."""

    root: Path
    redis_db: int = 11
    settings: dict[str, str] = field(default_factory=dict)  # extra CAIRN_* for every process
    procs: list[Proc] = field(default_factory=list)
    database: str = field(default_factory=lambda: f"cairn_queue_{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create(self) -> Cluster:
        import psycopg
        import redis

        redis.Redis(REDIS_HOST, REDIS_PORT, db=self.redis_db).flushdb()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.root.mkdir(parents=True, exist_ok=True)
        self.migrate()
        return self

    def migrate(self) -> None:
        """`cairn db upgrade`, as a deployment runs it before any server or worker starts (they refuse an
        unmigrated PostgreSQL catalog)."""
        proc = subprocess.run([str(BIN / "cairn"), "db", "upgrade"], env=self.env(self.root / "migrate"),
                              capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"cairn db upgrade failed: {proc.stderr}")

    def destroy(self) -> None:
        import psycopg
        import redis

        for proc in self.procs:
            proc.stop(timeout=20)
        redis.Redis(REDIS_HOST, REDIS_PORT, db=self.redis_db).flushdb()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
        env.update({"CAIRN_DATA_DIR": str(data_dir), "CAIRN_DATABASE_URL": self.database_url,
                    "CAIRN_CELERY_BROKER_URL": self.broker_url, "PYTHONUNBUFFERED": "1"})
        env.update(self.settings)
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Proc:
        log = self.root / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_api(self, **extra: str) -> Proc:
        """`cairn serve`: the API/index node (Qdrant Edge, tantivy, the `index` queue consumer)."""
        return self.start_node("api", self.port, self.root / "api", **extra)

    def start_node(self, name: str, port: int, data_dir: Path, wait: bool = True, **extra: str) -> Proc:
        """A `cairn serve` node on its port and data dir (nodes sharing a data dir share one index copy)."""
        proc = self._spawn(name, [str(BIN / "cairn"), "serve", "--port", str(port)], self.env(data_dir, **extra))
        proc.url = f"http://127.0.0.1:{port}"
        if wait:
            self.wait_ready(proc)
        return proc

    def _healthy(self, url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _dead(self, proc: Proc) -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        return False

    def start_worker(self, name: str, queues: str, app: str = "workers.celery_app", concurrency: int = 1,
                     pythonpath: str = "", wait: bool = True, **extra: str) -> Proc:
        """`celery -A <app> worker -Q <queues>` with its own data dir (clones), sharing the catalog;
        `wait=False`: return at once (`wait_ready` later), so processes start side by side."""
        env = self.env(self.root / name, **extra)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH", "")]))
        argv = [str(BIN / "celery"), "-A", app, "worker", "-Q", queues, "-c", str(concurrency), "-P", "prefork",
                "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-l", "INFO"]
        proc = self._spawn(name, argv, env)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: Proc) -> Proc:
        """Until a worker started with wait=False says it is ready (or a node answers /healthz)."""
        if proc.url:
            wait_for(lambda: self._healthy(proc.url) or self._dead(proc), 120, f"{proc.name} to start")
        else:
            wait_for(lambda: b"ready." in proc.log.read_bytes() or self._dead(proc), 120, f"worker {proc.name} to start")
        return proc

    def client(self, token: str, url: str = "") -> httpx.Client:
        """A client of the API (the first node's, or the node at `url`)."""
        return httpx.Client(base_url=url or self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
