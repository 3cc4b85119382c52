"""Per-source locks that die with their holder: a PostgreSQL session advisory lock, or flock under data_dir.

A process killed with `kill -9` releases either kind at once (its database connection or its file
descriptor goes away), so a crashed sync never leaves a source locked."""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)


class SourceLock(Protocol):
    """An exclusive, non-blocking lock on one source (or one source's index writer)."""

    name: str

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False when it is held elsewhere."""
        ...

    def release(self) -> None:
        ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock (the same in every process)."""
    digest = hashlib.sha256(f"cairn-lock:{name}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock held on a connection of its own (autocommit, no open
    transaction), so the lock lives exactly as long as that connection."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(self.name)}).scalar())
        except Exception:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(self.name)})
        finally:
            conn.invalidate()  # never hand a connection that held a session lock back to the pool


class FileLock:
    """flock(2) on a file under `<data_dir>/locks` (one machine; the embedded SQLite deployment)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.path = Path(directory) / f"{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:24]}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.name}\n".encode("utf-8", "surrogatepass"))
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def source_lock(engine: Engine, data_dir: Path, name: str) -> SourceLock:
    """The right lock for the catalog in use: advisory on PostgreSQL, flock otherwise."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name)
    return FileLock(Path(data_dir) / "locks", name)
