"""The Qdrant Edge shard in a process of its own, so the serving process's GIL never waits for it.

The Edge binding keeps the GIL for the whole of a call: a filtered vector search at a million chunks
holds it for ~5 ms, an HNSW build for seconds to minutes. In the API process every other step of
every request (HTTP, tantivy's Python side, hydration, reranking) waited behind those calls
(bench/scale_1m.py, py-spy --gil at 8 clients: ~half of all GIL time). `ProcessVectorStore` is the
same `VectorStore` as `EdgeVectorStore`, but a child process owns the shard (and its WAL lock) and
answers the calls over a Unix socket, so vector work runs on the other core and an optimize stalls
vector searches only, never the process that serves HTTP.

Protocol: the parent writes one JSON line of options to the child's stdin and keeps the pipe open (the
child exits when it closes: a parent that dies takes its child along); the child opens the store and
answers `ready` or `error <message>` on stdout, then serves pickled `(method, args)` calls on a Unix
socket in a private 0700 directory, authenticated with a random key (multiprocessing's HMAC
challenge), one thread per connection. The parent keeps a pool of connections, one per concurrent
caller. Vectors travel as float32 bytes and points as (id, payload) without the chunk text.

A search that gets no answer within `search_timeout` (the child is busy, e.g. an optimize of many new
points holds it) raises `StoreTimeout`, and the searcher answers from BM25 alone, saying so; once one
search timed out during an optimize, the next ones fail fast until the optimize returns.
A child that dies (killed, crashed) is started again on the next call; a read (search, ids) is retried
once on the new child, a write raises `StoreError` and is redone by the sync that made it (its
documents are not marked indexed), exactly as after a crash of the whole process."""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

import numpy as np

from indexer.stores import ScoredId, SearchFilter, StoreError, StoreLocked, StoreTimeout, Vector, VectorPoint
from indexer.stores.payload import prepare_points

log = logging.getLogger(__name__)

READS = frozenset({"search", "ids"})  # retried once on a restarted child


