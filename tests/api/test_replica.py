"""The API replica's forwarding (api/replica.py) against a real HTTP server standing for the index owner:
requests go through whole (method, path, query, body, the caller's credentials and Host), answers come back
whole (status, repeated headers, body), and without a live, reachable owner the replica answers 503."""
from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.replica import create_replica_app
from indexer.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.catalog.schema import index_leases
from indexer.settings import Settings
from workers.index_owner import IndexLease


class Owner(BaseHTTPRequestHandler):
    """Echoes what it received, with two cookies and a 201."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.dumps({"method": self.command, "path": self.path, "body": self.rfile.read(length).decode(),
                           "authorization": self.headers.get("authorization"), "host": self.headers.get("host"),
                           "forwarded_for": self.headers.get("x-forwarded-for")}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("set-cookie", "a=1")
        self.send_header("set-cookie", "b=2")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def owner():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Owner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    catalog = Catalog(make_engine(f"sqlite:///{tmp_path / 'catalog.db'}"))
    catalog.create_all()
    return catalog


def replica(tmp_path, catalog: Catalog) -> TestClient:
    lease = IndexLease(catalog.engine, "replica", "http://replica", 30)
    return TestClient(create_replica_app(Settings(data_dir=tmp_path), lease))


def test_requests_and_answers_pass_through_whole(tmp_path, catalog, owner):
    assert IndexLease(catalog.engine, "owner-node", owner, 30).try_take("copy")
    with replica(tmp_path, catalog) as client:
        answer = client.post("/v1/search?x=1", content=b'{"query": "q"}',
                             headers={"Authorization": "Bearer tok", "Host": "cairn.example:8443"})
        health = client.get("/healthz").json()
    assert answer.status_code == 201
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    echoed = answer.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/v1/search?x=1" and echoed["body"] == '{"query": "q"}'
    assert echoed["authorization"] == "Bearer tok" and echoed["host"] == "cairn.example:8443"
    assert echoed["forwarded_for"]
    assert health == {"status": "ok", "role": "replica", "owner": "owner-node", "owner_url": owner, "owner_live": True}


def test_without_a_live_reachable_owner_the_replica_answers_503(tmp_path, catalog):
    with replica(tmp_path, catalog) as client:
        none = client.get("/v1/sources")
    assert none.status_code == 503 and none.json()["error"] == "ServiceUnavailable" and "no index owner" in none.json()["detail"]
    lease = IndexLease(catalog.engine, "owner-node", "http://127.0.0.1:9", 30)  # nothing listens on port 9
    assert lease.try_take("copy")
    with replica(tmp_path, catalog) as client:
        unreachable = client.get("/v1/sources")
        with catalog.engine.begin() as conn:
            conn.execute(update(index_leases).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        expired = client.get("/v1/sources")
    assert unreachable.status_code == 503 and "did not answer" in unreachable.json()["detail"]
    assert unreachable.headers["retry-after"] == "5"
    assert expired.status_code == 503 and "stopped renewing its lease" in expired.json()["detail"]
