"""The Edge shard owned by a child process: crashes, a dying parent, a second owner, strangers on the socket.
(The store contract itself runs for it in test_vector_stores.py, as `edge-process`.)"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
import pytest

from indexer.models import PUBLIC, Access, Chunk
from indexer.stores import SearchFilter, StoreError, StoreLocked, StoreTimeout, VectorPoint
from indexer.stores.edge_process import ProcessVectorStore

DIM = 8
REPO = Path(__file__).resolve().parents[2]
EVERYONE = SearchFilter(principals=(PUBLIC,))


def points(n: int, seed: int = 0, acl: tuple[str, ...] = (PUBLIC,)) -> list[VectorPoint]:
    rows = np.random.default_rng(seed).standard_normal((n, DIM))
    chunks = [Chunk(doc_id=f"r:s{seed}/f{i}.py", source="r", path=f"s{seed}/f{i}.py", ordinal=0, start_line=1, end_line=2,
                    content=f"text {i}", kind="code", language="python", acl=tuple(Access.of(*acl).acl()))
              for i in range(n)]
    return [VectorPoint(c, row.tolist()) for c, row in zip(chunks, rows, strict=True)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purposes
        return fh.read().split(") ")[1][0] != "Z"


def wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def store(tmp_path):
    store = ProcessVectorStore(tmp_path / "edge", DIM)
    yield store
    store.close()


def test_the_shard_lives_in_another_process_and_answers_like_the_in_process_store(store, tmp_path):
    assert store.pid != os.getpid() and alive(store.pid)
    batch = points(50)
    store.upsert(batch)
    top = store.search(batch[7].vector, EVERYONE, 5)
    assert top[0].chunk_id == batch[7].chunk.id and top[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.search(batch[7].vector, SearchFilter(principals=("group:nobody",)), 5) == []
    assert store.ids("r") == {p.chunk.id for p in batch} and store.ids("other") == set()
    store.optimize()
    store.flush()
    pid = store.pid
    store.close()
    assert wait_gone(pid)
    with pytest.raises(StoreError, match="closed"):
        store.search(batch[0].vector, EVERYONE, 5)
    store.close()  # twice is fine


def test_a_killed_child_is_replaced_reads_retry_and_writes_fail_loudly(store):
    batch = points(30)
    store.upsert(batch)
    first = store.pid
    os.kill(first, signal.SIGKILL)
    assert wait_gone(first)
    # a search retries once on a new child, which reopens the shard from its WAL: nothing was lost
    assert store.search(batch[3].vector, EVERYONE, 1)[0].chunk_id == batch[3].chunk.id
    assert store.pid != first and alive(store.pid)
    os.kill(store.pid, signal.SIGKILL)
    assert wait_gone(store.pid)
    with pytest.raises(StoreError, match="died during upsert"):  # not applied, so the sync redoes it
        store.upsert(points(5, seed=9))
    assert len(store.ids()) == 30
    store.upsert(points(5, seed=9))  # the next call goes to the new child
    assert len(store.ids()) == 35


def test_concurrent_callers_each_get_their_answer(store):
    batch = points(200, seed=4)
    store.upsert(batch)
    wrong: list[str] = []

    def caller(offset: int) -> None:
        for i in range(offset, 200, 8):
            found = store.search(batch[i].vector, EVERYONE, 1)
            if found[0].chunk_id != batch[i].chunk.id:
                wrong.append(batch[i].chunk.id)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_bad_call_is_an_error_and_the_child_keeps_serving(store):
    store.upsert(points(3))
    with pytest.raises(StoreError, match="numbers each"):
        store.upsert([VectorPoint(points(1)[0].chunk, [1.0, 2.0])])
    with pytest.raises(StoreError, match="delete failed"):
        store.delete(["not-a-chunk-id"])
    assert len(store.ids()) == 3


def test_a_second_owner_of_the_directory_is_refused_with_a_clear_error(store, tmp_path):
    started = time.monotonic()
    with pytest.raises(StoreLocked, match="in use by another process"):
        ProcessVectorStore(tmp_path / "edge", DIM, open_wait=1.0)
    assert 1.0 <= time.monotonic() - started < 10  # waited for the lock, then gave up
    assert len(store.search([1.0] * DIM, EVERYONE, 5)) == 0  # the owner is unaffected


def test_the_socket_is_private_and_needs_the_key(store):
    store.upsert(points(3))
    directory = Path(store._address).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
        Client(store._address, family="AF_UNIX", authkey=b"guess")
    assert len(store.ids()) == 3


def test_the_child_exits_when_its_parent_dies(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from indexer.stores.edge_process import ProcessVectorStore
        store = ProcessVectorStore(sys.argv[1], {DIM})
        print(store.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "edge")], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait()
    reopened = ProcessVectorStore(tmp_path / "edge", DIM)  # at once: it waits for the orphan to let go
    assert wait_gone(child)
    reopened.close()


def test_a_stalled_child_times_searches_out_and_its_late_answers_reach_nobody(tmp_path, stop_process):
    store = ProcessVectorStore(tmp_path / "edge", DIM, search_timeout=0.3)
    try:
        batch = points(20)
        store.upsert(batch)
        stop_process(store.pid)  # what an optimize holding the child's GIL looks like from here
        try:
            started = time.monotonic()
            with pytest.raises(StoreTimeout, match=r"longer than 0\.3s"):
                store.search(batch[1].vector, EVERYONE, 1)
            assert time.monotonic() - started < 5
            # callers beyond the idle connections must connect, which needs the child too: same limit
            outcomes: list[str] = []

            def caller() -> None:
                try:
                    store.search(batch[1].vector, EVERYONE, 1)
                    outcomes.append("answered")
                except StoreTimeout:
                    outcomes.append("timed out")

            threads = [threading.Thread(target=caller) for _ in range(3)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert outcomes == ["timed out"] * 3 and time.monotonic() - started < 5
        finally:
            os.kill(store.pid, signal.SIGCONT)
        for i in (2, 3, 4):  # each answer is its own question's, not the stale one
            assert store.search(batch[i].vector, EVERYONE, 1)[0].chunk_id == batch[i].chunk.id
        assert len(store.ids()) == 20  # writes and listings wait as long as they need
    finally:
        store.close()


def test_servers_turn_the_vector_process_on_unless_told_otherwise(tmp_path, monkeypatch):
    from indexer.settings import Settings

    monkeypatch.delenv("CAIRN_VECTOR_PROCESS", raising=False)
    assert Settings(data_dir=tmp_path).vector_process is None  # one-shot commands: in-process
    assert Settings(data_dir=tmp_path).for_serving().vector_process is True
    monkeypatch.setenv("CAIRN_VECTOR_PROCESS", "false")
    assert Settings(data_dir=tmp_path).for_serving().vector_process is False


def test_during_an_optimize_only_the_first_search_waits_for_the_timeout(tmp_path, stop_process):
    store = ProcessVectorStore(tmp_path / "edge", DIM, search_timeout=0.5)
    try:
        batch = points(20)
        store.upsert(batch)
        stop_process(store.pid)  # the optimize below then runs as long as we like
        optimize = threading.Thread(target=store.optimize)
        optimize.start()
        try:
            time.sleep(0.1)
            waited = time.monotonic()
            with pytest.raises(StoreTimeout, match=r"in time|longer than 0\.5s"):
                store.search(batch[0].vector, EVERYONE, 1)
            assert time.monotonic() - waited >= 0.5
            fast = time.monotonic()
            with pytest.raises(StoreTimeout, match="being optimized"):
                store.search(batch[0].vector, EVERYONE, 1)
            assert time.monotonic() - fast < 0.1
        finally:
            os.kill(store.pid, signal.SIGCONT)
        optimize.join(timeout=30)
        assert store.search(batch[5].vector, EVERYONE, 1)[0].chunk_id == batch[5].chunk.id  # waits again
    finally:
        store.close()
