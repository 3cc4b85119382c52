"""Per-source locks: exclusive, and released when the holding process is killed with SIGKILL."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from indexer.locks import AdvisoryLock, FileLock, source_lock

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[2]


def postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        return True
    except OSError:
        return False


def hold_in_subprocess(code: str) -> subprocess.Popen:
    """Run `code` (which takes a lock) in another process that prints READY, then sleeps."""
    script = textwrap.dedent(code) + "\nprint('READY', flush=True)\nimport time\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    return proc


def test_file_lock_is_exclusive_and_released(tmp_path):
    first, second = FileLock(tmp_path, "sync:repo"), FileLock(tmp_path, "sync:repo")
    assert first.acquire() and not second.acquire()
    assert FileLock(tmp_path, "sync:other").acquire()  # another source is not blocked
    first.release()
    assert second.acquire()
    second.release()


def test_file_lock_dies_with_a_killed_process(tmp_path):
    proc = hold_in_subprocess(f"""
        from indexer.locks import FileLock
        assert FileLock({str(tmp_path)!r}, "sync:repo").acquire()
    """)
    try:
        assert not FileLock(tmp_path, "sync:repo").acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert FileLock(tmp_path, "sync:repo").acquire()


def test_sqlite_catalogs_get_file_locks(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    assert isinstance(source_lock(engine, tmp_path, "sync:x"), FileLock)


@pytest.mark.skipif(not postgres_up(), reason="PostgreSQL is not reachable on 127.0.0.1:5432")
def test_advisory_lock_is_exclusive_and_dies_with_a_killed_process():
    engine = create_engine(PG_URL)
    name = f"sync:test-{uuid.uuid4().hex}"
    assert isinstance(source_lock(engine, Path("/nonexistent"), name), AdvisoryLock)
    mine, theirs = AdvisoryLock(engine, name), AdvisoryLock(engine, name)
    assert mine.acquire() and not theirs.acquire()
    mine.release()
    proc = hold_in_subprocess(f"""
        from sqlalchemy import create_engine
        from indexer.locks import AdvisoryLock
        assert AdvisoryLock(create_engine({PG_URL!r}), {name!r}).acquire()
    """)
    try:
        assert not theirs.acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # PostgreSQL ends the session when the killed process's socket closes; allow it a moment.
    import time

    deadline = time.monotonic() + 10
    while not theirs.acquire():
        assert time.monotonic() < deadline, "the killed holder's advisory lock was never released"
        time.sleep(0.1)
    theirs.release()
    engine.dispose()
