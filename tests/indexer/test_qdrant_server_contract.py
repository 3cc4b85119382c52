"""The Qdrant-server vector store (qdrant-client) under every capability its callers use: collections of a
dimension, keyword payload indexes, ACL- and scope-filtered search, idempotent writes, paging, the alias
that generations swap atomically, dropping retired generations, and connecting at start with bounded tries.

Runs against a real server when CAIRN_TEST_QDRANT_URL is set (CAIRN_TEST_QDRANT_API_KEY if it needs one;
every collection and alias made here is prefixed and removed), otherwise against qdrant-client's local mode.
Checks that local mode cannot make (payload indexes, snapshots) run only against a server: docs/distributed.md
says what was verified where."""
from __future__ import annotations

import http.server
import importlib.metadata
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from test_vector_stores import (
    DIM,
    SCOPE_CASES,
    make_chunk,
    random_corpus,
    random_principals,
    scope_chunks,
    unit,
)

from indexer.generations.state import GenerationStores
from indexer.models import PUBLIC
from indexer.settings import Settings
from indexer.stores import SearchFilter, StoreError, VectorPoint
from indexer.stores.payload import KEYWORD_INDEXES, SCROLL_PAGE
from indexer.stores.qdrant_server import (
    QdrantServerStore,
    alias_target,
    connect,
    drop_collection,
    is_plain_collection,
    point_alias,
)

SERVER = os.environ.get("CAIRN_TEST_QDRANT_URL", "")
API_KEY = os.environ.get("CAIRN_TEST_QDRANT_API_KEY") or None
server_only = pytest.mark.skipif(not SERVER, reason="local mode does not do this: needs CAIRN_TEST_QDRANT_URL")


@pytest.fixture
def client() -> Iterator[QdrantClient]:
    """A client of the server under test, or of a fresh local-mode instance; removes what the test made."""
    qdrant = connect(SERVER, API_KEY, attempts=3, delay=1.0) if SERVER else QdrantClient(location=":memory:")
    yield qdrant
    try:
        for alias in qdrant.get_aliases().aliases:
            if alias.alias_name.startswith(PREFIX):
                delete_alias(qdrant, alias.alias_name)
        for collection in qdrant.get_collections().collections:
            if collection.name.startswith(PREFIX):
                qdrant.delete_collection(collection.name)
    finally:
        qdrant.close()


PREFIX = f"cairn_contract_{uuid.uuid4().hex[:8]}_"


def delete_alias(qdrant: QdrantClient, alias: str) -> None:
    qdrant.update_collection_aliases(change_aliases_operations=[
        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))])


def name(suffix: str) -> str:
    return PREFIX + suffix


def points_for(chunks, seed: int = 0) -> tuple[list[VectorPoint], np.ndarray]:
    vectors = unit(np.random.default_rng(seed).standard_normal((len(chunks), DIM)))
    return [VectorPoint(c, v.tolist()) for c, v in zip(chunks, vectors, strict=True)], vectors


# -- collections and payload indexes ---------------------------------------------------------------

def test_a_missing_collection_is_made_for_cosine_vectors_of_the_dimension(client):
    store = QdrantServerStore(client, name("chunks"), DIM)
    params = client.get_collection(name("chunks")).config.params.vectors
    assert params.size == DIM and params.distance == models.Distance.COSINE
    with pytest.raises(StoreError, match=f"holds {DIM}-d vectors, expected {DIM + 1}"):
        QdrantServerStore(client, name("chunks"), DIM + 1)
    store.close()  # a client passed in stays open for its owner
    assert client.collection_exists(name("chunks"))


@server_only
def test_every_filter_field_has_a_keyword_payload_index(client):
    QdrantServerStore(client, name("chunks"), DIM)
    QdrantServerStore(client, name("chunks"), DIM)  # opening again adds nothing and fails on nothing
    schema = client.get_collection(name("chunks")).payload_schema
    assert {field: schema[field].data_type for field in KEYWORD_INDEXES} == dict.fromkeys(
        KEYWORD_INDEXES, models.PayloadSchemaType.KEYWORD)