class ProcessVectorStore:
    """`VectorStore` over an `EdgeVectorStore` (same arguments) living in a child process."""

    def __init__(self, path: Path, dim: int, search_timeout: float | None = None, open_wait: float = 15.0,
                 **store_options: Any) -> None:
        self.path = Path(path)
        self.dim = dim
        self.search_timeout = search_timeout  # seconds; past it a search raises StoreTimeout
        # A shard still locked when we start may belong to the child of a server that was just killed
        # (it closes the shard once it sees its parent gone): wait this long for the lock.
        self.open_wait = open_wait
        self._options = store_options
        self._lock = threading.Lock()  # guards starting/stopping the child and the pool
        self._idle: queue.SimpleQueue[tuple[int, Connection]] = queue.SimpleQueue()  # (generation, conn)
        self._child: subprocess.Popen | None = None
        self._socket_dir: str | None = None
        self._address = ""
        self._authkey = b""
        self._generation = 0  # bumped per child, so connections to a dead one are never reused
        self._closed = False
        # While an optimize is in flight and one search already waited for it in vain, the next ones
        # do not wait: a merge can hold the child for minutes, and each search would lose its timeout.
        self._optimizing = 0
        self._optimize_blocks_searches = False
        self._start()

    # -- the child's lifecycle --------------------------------------------------------------------

    def _start(self) -> None:
        deadline = time.monotonic() + self.open_wait
        while True:
            try:
                return self._start_once()
            except StoreLocked:
                if time.monotonic() >= deadline:
                    raise
                log.info("vector index %s is still locked (a previous owner closing?); waiting", self.path)
                time.sleep(0.2)

    def _start_once(self) -> None:
        self._socket_dir = tempfile.mkdtemp(prefix="cairn-vectors-")  # mkdtemp: mode 0700
        self._address = os.path.join(self._socket_dir, "socket")
        self._authkey = os.urandom(32)
        child = subprocess.Popen([sys.executable, "-m", "indexer.stores.edge_process"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=None, close_fds=True)
        assert child.stdin is not None and child.stdout is not None
        config = {"path": str(self.path), "dim": self.dim, "options": self._options,
                  "address": self._address, "authkey": self._authkey.hex()}
        try:
            child.stdin.write((json.dumps(config) + "\n").encode())
            child.stdin.flush()
            answer = child.stdout.readline().decode().strip()
        except OSError as exc:
            answer = f"error cannot talk to the vector process: {exc}"
        if answer != "ready":
            self._reap(child)
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            status, _, message = answer.partition(" ")
            raise (StoreLocked if status == "locked" else StoreError)(
                message or f"vector process for {self.path} exited with {child.returncode} before it was ready")
        self._child = child
        self._generation += 1
        log.info("vector process %d serves %s", child.pid, self.path)

    @staticmethod
    def _reap(child: subprocess.Popen, timeout: float = 60) -> None:
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _restart(self, generation: int) -> None:
        """Start a new child if the one of `generation` is dead (once, however many callers noticed)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"vector index {self.path} is closed")
            if generation != self._generation:
                return  # another caller already started its successor
            self._drop_pool()
            if self._child is not None:
                # A killed process shows as a zombie before its last threads are gone: wait for it (and
                # kill one that is alive but whose connections fail), so the shard's lock is free.
                self._reap(self._child, timeout=5)
                log.error("vector process for %s exited (code %s); starting it again", self.path,
                          self._child.returncode)
            shutil.rmtree(self._socket_dir or "", ignore_errors=True)
            self._start()

    def _drop_pool(self) -> None:
        while True:
            try:
                self._idle.get_nowait()[1].close()
            except queue.Empty:
                return

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    # -- calls ------------------------------------------------------------------------------------

    def _connection(self, deadline: float | None) -> tuple[int, Connection]:
        """An idle connection to the current child, or a new one. Connecting needs the child to accept
        and answer the key challenge, i.e. its GIL, which an optimize can hold for minutes: with a
        deadline the connect runs on a helper thread, and a caller that stops waiting leaves the
        connection, once made, to the pool."""
        while True:
            try:
                generation, conn = self._idle.get_nowait()
            except queue.Empty:
                break
            if generation == self._generation:
                return generation, conn
            conn.close()
        generation = self._generation
        if deadline is None:
            return generation, self._connect(generation)
        handoff = _Handoff()

        def connect() -> None:
            try:
                conn = self._connect(generation)
            except _ChildGone as gone:
                handoff.give(gone)
                return
            if not handoff.give(conn):
                self._idle.put((generation, conn))

        threading.Thread(target=connect, daemon=True, name="cairn-vectors-connect").start()
        got = handoff.take(max(0.0, deadline - time.monotonic()))
        if got is None:
            raise StoreTimeout("the vector process did not take a connection in time (it is busy)")
        if isinstance(got, _ChildGone):
            raise got
        return generation, got

    def _connect(self, generation: int) -> Connection:
        try:
            return Client(self._address, family="AF_UNIX", authkey=self._authkey)
        except OSError as exc:
            raise _ChildGone(generation) from exc

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        if self._closed:
            raise StoreError(f"vector index {self.path} is closed")
        for attempt in (1, 2):
            try:
                return self._call_once(method, args, timeout)
            except _ChildGone as gone:
                self._restart(gone.generation)
                if method not in READS or attempt == 2:
                    raise StoreError(f"vector process died during {method}; it was started again, "
                                     "the call was not applied") from gone.__cause__
        raise AssertionError("unreachable")

    def _call_once(self, method: str, args: tuple, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        generation, conn = self._connection(deadline)
        try:
            conn.send((method, args))
            if deadline is not None and not conn.poll(max(0.0, deadline - time.monotonic())):
                conn.close()  # its late answer must never reach another caller
                raise StoreTimeout(f"vector {method} took longer than {timeout:g}s (the vector process is busy)")
            status, value = conn.recv()
        except (EOFError, OSError) as exc:
            conn.close()
            raise _ChildGone(generation) from exc
        self._idle.put((generation, conn))
        if status != "ok":
            raise StoreError(value)
        return value

    # -- VectorStore ------------------------------------------------------------------------------

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if points:
            items, vectors = prepare_points(points, self.dim)  # checked here: a bad batch never travels
            self._call("upsert", items, vectors.tobytes())

    def delete(self, chunk_ids: Iterable[str]) -> None:
        ids = list(chunk_ids)
        if ids:
            self._call("delete", ids)

    def search(self, vector: Vector, flt: SearchFilter, limit: int) -> list[ScoredId]:
        if flt.matches_nothing or limit <= 0:
            return []
        if self._optimize_blocks_searches:
            raise StoreTimeout("the vector index is being optimized (an earlier search timed out waiting for it)")
        try:
            found = self._call("search", np.asarray(vector, dtype=np.float32).tobytes(), flt, limit,
                               timeout=self.search_timeout)
        except StoreTimeout:
            if self._optimizing:
                self._optimize_blocks_searches = True
            raise
        return [ScoredId(cid, score) for cid, score in found]

    def ids(self, source: str | None = None) -> set[str]:
        return self._call("ids", source)

    def flush(self) -> None:
        self._call("flush")

    def optimize(self) -> bool:
        with self._lock:
            self._optimizing += 1
        try:
            return self._call("optimize")
        finally:
            with self._lock:
                self._optimizing -= 1
                if not self._optimizing:
                    self._optimize_blocks_searches = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            child = self._child
        try:
            if child is not None and child.poll() is None:
                self._call_once("close", ())
        except (_ChildGone, StoreError) as exc:
            log.warning("vector process for %s did not close cleanly: %s", self.path, exc)
        finally:
            self._drop_pool()
            if child is not None:
                self._reap(child)
            shutil.rmtree(self._socket_dir or "", ignore_errors=True)


class _Handoff:
    """One value passed from a helper thread to a waiter that may give up: `give` returns False when
    the waiter has stopped waiting (the value is then the helper's to dispose of)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: Any = None
        self._given = self._abandoned = False

    def give(self, value: Any) -> bool:
        with self._cond:
            if self._abandoned:
                return False
            self._value, self._given = value, True
            self._cond.notify()
            return True

    def take(self, timeout: float) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._given, timeout=timeout):
                self._abandoned = True
                return None
            return self._value


class _ChildGone(Exception):
    """The connection to the child of `generation` broke (the child died or is dying)."""

    def __init__(self, generation: int) -> None:
        super().__init__(f"the vector process (start {generation}) is gone")
        self.generation = generation


# -- the child ------------------------------------------------------------------------------------


class _Server:
    """Runs in the child: one EdgeVectorStore, one thread per parent connection."""

    def __init__(self, store: Any, dim: int) -> None:
        self.store = store
        self.dim = dim
        self.stopping = threading.Event()

    def handle(self, method: str, args: tuple) -> Any:
        store = self.store
        if method == "search":
            vector, flt, limit = args
            return [(s.chunk_id, s.score) for s in store.search(np.frombuffer(vector, dtype=np.float32).tolist(),
                                                                  flt, limit)]
        if method == "upsert":
            items, vectors = args
            store.upsert_payloads(items, np.frombuffer(vectors, dtype=np.float32).reshape(len(items), self.dim))
            return None
        if method == "delete":
            return store.delete(args[0])
        if method == "ids":
            return store.ids(args[0])
        if method == "flush":
            return store.flush()
        if method == "optimize":
            return store.optimize()
        raise StoreError(f"unknown vector process call {method!r}")

    def serve(self, conn: Connection) -> None:
        with conn:
            while not self.stopping.is_set():
                try:
                    method, args = conn.recv()
                except (EOFError, OSError):
                    return
                if method == "close":
                    self.shutdown()
                    conn.send(("ok", None))
                    os._exit(0)
                try:
                    reply = ("ok", self.handle(method, args))
                except StoreError as exc:
                    reply = ("error", str(exc))
                except Exception as exc:  # one bad call must not kill the shard's owner (logged)
                    log.exception("vector process: %s failed", method)
                    reply = ("error", f"vector index {method} failed: {exc}")
                try:
                    conn.send(reply)
                except OSError:
                    return

    def shutdown(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            self.store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s vector-process %(message)s")
    config = json.loads(sys.stdin.buffer.readline())
    try:
        from indexer.stores.edge import EdgeVectorStore

        store = EdgeVectorStore(Path(config["path"]), config["dim"], **config["options"])
        listener = Listener(config["address"], family="AF_UNIX", backlog=64,  # bursts of new callers
                            authkey=bytes.fromhex(config["authkey"]))
    except Exception as exc:  # noqa: BLE001 - whatever failed, the parent gets it as its error message
        status = "locked" if isinstance(exc, StoreLocked) else "error"
        sys.stdout.write(f"{status} " + " ".join(str(exc).split()) + "\n")
        sys.stdout.flush()
        sys.exit(1)
    server = _Server(store, config["dim"])

    def watch_parent() -> None:  # stdin closes when the parent exits, however it exits
        sys.stdin.buffer.read()
        server.shutdown()
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        try:
            conn = listener.accept()
        except (OSError, AuthenticationError):  # a peer that failed the key challenge
            log.warning("vector process: refused a connection", exc_info=True)
            continue
        threading.Thread(target=server.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
