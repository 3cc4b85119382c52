"""Both vector stores (Qdrant Edge, qdrant-client local mode) under the same permission and scope contract."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from indexer.models import ADMINS, PUBLIC, Access, Chunk, Principal
from indexer.stores import SearchFilter, StoreError, VectorPoint
from indexer.stores.edge import EdgeVectorStore
from indexer.stores.edge_process import ProcessVectorStore
from indexer.stores.qdrant_server import QdrantServerStore

DIM = 16
REPO = Path(__file__).resolve().parents[2]
USERS = [f"u{i}" for i in range(8)]
GROUPS = [f"g{i}" for i in range(6)]
ALL_PRINCIPALS = [f"user:{u}" for u in USERS] + [f"group:{g}" for g in GROUPS] + [PUBLIC]


def make_chunk(n: int, acl: list[str], source: str = "repo", path: str = "src/a.py",
               kind: str = "code", language: str = "python") -> Chunk:
    return Chunk(doc_id=f"{source}:{path}", source=source, path=path, ordinal=n, start_line=1, end_line=2,
                 content=f"chunk {n}", kind=kind, language=language, acl=tuple(Access.of(*acl).acl()))


def random_corpus(rng: random.Random, n: int) -> list[Chunk]:
    out = []
    for i in range(n):
        acl = rng.sample(ALL_PRINCIPALS, rng.choice([0, 1, 1, 2, 3]))
        source = rng.choice(["alpha", "beta", "gamma"])
        path = rng.choice(["src/a.py", "src/lib/b.py", "docs/c.md", "d.go"])
        out.append(make_chunk(i, acl, source=source, path=path))
    return out


def random_principals(rng: random.Random) -> tuple[str, ...]:
    if rng.random() < 0.1:
        return ()
    caller = Principal(user=rng.choice([*USERS, "stranger"]), groups=frozenset(rng.sample(GROUPS, rng.randint(0, 2))),
                       admin=rng.random() < 0.1)
    principals = caller.principals()
    if rng.random() < 0.3:  # a caller without `public`, to test private-only visibility
        principals = [p for p in principals if p != PUBLIC]
    return tuple(principals)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


@pytest.fixture(params=["edge", "edge-process", "qdrant-local"])
def store_factory(request, tmp_path):
    """Opens the same persistent store again on every call (Edge dir, or qdrant-client local path)."""
    opened = []

    def make():
        if request.param == "edge":
            store = EdgeVectorStore(tmp_path / "edge", DIM)
        elif request.param == "edge-process":
            store = ProcessVectorStore(tmp_path / "edge", DIM)
        else:
            store = QdrantServerStore(QdrantClient(path=str(tmp_path / "qdrant")), "chunks", DIM)
        opened.append(store)
        return store

    yield make
    for store in opened:
        close(store)


@pytest.fixture(params=["edge", "edge-process", "qdrant-memory"])
def store(request, tmp_path):
    if request.param == "edge":
        store = EdgeVectorStore(tmp_path / "edge", DIM)
    elif request.param == "edge-process":
        store = ProcessVectorStore(tmp_path / "edge", DIM)
    else:
        store = QdrantServerStore(":memory:", "chunks", DIM)
    yield store
    store.close()


def close(store) -> None:
    store.close()
    if isinstance(store, QdrantServerStore):
        store.client.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_randomized_permissions_are_enforced_inside_the_query(store, seed):
    rng = random.Random(seed)
    chunks = random_corpus(rng, 300)
    vectors = unit(np.random.default_rng(seed).standard_normal((len(chunks), DIM)))
    store.upsert([VectorPoint(c, v.tolist()) for c, v in zip(chunks, vectors, strict=True)])
    for _ in range(25):
        principals = random_principals(rng)
        query = unit(np.random.default_rng(rng.randint(0, 10**6)).standard_normal(DIM))
        flt = SearchFilter(principals=principals)
        allowed = [i for i, c in enumerate(chunks) if set(c.acl) & set(principals)]
        everything = store.search(query.tolist(), flt, limit=400)
        assert {h.chunk_id for h in everything} == {chunks[i].id for i in allowed}
        top = store.search(query.tolist(), flt, limit=10)
        assert all(set(chunks[_index(chunks, h.chunk_id)].acl) & set(principals) for h in top)
        expected = sorted((float(vectors[i] @ query) for i in allowed), reverse=True)[:10]
        assert np.allclose([h.score for h in top], expected, atol=1e-4)  # filtered before top-k


@pytest.mark.parametrize("seed", [3, 4])
def test_restricted_chunks_of_stale_sources_are_left_out_inside_the_query(store, seed):
    rng = random.Random(seed)
    chunks = random_corpus(rng, 300)
    vectors = unit(np.random.default_rng(seed).standard_normal((len(chunks), DIM)))
    store.upsert([VectorPoint(c, v.tolist()) for c, v in zip(chunks, vectors, strict=True)])
    for _ in range(20):
        principals = random_principals(rng)
        stale = tuple(rng.sample(["alpha", "beta", "gamma"], rng.randint(1, 2)))
        query = unit(np.random.default_rng(rng.randint(0, 10**6)).standard_normal(DIM))
        flt = SearchFilter(principals=principals, stale_sources=stale)
        allowed = {c.id for c in chunks if set(c.acl) & set(principals) and (c.source not in stale or PUBLIC in c.acl)}
        assert {h.chunk_id for h in store.search(query.tolist(), flt, limit=400)} == allowed
        assert len(store.search(query.tolist(), flt, limit=5)) == min(5, len(allowed))  # filtered before top-k


def _index(chunks: list[Chunk], chunk_id: str) -> int:
    return next(i for i, c in enumerate(chunks) if c.id == chunk_id)


def test_empty_principals_match_nothing(store):
    store.upsert([VectorPoint(make_chunk(0, ["public"]), [1.0] * DIM)])
    assert store.search([1.0] * DIM, SearchFilter(principals=()), 10) == []
    assert len(store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,)), 10)) == 1


def test_missing_access_is_admins_only(store):
    store.upsert([VectorPoint(make_chunk(0, []), [1.0] * DIM)])
    assert store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC, "user:u1")), 10) == []
    assert len(store.search([1.0] * DIM, SearchFilter(principals=(ADMINS,)), 10)) == 1


SCOPE_CORPUS = {
    "a": {"source": "alpha", "path": "src/cairn/api.py", "kind": "code", "language": "python"},
    "b": {"source": "alpha", "path": "src/cairn/web/ui.ts", "kind": "code", "language": "typescript"},
    "c": {"source": "alpha", "path": "src/cairnish.py", "kind": "code", "language": "python"},
    "d": {"source": "beta", "path": "README.md", "kind": "doc", "language": "markdown"},
    "e": {"source": "beta", "path": "PROJ-12", "kind": "issue", "language": ""},
}
SCOPE_CASES = [
    ({}, "abcde"),
    ({"sources": ("alpha",)}, "abc"),
    ({"sources": ("alpha", "beta")}, "abcde"),
    ({"sources": ("nope",)}, ""),
    ({"path_prefixes": ("src/cairn",)}, "ab"),
    ({"path_prefixes": ("src/cairn/",)}, "ab"),
    ({"path_prefixes": ("/src/cairn/web",)}, "b"),
    ({"path_prefixes": ("src/cairn/api.py",)}, "a"),
    ({"path_prefixes": ("src/cairn", "README.md")}, "abd"),
    ({"languages": ("python",)}, "ac"),
    ({"kinds": ("doc", "issue")}, "de"),
    ({"sources": ("alpha",), "languages": ("python",), "path_prefixes": ("src",)}, "ac"),
    ({"sources": ("beta",), "kinds": ("code",)}, ""),
]


def scope_chunks() -> dict[str, Chunk]:
    return {name: make_chunk(i, ["public"], **fields) for i, (name, fields) in enumerate(SCOPE_CORPUS.items())}


@pytest.fixture(scope="module", params=["edge", "qdrant-memory"])
def scoped_store(request, tmp_path_factory):
    """One store per backend holding SCOPE_CORPUS, shared by the scope table (opening Edge costs ~0.3 s)."""
    if request.param == "edge":
        store = EdgeVectorStore(tmp_path_factory.mktemp("scope") / "edge", DIM)
    else:
        store = QdrantServerStore(":memory:", "chunks", DIM)
    store.upsert([VectorPoint(c, [1.0] + [0.0] * (DIM - 1)) for c in scope_chunks().values()])
    yield store
    store.close()


@pytest.mark.parametrize("scope,expected", SCOPE_CASES)
def test_scope_filters(scoped_store, scope, expected):
    chunks = scope_chunks()
    found = scoped_store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,), **scope), 10)
    assert {h.chunk_id for h in found} == {chunks[n].id for n in expected}


def test_upsert_is_idempotent_and_delete_removes(store):
    chunks = [make_chunk(i, ["public"], source="alpha" if i % 2 else "beta") for i in range(20)]
    points = [VectorPoint(c, np.ones(DIM).tolist()) for c in chunks]
    store.upsert(points)
    store.upsert(points)
    assert store.ids() == {c.id for c in chunks}
    assert store.ids("alpha") == {c.id for c in chunks[1::2]}
    assert len(store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,)), 100)) == 20
    store.delete([c.id for c in chunks[:5]])
    store.delete([])
    remaining = {c.id for c in chunks[5:]}
    assert store.ids() == remaining
    assert {h.chunk_id for h in store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,)), 100)} == remaining


def test_data_persists_across_reopen(store_factory):
    first = store_factory()
    chunks = [make_chunk(i, ["group:g1"]) for i in range(10)]
    first.upsert([VectorPoint(c, np.ones(DIM).tolist()) for c in chunks])
    close(first)
    second = store_factory()
    assert second.ids("repo") == {c.id for c in chunks}
    assert len(second.search([1.0] * DIM, SearchFilter(principals=("group:g1",)), 50)) == 10


def test_ids_pages_through_many_points(store):
    chunks = [make_chunk(i, ["public"]) for i in range(2500)]
    vectors = unit(np.random.default_rng(0).standard_normal((len(chunks), DIM)))
    store.upsert([VectorPoint(c, v.tolist()) for c, v in zip(chunks, vectors, strict=True)])
    assert store.ids() == {c.id for c in chunks}


def test_wrong_dimension_is_a_store_error(store):
    with pytest.raises(StoreError):
        store.upsert([VectorPoint(make_chunk(0, ["public"]), [1.0] * (DIM + 1))])
    with pytest.raises(StoreError):  # one bad vector among good ones
        store.upsert([VectorPoint(make_chunk(1, ["public"]), [1.0] * DIM),
                      VectorPoint(make_chunk(2, ["public"]), [1.0] * (DIM - 1))])


def test_edge_optimize_keeps_results_and_filters(tmp_path):
    store = EdgeVectorStore(tmp_path / "edge", DIM)
    rng = random.Random(5)
    chunks = random_corpus(rng, 300)
    vectors = unit(np.random.default_rng(5).standard_normal((len(chunks), DIM)))
    store.upsert([VectorPoint(c, v.tolist()) for c, v in zip(chunks, vectors, strict=True)])
    flt = SearchFilter(principals=("user:u1", "group:g2"))
    before = store.search(vectors[0].tolist(), flt, 300)
    store.optimize()
    after = store.search(vectors[0].tolist(), flt, 300)
    assert {h.chunk_id for h in after} == {h.chunk_id for h in before}
    store.close()


def test_edge_compact_layout_quantizes_and_an_older_shard_reopens_with_it(tmp_path):
    chunks = random_corpus(random.Random(9), 200)
    vectors = unit(np.random.default_rng(9).standard_normal((len(chunks), DIM)))
    plain = EdgeVectorStore(tmp_path / "edge", DIM, compact=False)
    plain.upsert([VectorPoint(c, v) for c, v in zip(chunks, vectors, strict=True)])  # numpy rows are accepted too
    flt = SearchFilter(principals=tuple(ALL_PRINCIPALS))
    exact = [h.chunk_id for h in plain.search(vectors[3].tolist(), flt, 10)]
    plain.close()
    compact = EdgeVectorStore(tmp_path / "edge", DIM, oversampling=2.0)
    config = (tmp_path / "edge" / "edge_config.json").read_text()
    assert '"int8"' in config and '"cold"' in config
    compact.optimize()
    found = [h.chunk_id for h in compact.search(vectors[3].tolist(), flt, 10)]
    assert found[0] == chunks[3].id and len(set(found) & set(exact)) >= 9  # rescored with the originals
    compact.close()


def test_edge_oversampling_zero_turns_rescoring_off(tmp_path):
    """oversampling=0 searches without reading the float originals. Below Edge's indexing threshold
    (these 200 points) segments are searched unquantized either way, so the answers are equal."""
    chunks = random_corpus(random.Random(4), 200)
    vectors = unit(np.random.default_rng(4).standard_normal((len(chunks), DIM)))
    flt = SearchFilter(principals=tuple(ALL_PRINCIPALS))
    visible = next(i for i, c in enumerate(chunks) if set(c.acl) & set(ALL_PRINCIPALS))
    rescored = EdgeVectorStore(tmp_path / "edge", DIM, oversampling=2.0)
    assert rescored._params.quantization.rescore is True
    rescored.upsert([VectorPoint(c, v) for c, v in zip(chunks, vectors, strict=True)])
    rescored.optimize()
    with_originals = rescored.search(vectors[visible].tolist(), flt, 10)
    rescored.close()
    int8 = EdgeVectorStore(tmp_path / "edge", DIM, oversampling=0)
    assert int8._params.quantization.rescore is False
    found = int8.search(vectors[visible].tolist(), flt, 10)
    assert found[0].chunk_id == chunks[visible].id and found == with_originals
    int8.close()


def test_edge_refuses_a_second_opener(tmp_path):
    store = EdgeVectorStore(tmp_path / "edge", DIM)
    script = (
        "import sys; from pathlib import Path\n"
        "from indexer.stores import StoreError\nfrom indexer.stores.edge import EdgeVectorStore\n"
        f"try:\n    EdgeVectorStore(Path({str(tmp_path / 'edge')!r}), {DIM})\n"
        "except StoreError as exc:\n    print(exc); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "in use by another process" in done.stdout
    store.close()
    reopened = EdgeVectorStore(tmp_path / "edge", DIM)  # the lock is released on close
    reopened.close()


def test_edge_closed_store_raises_and_reopen_checks_dimension(tmp_path):
    store = EdgeVectorStore(tmp_path / "edge", DIM)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.search([1.0] * DIM, SearchFilter(principals=(PUBLIC,)), 5)
    with pytest.raises(StoreError, match=r"incompatible|size"):
        EdgeVectorStore(tmp_path / "edge", DIM * 2)


def test_qdrant_collection_dimension_checked():
    client = QdrantClient(":memory:")
    QdrantServerStore(client, "chunks", DIM)
    with pytest.raises(StoreError, match="expected"):
        QdrantServerStore(client, "chunks", DIM * 2)
    client.close()