# -- filtered search -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2])
def test_search_returns_only_what_the_callers_principals_may_read(client, seed):
    rng = random.Random(seed)
    chunks = random_corpus(rng, 200)
    store = QdrantServerStore(client, name("acl"), DIM)
    points, vectors = points_for(chunks, seed)
    store.upsert(points)
    for _ in range(15):
        principals = random_principals(rng)
        stale = tuple(rng.sample(["alpha", "beta", "gamma"], rng.randint(0, 1)))
        query = unit(np.random.default_rng(rng.randint(0, 10**6)).standard_normal(DIM))
        flt = SearchFilter(principals=principals, stale_sources=stale)
        allowed = [i for i, c in enumerate(chunks) if set(c.acl) & set(principals)
                   and (c.source not in stale or PUBLIC in c.acl)]
        assert {h.chunk_id for h in store.search(query.tolist(), flt, limit=300)} == {chunks[i].id for i in allowed}
        top = store.search(query.tolist(), flt, limit=5)
        expected = sorted((float(vectors[i] @ query) for i in allowed), reverse=True)[:5]
        assert np.allclose([h.score for h in top], expected, atol=1e-4)  # filtered inside the query, before top-k
    assert store.search([1.0] * DIM, SearchFilter(principals=()), 10) == []  # no principals: nothing


def test_scope_filters_restrict_sources_paths_languages_and_kinds(client):
    chunks = scope_chunks()
    store = QdrantServerStore(client, name("scope"), DIM)
    store.upsert([VectorPoint(c, [1.0] * DIM) for c in chunks.values()])
    by_id = {c.id: key for key, c in chunks.items()}
    for scope, expected in SCOPE_CASES:
        hits = store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,), **scope), 10)
        assert "".join(sorted(by_id[h.chunk_id] for h in hits)) == expected, scope


# -- writes and listing ----------------------------------------------------------------------------

def test_writes_are_idempotent_deletes_remove_and_ids_page_through_every_point(client):
    store = QdrantServerStore(client, name("writes"), DIM)
    chunks = [make_chunk(i, ["group:g1"], source="alpha" if i % 3 else "beta") for i in range(SCROLL_PAGE + 40)]
    points, _ = points_for(chunks)
    store.upsert(points)
    store.upsert(points[:100])  # a batch applied twice changes nothing
    assert store.ids() == {c.id for c in chunks}
    assert store.ids("beta") == {c.id for c in chunks if c.source == "beta"}
    store.delete([c.id for c in chunks[:10]])
    store.delete([])
    assert len(store.ids()) == len(chunks) - 10
    assert client.count(name("writes")).count == len(chunks) - 10
    assert store.optimize() is False and store.path is None  # the server optimizes and persists by itself
    store.flush()


# -- generations: the alias swap -------------------------------------------------------------------

def test_generations_swap_atomically_behind_the_alias_and_retired_ones_are_dropped(client):
    alias, first, second = name("serving"), name("g1"), name("g2")
    old = QdrantServerStore(client, first, DIM)
    old.upsert([VectorPoint(make_chunk(1, [PUBLIC], source="old"), [1.0] * DIM)])
    point_alias(client, alias, first)
    assert alias_target(client, alias) == first and not is_plain_collection(client, alias)
    serving = QdrantServerStore(client, alias, DIM)  # readers open the alias
    assert serving.ids() == old.ids()
    new = QdrantServerStore(client, second, DIM)
    new.upsert([VectorPoint(make_chunk(2, [PUBLIC], source="new"), [1.0] * DIM)])
    point_alias(client, alias, second)  # one alias update: delete + create
    assert alias_target(client, alias) == second
    assert serving.ids() == new.ids() and serving.ids("old") == set()
    drop_collection(client, alias)  # never through the alias: the serving collection stays
    assert client.collection_exists(second) and alias_target(client, alias) == second
    drop_collection(client, first)
    assert not client.collection_exists(first) and {h.chunk_id for h in serving.search(
        [1.0] * DIM, SearchFilter(principals=(PUBLIC,)), 5)} == new.ids()


def test_a_plain_collection_of_the_layout_before_generations_gives_way_to_the_alias(client):
    legacy, generation = name("legacy"), name("legacy_g1")
    QdrantServerStore(client, legacy, DIM).upsert([VectorPoint(make_chunk(1, [PUBLIC]), [1.0] * DIM)])
    assert is_plain_collection(client, legacy)
    QdrantServerStore(client, generation, DIM)
    point_alias(client, legacy, generation)
    assert alias_target(client, legacy) == generation and not is_plain_collection(client, legacy)
    assert QdrantServerStore(client, legacy, DIM).ids() == set()


