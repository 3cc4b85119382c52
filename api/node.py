"""`cairn serve` as one node of a deployment: the index owner, or an API replica of it.

Embedded (no broker) or with a Qdrant server, every node serves the full app as before. With a broker and
Qdrant Edge, the index has one owner, named by a lease in the catalog (workers/index_owner.py): the node
holding it serves the full app and consumes `index`; any other node serves the replica app
(api/replica.py), which forwards every request to the owner. A replica whose data dir holds the owner's
copy of the index (a shared volume) takes the lease when the owner stops renewing it and turns into the
owner in the same process (its HTTP server restarts on the same port); an owner that loses its lease
stops owning the index the same way. A node that can neither own nor reach an owner refuses to start."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import FrameType

import httpx
import uvicorn
from fastapi import FastAPI

from indexer.catalog import open_catalog
from indexer.settings import Settings
from indexer.stores.backends import vector_backend
from workers.index_owner import IndexLease, LeaseKeeper, LeaseRecord, address_free, index_id, node_name, node_url

log = logging.getLogger(__name__)

BuildServer = Callable[[FastAPI], uvicorn.Server]


class NodeRefused(RuntimeError):
    """This node cannot serve: it may not own the index and cannot reach the node that does."""


def clustered(settings: Settings) -> bool:
    """Whether nodes share one index owner: a broker, and a vector backend only its owner may write."""
    return bool(settings.celery_broker_url) and vector_backend(settings).owner_writes


class ServeNode:
    """Runs the HTTP server with the app of this node's current role until a signal stops it."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        engine = open_catalog(settings.catalog_url).engine  # checked current (`cairn serve` checked it already)
        self.host, self.port = host, port
        self.lease = IndexLease(engine, node_name(port), node_url(settings, host, port), settings.index_lease_seconds)
        self.keeper: LeaseKeeper | None = None
        self.server: uvicorn.Server | None = None
        self.stopping = False
        self.role = ""
        self._changed = threading.Event()

    # -- roles ------------------------------------------------------------------------------------

    def _copy(self, create: bool) -> str:
        return index_id(self.settings.data_dir, create)

    def take_lease(self) -> bool:
        """Own the index if this node may and the lease is free (or expired) for its copy of the index."""
        if not self.settings.index_queue_consumer:
            return False
        current = self.lease.current()
        dead = self._dead_predecessor(current)
        if current is not None and current.live() and current.holder not in (self.lease.node, dead):
            return False
        copy = self._copy(create=current is None or not current.index_id)
        if not self.lease.try_take(copy, dead_holder=dead):
            return False
        if dead:
            log.warning("node %s takes over the index from %s, a previous process of this node that stopped "
                        "without releasing it", self.lease.node, dead)
        self.keeper = LeaseKeeper(self.lease, lost=self._lost).start()
        log.info("node %s owns the index (copy %s) and consumes the index queue", self.lease.node, copy)
        return True

    def _dead_predecessor(self, current: LeaseRecord | None) -> str:
        """The holder of a live lease that is a previous process of this node (killed, so it never released
        it): on this host and port, at this node's address, where nothing listens any more. "" when there is none. A node restarted
        on its address takes the lease at once, instead of refusing to start until it expires (its
        predecessor, named as the owner, does not answer)."""
        if current is None or not current.live() or current.holder == self.lease.node:
            return ""
        host, _, rest = current.holder.partition(":")
        same_place = host == self.lease.node.partition(":")[0] and rest.partition(":")[0] == str(self.port)
        if not same_place or current.url != self.lease.url or not address_free(self.host, self.port):
            return ""
        return current.holder

    def check_replica(self) -> None:
        """A replica must reach a live owner at start; raise NodeRefused saying why it cannot."""
        owner = self.lease.current()
        if owner is None or not owner.live():
            if not self.settings.index_queue_consumer:
                reason = "CAIRN_INDEX_QUEUE_CONSUMER=false: it never owns the index"
            else:
                reason = (f"its data dir {self.settings.data_dir} does not hold the owner's copy of the index "
                          f"(index-id {owner.index_id if owner else '?'}); start the owner, or this node on the "
                          "owner's data dir (a shared volume)")
            raise NodeRefused(f"no `cairn serve` node owns the index, and this node cannot take it ({reason})")
        try:
            httpx.get(f"{owner.url}/healthz", timeout=5.0).raise_for_status()
        except httpx.HTTPError as exc:
            raise NodeRefused(f"this node is an API replica of the index owner {owner.holder}, which does not "
                              f"answer at {owner.url} ({type(exc).__name__}): set CAIRN_NODE_URL on the owner to "
                              "an address the other nodes reach") from exc

    def _lost(self) -> None:
        """The owner lost its lease: stop serving as the owner (the server restarts as a replica)."""
        self.keeper = None
        self._change_role()

    def _change_role(self) -> None:
        self._changed.set()
        if self.server is not None:
            self.server.should_exit = True

    def watch_takeover(self) -> None:
        """In a replica: take the lease once the owner stops renewing it (if this node may)."""
        every = self.settings.index_lease_seconds / 3
        while not self._changed.wait(every):
            try:
                owner = self.lease.current()
                if (owner is None or not owner.live()) and self.take_lease():
                    log.warning("node %s takes over the index from %s", self.lease.node,
                                owner.holder if owner else "nobody")
                    self._change_role()
                    return
            except Exception:  # the catalog briefly unreachable: look again next time
                log.warning("could not check the index lease", exc_info=True)

    # -- the loop ---------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        from api.app import create_app
        from api.replica import create_replica_app

        if self.keeper is not None or self.take_lease():
            self.role = "owner"
            return create_app(self.settings, consume_index=True)
        self.check_replica()
        self.role = "replica"
        log.info("node %s is an API replica: it forwards requests to the index owner", self.lease.node)
        return create_replica_app(self.settings, self.lease, watch=self.watch_takeover)

    def run(self, build: BuildServer) -> bool:
        """Serve until a signal (True) or until the app of this node's role fails to start (False)."""
        while True:
            self._changed.clear()
            self.server = build(self.app())
            self.server.run()
            if self.stopping or not self._changed.is_set():
                break
            log.warning("node %s changes role (was %s)", self.lease.node, self.role)
        self.release()
        return self.server.started

    def release(self) -> None:
        if self.keeper is not None:
            self.keeper.stop(release=True)
            self.keeper = None

    def on_signal(self, graceful: Callable[[int, FrameType | None], None]) -> Callable[[int, FrameType | None], None]:
        """Wrap the server's signal handler: a signal ends the loop, not just the current server."""
        def handle(sig: int, frame: FrameType | None) -> None:
            self.stopping = True
            graceful(sig, frame)
        return handle
