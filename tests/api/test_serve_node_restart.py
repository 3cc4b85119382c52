"""A `cairn serve` index owner killed without releasing its lease and restarted on the same address (as a
platform's supervisor restarts it): it takes the index back at once, instead of refusing to start as an API
replica of its own dead predecessor until the lease expires. Never while its address is served, and never
from a live owner elsewhere."""
from __future__ import annotations

import socket

import pytest

from api.node import ServeNode
from indexer.settings import Settings
from workers.index_owner import IndexLease, index_id


@pytest.fixture
def port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node(tmp_path, port: int) -> ServeNode:
    settings = Settings(data_dir=tmp_path / "data", celery_broker_url="redis://127.0.0.1:6379/15",
                        index_lease_seconds=600)
    return ServeNode(settings, "127.0.0.1", port)


def killed_owner(serve: ServeNode, url: str, host: str = "") -> IndexLease:
    """A live lease (for the next ten minutes) held by a process that is gone (pid 4242 on this host and
    port, unless `host` names another host), on this node's copy."""
    dead = IndexLease(serve.lease.engine, f"{host or socket.gethostname()}:{serve.port}:4242", url, 600)
    assert dead.try_take(index_id(serve.settings.data_dir, create=True))
    return dead


def test_a_restarted_node_takes_back_the_lease_its_killed_predecessor_held(tmp_path, port):
    serve = node(tmp_path, port)
    killed_owner(serve, serve.lease.url)
    try:
        assert serve.take_lease()
        current = serve.lease.current()
        assert current.holder == serve.lease.node and current.live()
    finally:
        serve.release()


def test_not_while_something_listens_on_its_address(tmp_path, port):
    serve = node(tmp_path, port)
    killed_owner(serve, serve.lease.url)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not serve.take_lease()  # the owner there is alive: this node would be a second writer
    assert serve.lease.current().holder.endswith(":4242")


def test_never_from_a_live_owner_at_another_address(tmp_path, port):
    serve = node(tmp_path, port)
    killed_owner(serve, "http://127.0.0.1:1")
    assert not serve.take_lease()
    assert serve.lease.current().holder.endswith(":4242")


def test_never_from_an_owner_on_another_host_that_claims_the_same_address(tmp_path, port):
    serve = node(tmp_path, port)
    killed_owner(serve, serve.lease.url, host="elsewhere")  # two hosts configured with one CAIRN_NODE_URL
    assert not serve.take_lease()
    assert serve.lease.current().holder == f"elsewhere:{port}:4242"