def test_generation_stores_reach_the_server_from_settings_and_publish_through_the_alias(tmp_path, client):
    settings = Settings(data_dir=tmp_path, vector_backend="qdrant", qdrant_url=SERVER or ":memory:",
                        qdrant_api_key=API_KEY or "", collection=name("settings"))
    stores = GenerationStores(settings)
    try:
        qdrant = stores.client()
        assert stores.collection_for(7) == name("settings") + "_g7"
        QdrantServerStore(qdrant, stores.collection_for(7), DIM)
        point_alias(qdrant, settings.collection, stores.collection_for(7))
        assert alias_target(qdrant, settings.collection) == stores.collection_for(7)
        assert stores.adopt_legacy_collection() == ""  # an alias is not a collection to adopt
    finally:
        if SERVER:  # the fixture's client cleans the server; local mode dies with this client
            delete_alias(stores.client(), settings.collection)
            drop_collection(stores.client(), stores.collection_for(7))
        stores.close()


# -- snapshots (what docs/operating.md's backup of a server deployment uses; Cairn calls none itself) --

@server_only
def test_a_collection_snapshot_can_be_made_listed_and_deleted(client):
    store = QdrantServerStore(client, name("snap"), DIM)
    store.upsert([VectorPoint(make_chunk(1, [PUBLIC]), [1.0] * DIM)])
    snapshot = client.create_snapshot(name("snap"), wait=True)
    assert snapshot is not None and snapshot.name in {s.name for s in client.list_snapshots(name("snap"))}
    assert client.delete_snapshot(name("snap"), snapshot.name, wait=True)


# -- connecting at start ---------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: nothing listens on it


def test_a_server_that_never_answers_is_given_up_after_the_attempts_with_a_clear_error():
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        connect(url, attempts=3, delay=0.1)
    assert 0.2 <= time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Qdrant server at {url}: 3 attempt(s) over ")
    assert "Connection refused" in message


def test_the_settings_bound_the_tries_of_a_process_opening_the_index(tmp_path):
    settings = Settings(data_dir=tmp_path, vector_backend="qdrant", qdrant_url=f"http://127.0.0.1:{closed_port()}",
                        qdrant_connect_attempts=2, qdrant_connect_delay_seconds=0.05)
    stores = GenerationStores(settings)
    with pytest.raises(StoreError, match="2 attempt"):
        stores.client()


def test_credentials_in_the_url_never_reach_the_error():
    with pytest.raises(StoreError) as caught:
        connect(f"http://cairn:s3cret-word@127.0.0.1:{closed_port()}", attempts=1)
    assert "s3cret-word" not in str(caught.value) and "cannot reach the Qdrant server at http://127.0.0.1:" in str(
        caught.value)


CLIENT_VERSION = importlib.metadata.version("qdrant-client")


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers `GET /` as a Qdrant server does (its version), or 401 when `refuse` is set."""

    refuse = False

    def do_GET(self) -> None:  # the http.server hook's name
        status, body = (401, {"status": {"error": "Unauthorized"}}) if self.refuse else (
            200, {"title": "qdrant - vector search engine", "version": CLIENT_VERSION, "commit": None})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def _serve_later(port: int, after: float, handler: type) -> http.server.HTTPServer:
    time.sleep(after)
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_server_that_starts_late_is_reached_on_a_later_attempt():
    port = closed_port()
    started: list[http.server.HTTPServer] = []
    later = threading.Thread(target=lambda: started.append(_serve_later(port, 0.4, _Answers)))
    later.start()
    try:
        client = connect(f"http://127.0.0.1:{port}", attempts=40, delay=0.1)
        client.close()
    finally:
        later.join()
        started[0].shutdown()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_a_server_that_refuses_the_key_is_an_error_at_once():
    refusing = type("Refusing", (_Answers,), {"refuse": True})
    server = _serve_later(closed_port(), 0, refusing)
    try:
        began = time.monotonic()
        with pytest.raises(StoreError, match=r"refused Cairn \(401 Unauthorized\): check CAIRN_QDRANT_API_KEY"):
            connect(f"http://127.0.0.1:{server.server_port}", api_key="wrong", attempts=30, delay=1.0)
        assert time.monotonic() - began < 1  # no retries: an answer that says no stays no
    finally:
        server.shutdown()
