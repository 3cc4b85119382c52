"""Index generations: an index built by an older INDEX_VERSION (or another model or chunking) keeps
serving while its successor is built in the background, then the successor is swapped in whole."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

import indexer.services as services_module
from indexer.catalog.schema import chunks, generation_chunks, generation_documents
from indexer.generations.state import generation_dir, read_generations
from indexer.models import INDEX_VERSION, Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

OPERATOR = Principal("op", admin=True)
FILES = {
    f"pkg/module_{i}.py": f'"""Module {i}."""\n\n\ndef handler_{i}(request):\n    """Handle request {i}."""\n'
                          f'    value = request.get("field_{i}")\n    return value * {i}\n\n\n'
                          f'class Service{i}:\n    """Service number {i}."""\n\n    def run(self):\n'
                          f'        return handler_{i}(self)\n'
    for i in range(8)
}
FILES["docs/guide.md"] = "# Guide\n\n## Retry policy\n\nRetries use exponential backoff with jitter.\n"
QUERIES = ("handler request field", "Service run", "exponential backoff jitter", "module 3")


def index_repo(svc: IndexServices, repo, name: str = "repo") -> None:
    svc.catalog.upsert_source(name, "git", {"location": str(repo.root), "ref": ""}, ["public"])
    run_sync_job(svc, name)


def answers(svc: IndexServices) -> dict[str, list[str]]:
    """Chunk ids each query returns, in order, from a searcher built on the services now."""
    searcher = build_searcher(svc)
    try:
        return {q: [h.chunk_id for h in searcher.search(q, OPERATOR, limit=10).hits] for q in QUERIES}
    finally:
        searcher.close()


def catalog_chunk_ids(svc: IndexServices) -> set[str]:
    with svc.catalog.engine.connect() as conn:
        return set(conn.execute(select(chunks.c.id)).scalars())


def assert_stores_agree(svc: IndexServices) -> set[str]:
    ids = catalog_chunk_ids(svc)
    assert ids and svc.fulltext.ids() == ids and svc.vectors.ids() == ids
    return ids


def build_old_index(settings: Settings, embedder, make_repo, monkeypatch):
    """Index FILES into `settings`' data dir with the previous INDEX_VERSION; returns (repo, its
    answers, chunk ids)."""
    repo = make_repo("repo")
    for path, text in FILES.items():
        repo.write(path, text)
    repo.commit("corpus")
    with monkeypatch.context() as patch:
        patch.setattr(services_module, "INDEX_VERSION", INDEX_VERSION - 1)
        svc = IndexServices.open(settings, embedder=embedder)
        index_repo(svc, repo)
        before = answers(svc)
        ids = assert_stores_agree(svc)
        svc.close()
    assert all(before.values())
    return repo, before, ids


@pytest.fixture
def old_index(settings: Settings, embedder, make_repo, monkeypatch):
    """A data directory indexed by the previous INDEX_VERSION; returns (repo, its answers, chunk ids)."""
    return build_old_index(settings, embedder, make_repo, monkeypatch)


class Gate:
    """Blocks the build after its first batch until released (to look at the index mid-build)."""

    def __init__(self) -> None:
        self.reached, self.release = threading.Event(), threading.Event()

    def __call__(self, progress) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(60), "the test never released the build"


def start_blocked(svc: IndexServices) -> Gate:
    gate = Gate()
    svc.generations.batch_docs = 2
    svc.generations.after_batch = gate
    assert svc.generations.start()
    assert gate.reached.wait(60), "the build never got through its first batch"
    return gate


def test_old_generation_serves_identically_during_rebuild_then_new_one_takes_over(settings, embedder, old_index):
    _, before, old_ids = old_index
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        active, building = read_generations(svc.catalog.engine)
        assert (active.id, active.index_version) == (1, INDEX_VERSION - 1)
        assert (building.id, building.index_version) == (2, INDEX_VERSION)
        assert not (Path(settings.data_dir) / "vectors").exists()  # moved into generation 1, not rebuilt
        gate = start_blocked(svc)
        assert svc.generations.progress.documents_done < svc.generations.progress.documents_total
        assert answers(svc) == before
        assert generation_dir(settings.data_dir, 2).is_dir()
        gate.release.set()
        assert svc.generations.wait(120)

        active, building = read_generations(svc.catalog.engine)
        assert (active.id, active.index_version, building) == (2, INDEX_VERSION, None)
        assert svc.catalog.get_meta("index_version") == str(INDEX_VERSION)
        assert answers(svc) == before  # the same chunker and model: the same chunks, found the same way
        assert assert_stores_agree(svc) == old_ids
        assert not generation_dir(settings.data_dir, 1).exists()
        job = svc.catalog.list_jobs(kind="rebuild")[0]
        assert (job.state, job.done, job.total) == ("succeeded", len(FILES), len(FILES))
    finally:
        svc.close()


def test_new_chunking_keeps_catalog_rows_matching_the_serving_stores(settings, embedder, old_index):
    _, before, old_ids = old_index
    finer = settings.model_copy(update={"max_chunk_lines": 5, "min_chunk_lines": 1})
    svc = IndexServices.open(finer, embedder=embedder)
    try:
        gate = start_blocked(svc)
        assert catalog_chunk_ids(svc) == old_ids == svc.fulltext.ids()  # rows still describe generation 1
        assert answers(svc) == before
        gate.release.set()
        assert svc.generations.wait(120)
        new_ids = assert_stores_agree(svc)
        assert len(new_ids) > len(old_ids)  # smaller chunks: more of them, other ids
        with svc.catalog.engine.connect() as conn:
            assert not conn.execute(select(generation_documents)).first()  # build rows folded into chunks
        assert all(answers(svc).values())
    finally:
        svc.close()


def test_a_sync_during_the_rebuild_is_not_lost(settings, embedder, old_index):
    repo, _, _ = old_index
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        gate = start_blocked(svc)
        repo.write("pkg/late_arrival.py", "def reconcile_ledger_entries(ledger):\n    return sorted(ledger)\n")
        repo.write("pkg/module_1.py", "def handler_1(request):\n    return 'rewritten quokka handler'\n")
        repo.remove("pkg/module_2.py")
        repo.commit("changes during the rebuild")
        run_sync_job(svc, "repo")  # writes the active generation while the build is paused
        assert _paths(svc, "reconcile ledger entries")[:1] == ["pkg/late_arrival.py"]
        gate.release.set()
        assert svc.generations.wait(120)
        assert read_generations(svc.catalog.engine)[0].id == 2
        assert _paths(svc, "reconcile ledger entries")[:1] == ["pkg/late_arrival.py"]
        assert _paths(svc, "quokka")[:1] == ["pkg/module_1.py"]
        assert "pkg/module_2.py" not in _paths(svc, "handler request field Service2")
        assert_stores_agree(svc)
    finally:
        svc.close()


def _paths(svc: IndexServices, query: str) -> list[str]:
    searcher = build_searcher(svc)
    try:
        return [h.path for h in searcher.search(query, OPERATOR, limit=10).hits]
    finally:
        searcher.close()


def test_a_build_stopped_midway_resumes_on_reopen_and_the_active_generation_is_untouched(
        settings, embedder, old_index):
    _, before, old_ids = old_index
    svc = IndexServices.open(settings, embedder=embedder)
    gate = start_blocked(svc)
    closing = threading.Thread(target=svc.close)
    closing.start()
    gate.release.set()
    closing.join(60)
    assert not closing.is_alive()

    svc = IndexServices.open(settings, embedder=embedder)
    try:
        active, building = read_generations(svc.catalog.engine)
        assert (active.id, building.id) == (1, 2)  # the same build, resumed
        assert svc.catalog.list_jobs(kind="rebuild")[0].state == "interrupted"
        with svc.catalog.engine.connect() as conn:
            built = conn.execute(select(generation_documents.c.doc_id)).scalars().all()
            # A build killed between writing its stores and recording its rows, then the document
            # deleted before the build resumed: the new stores hold chunks nothing records.
            for table in (generation_documents, generation_chunks):
                conn.execute(table.delete().where(table.c.doc_id == built[0]))
            conn.commit()
        assert 0 < len(built) < len(FILES)
        assert answers(svc) == before and assert_stores_agree(svc) == old_ids
        gone = set(svc.catalog.chunk_ids_for([built[0]])[built[0]])
        svc.pipeline.delete([built[0]])
        assert svc.generations.run()
        assert read_generations(svc.catalog.engine)[0].id == 2
        assert assert_stores_agree(svc) == old_ids - gone
    finally:
        svc.close()


def test_an_index_already_current_builds_nothing(settings, embedder, make_repo):
    repo = make_repo("repo")
    repo.write("a.py", "def alpha():\n    return 1\n")
    repo.commit()
    svc = IndexServices.open(settings, embedder=embedder)
    index_repo(svc, repo)
    svc.close()
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.generations.building is None and not svc.generations.start()
        assert read_generations(svc.catalog.engine)[0].id == 1
        assert_stores_agree(svc)
    finally:
        svc.close()


def test_a_data_dir_in_the_layout_before_generations_is_moved_not_rebuilt(settings, embedder, make_repo):
    repo = make_repo("repo")
    repo.write("a.py", "def alpha_beta_gamma():\n    return 1\n")
    repo.commit()
    svc = IndexServices.open(settings, embedder=embedder)
    index_repo(svc, repo)
    ids = assert_stores_agree(svc)
    svc.close()
    data = Path(settings.data_dir)
    for name in ("vectors", "fulltext"):  # back to data_dir/{vectors,fulltext}, meta as it was then
        (data / "generations" / "1" / name).rename(data / name)
    from indexer.generations.state import ACTIVE_KEY, write_meta

    write_meta(svc.catalog.engine, {ACTIVE_KEY: None})
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.generations.building is None
        assert not (data / "vectors").exists() and (data / "generations" / "1" / "vectors").is_dir()
        assert assert_stores_agree(svc) == ids
        assert _paths(svc, "alpha beta gamma") == ["a.py"]
    finally:
        svc.close()


@pytest.fixture
def qdrant_server(monkeypatch):
    """One in-process Qdrant (local mode) that outlives each IndexServices, as a server would."""
    from qdrant_client import QdrantClient

    from indexer.stores import qdrant_server as vector_qdrant

    server = QdrantClient(location=":memory:")
    monkeypatch.setattr(vector_qdrant, "connect", lambda url, *args, **kwargs: server)
    monkeypatch.setattr(server, "close", lambda **kw: None)
    return server


def _aliases(server) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in server.get_aliases().aliases}


def test_qdrant_backend_builds_a_new_collection_and_swaps_the_alias(tmp_path, embedder, make_repo,
                                                                     monkeypatch, qdrant_server):
    settings = Settings(data_dir=tmp_path / "data", vector_backend="qdrant", qdrant_url=":memory:")
    _repo, before, ids = build_old_index(settings, embedder, make_repo, monkeypatch)
    assert _aliases(qdrant_server) == {"cairn_chunks": "cairn_chunks_g1"}

    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.generations.building.collection == "cairn_chunks_g2"
        assert svc.generations.run()
        assert _aliases(qdrant_server) == {"cairn_chunks": "cairn_chunks_g2"}
        names = {c.name for c in qdrant_server.get_collections().collections}
        assert names == {"cairn_chunks_g2"}
        assert assert_stores_agree(svc) == ids
        assert answers(svc) == before
        assert {str(p.id) for p in qdrant_server.scroll("cairn_chunks", limit=1000)[0]} == ids  # through the alias
    finally:
        svc.close()


def test_qdrant_collection_of_the_layout_before_generations_is_replaced_by_the_alias(
        tmp_path, embedder, make_repo, qdrant_server):
    from indexer.generations.state import ACTIVE_KEY, write_meta

    settings = Settings(data_dir=tmp_path / "data", vector_backend="qdrant", qdrant_url=":memory:",
                        collection="legacy")
    repo = make_repo("repo")
    repo.write("a.py", "def alpha_beta_gamma():\n    return 1\n")
    repo.commit()
    svc = IndexServices.open(settings, embedder=embedder)
    index_repo(svc, repo)
    ids = assert_stores_agree(svc)
    svc.close()
    # What the layout before generations left: a plain collection named after the setting.
    points = qdrant_server.scroll("legacy_g1", limit=100, with_vectors=True, with_payload=True)[0]
    qdrant_server.delete_collection("legacy_g1")
    from qdrant_client import models

    qdrant_server.create_collection("legacy", vectors_config=models.VectorParams(
        size=embedder.dim, distance=models.Distance.COSINE))
    qdrant_server.upsert("legacy", points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)
                                           for p in points])
    write_meta(svc.catalog.engine, {ACTIVE_KEY: None, "index_version": str(INDEX_VERSION - 1)})

    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.generations.active.collection == "legacy" and svc.vectors.ids() == ids
        assert svc.generations.run()
        assert _aliases(qdrant_server) == {"legacy": "legacy_g2"}
        assert assert_stores_agree(svc) == ids
        assert _paths(svc, "alpha beta gamma") == ["a.py"]
    finally:
        svc.close()


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, embedder) -> Path:
    """The same weights under another fingerprint (an ONNX metadata entry differs): another model key."""
    import shutil

    import onnx

    source = embedder.location.path
    target = tmp_path_factory.mktemp("models") / "other-minilm"
    target.mkdir()
    for item in source.iterdir():
        if item.is_file() and item.name not in ("model.onnx", "cairn-export.json"):
            shutil.copyfile(item, target / item.name)
    model = onnx.load(str(source / "model.onnx"))
    onnx.helper.set_model_props(model, {"cairn-test": "a second model"})
    onnx.save(model, str(target / "model.onnx"))
    return target


def _index_with_model(settings, model_dir, repo):
    from indexer.services import build_embedder

    first = build_embedder(settings, str(model_dir))
    svc = IndexServices.open(settings.model_copy(update={"embedding_model": str(model_dir)}), embedder=first)
    index_repo(svc, repo)
    before, ids = answers(svc), assert_stores_agree(svc)
    svc.close()
    return first.model_name, before, ids


def test_model_change_serves_queries_with_the_old_model_until_the_swap(settings, embedder, make_repo,
                                                                        other_model_dir):
    repo = make_repo("repo")
    for path, text in FILES.items():
        repo.write(path, text)
    repo.commit("corpus")
    old_model, before, ids = _index_with_model(settings, other_model_dir, repo)
    assert old_model != embedder.model_name
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.embedder.model_name == old_model  # query vectors match the stored ones
        assert svc.generations.building.model == embedder.model_name
        assert answers(svc) == before
        assert svc.generations.run()
        assert svc.embedder.model_name == embedder.model_name
        assert svc.generations.progress.chunks_embedded == len(ids)  # nothing cached for the new model
        assert assert_stores_agree(svc) == ids and answers(svc) == before
        assert read_generations(svc.catalog.engine)[0].model == embedder.model_name
    finally:
        svc.close()


def test_when_the_old_model_is_gone_keyword_search_serves_until_the_swap(settings, embedder, make_repo,
                                                                         other_model_dir, tmp_path):
    import shutil

    gone = tmp_path / "gone-model"
    shutil.copytree(other_model_dir, gone)
    repo = make_repo("repo")
    repo.write("pkg/ledger.py", "def reconcile_ledger_entries(ledger):\n    return sorted(ledger)\n")
    repo.commit()
    _, _, ids = _index_with_model(settings, gone, repo)
    shutil.rmtree(gone)
    svc = IndexServices.open(settings, embedder=embedder)
    try:
        assert svc.vectors.ids() == set()  # no dense search without the model that made the vectors
        assert _paths(svc, "reconcile ledger entries") == ["pkg/ledger.py"]  # keyword search still answers
        assert svc.generations.run()
        assert assert_stores_agree(svc) == ids
        assert _paths(svc, "reconcile ledger entries") == ["pkg/ledger.py"]
    finally:
        svc.close()


def test_cli_model_switch_records_the_model_the_next_open_builds_with(settings, embedder, make_repo,
                                                                      other_model_dir, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    repo = make_repo("repo")
    repo.write("a.py", "def alpha_beta_gamma():\n    return 1\n")
    repo.commit()
    svc = IndexServices.open(settings, embedder=embedder)
    index_repo(svc, repo)
    svc.close()
    monkeypatch.setenv("CAIRN_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    switched = runner.invoke(app, ["model", "switch", str(other_model_dir)])
    assert switched.exit_code == 0, switched.output
    assert runner.invoke(app, ["model", "switch", str(other_model_dir / "missing")]).exit_code == 1

    svc = IndexServices.open(settings)  # no embedder given: the requested model is loaded
    try:
        assert svc.generations.building.model_spec == str(other_model_dir)
        assert svc.generations.building.model != embedder.model_name
        status = runner.invoke(app, ["model", "status", "--json"])
        assert status.exit_code == 0, status.output
        import json

        data = json.loads(status.output)
        assert data["active"]["id"] == 1 and data["building"]["id"] == 2
        assert svc.generations.run()
        assert _paths(svc, "alpha beta gamma") == ["a.py"]
        assert "active: generation 2" in runner.invoke(app, ["model", "status"]).output
    finally:
        svc.close()


def test_while_another_process_builds_an_open_neither_recovers_nor_builds(tmp_path, embedder, make_repo,
                                                                         monkeypatch, qdrant_server):
    from indexer.services import build_lock

    settings = Settings(data_dir=tmp_path / "data", vector_backend="qdrant", qdrant_url=":memory:")
    build_old_index(settings, embedder, make_repo, monkeypatch)
    svc = IndexServices.open(settings, embedder=embedder)
    gate = start_blocked(svc)  # this "process" builds, holding the build lock
    try:
        job = svc.catalog.list_jobs(kind="rebuild")[0]
        other = IndexServices.open(settings, embedder=embedder)  # e.g. a worker on the same catalog
        assert svc.catalog.get_job(job.id).state == "running"  # not taken for a crashed build
        assert other.generations.building.id == 2 and generation_dir(settings.data_dir, 2).is_dir()
        assert other.generations.run() is False  # the lock is held: it only serves
        assert not build_lock(svc.catalog, settings).acquire()
        other.close()
    finally:
        gate.release.set()
        assert svc.generations.wait(120)
        svc.close()
    assert read_generations(svc.catalog.engine)[0].id == 2


def test_services_of_another_process_notice_the_swap(tmp_path, embedder, make_repo, monkeypatch, qdrant_server):
    settings = Settings(data_dir=tmp_path / "data", vector_backend="qdrant", qdrant_url=":memory:")
    repo = make_repo("repo")
    repo.write("a.py", "def alpha_beta_gamma():\n    return 1\n")
    repo.commit()
    with monkeypatch.context() as patch:
        patch.setattr(services_module, "INDEX_VERSION", INDEX_VERSION - 1)
        svc = IndexServices.open(settings, embedder=embedder)
        index_repo(svc, repo)
        svc.close()
    builder, worker = (IndexServices.open(settings, embedder=embedder) for _ in range(2))
    try:
        assert worker.is_current()
        assert builder.generations.run()
        assert builder.is_current() and not worker.is_current()
    finally:
        builder.close()
        worker.close()
