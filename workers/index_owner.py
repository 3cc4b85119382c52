"""The index owner: with Qdrant Edge and a broker, one `cairn serve` node consumes `index` and owns the
shard, named by a lease in the catalog that it renews; the other nodes are API replicas of it.

A node may take the lease when it is free or expired, and only if its data dir holds the copy of the index
the lease names (`index_id`, a file in the data dir): a node with another, private data dir would serve and
write an index missing everything the owner applied. So takeover needs the data dir on a shared volume;
without one, replicas forward to the owner and answer 503 while it is down (docs/distributed.md)."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from indexer.catalog.schema import index_leases
from indexer.settings import Settings

log = logging.getLogger(__name__)

LEASE = "index"
INDEX_ID_FILE = "index-id"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NotIndexOwner(RuntimeError):
    """This process must not open the index: another node owns it (and this one would write a copy)."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    url: str
    index_id: str
    acquired_at: dt.datetime
    renewed_at: dt.datetime
    expires_at: dt.datetime

    def live(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at > (now or _now())


def node_url(settings: Settings, host: str, port: int) -> str:
    """Where other nodes reach this one: CAIRN_NODE_URL, else http://HOST:PORT (the host name for 0.0.0.0)."""
    if settings.node_url:
        return settings.node_url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):  # the wildcard names no address to reach
        host = socket.gethostname()
    return f"http://{host}:{port}"


def index_id(data_dir: Path, create: bool) -> str:
    """The id of the copy of the index in this data dir ("" when it has none and `create` is false)."""
    path = data_dir / INDEX_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            return ""
    data_dir.mkdir(parents=True, exist_ok=True)
    value = uuid.uuid4().hex
    path.write_text(value + "\n", encoding="utf-8")
    return value


class IndexLease:
    """The lease row: taken when free or expired (by a node with the same copy of the index), renewed by
    its holder; every change is one conditional statement, so two nodes never both hold it."""

    def __init__(self, engine: Engine, node: str, url: str, seconds: int) -> None:
        self.engine, self.node, self.url = engine, node, url
        self.ttl = dt.timedelta(seconds=seconds)

    def current(self) -> LeaseRecord | None:
        t = index_leases.c
        with self.engine.connect() as conn:
            row = conn.execute(select(t.holder, t.url, t.index_id, t.acquired_at, t.renewed_at, t.expires_at)
                               .where(t.name == LEASE)).first()
        return LeaseRecord(*row) if row is not None else None

    def try_take(self, copy: str, dead_holder: str = "") -> bool:
        """Take the lease for this node if it is free, expired or already ours, and names `copy` (or no
        copy yet). `dead_holder`: a holder known to be dead (a previous process of this very node), whose
        lease is taken even before it expires. True when this node holds it afterwards."""
        now = _now()
        values = {"holder": self.node, "url": self.url, "index_id": copy, "acquired_at": now, "renewed_at": now,
                  "expires_at": now + self.ttl}
        t = index_leases.c
        ours = (t.holder == self.node) | (t.holder == dead_holder) if dead_holder else t.holder == self.node
        with self.engine.begin() as conn:
            taken = conn.execute(update(index_leases).where(
                t.name == LEASE, (t.expires_at <= now) | ours,
                (t.index_id == copy) | (t.index_id == "")).values(**values)).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(index_leases.insert(), [{"name": LEASE, **values}])
            return True
        except IntegrityError:  # someone holds it (or held it, for another copy)
            return False

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (another node took it after it expired)."""
        now = _now()
        t = index_leases.c
        with self.engine.begin() as conn:
            return bool(conn.execute(update(index_leases).where(t.name == LEASE, t.holder == self.node)
                                     .values(renewed_at=now, expires_at=now + self.ttl)).rowcount)

    def release(self) -> None:
        """Let another node take over at once (a clean stop), keeping which copy of the index it is."""
        t = index_leases.c
        with self.engine.begin() as conn:
            conn.execute(update(index_leases).where(t.name == LEASE, t.holder == self.node)
                         .values(expires_at=_now()))


class LeaseKeeper:
    """Renews the owner's lease every third of its length; calls `lost` once if it cannot (the catalog was
    unreachable for longer than the lease, or another node took it): the owner must stop writing."""

    def __init__(self, lease: IndexLease, lost: Callable[[], None]) -> None:
        self.lease, self.lost = lease, lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cairn-index-lease", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if release:
            try:
                self.lease.release()
            except SQLAlchemyError:
                log.warning("could not release the index lease; it expires by itself")

    def _run(self) -> None:
        every = self.lease.ttl.total_seconds() / 3
        last_renewed = _now()
        while not self._stop.wait(every):
            try:
                if self.lease.renew():
                    last_renewed = _now()
                    continue
                log.critical("node %s lost the index lease to another node: it stops owning the index", self.lease.node)
            except SQLAlchemyError:
                if _now() - last_renewed < self.lease.ttl - dt.timedelta(seconds=every):
                    log.warning("could not renew the index lease; trying again", exc_info=True)
                    continue
                log.critical("could not renew the index lease for %ss: this node stops owning the index",
                             int(self.lease.ttl.total_seconds()))
            self.lost()
            return


def address_free(host: str, port: int) -> bool:
    """Whether no process listens on host:port here (this process could bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no listener
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def node_name(port: int) -> str:
    """This node in the lease: host, port and process id (a restarted node is a new holder)."""
    return f"{socket.gethostname()}:{port}:{os.getpid()}"
