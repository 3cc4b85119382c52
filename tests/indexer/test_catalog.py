"""The catalog against SQLite and a real PostgreSQL database created for this module."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from indexer.catalog.catalog import Catalog, CatalogError, ChunkDiff
from indexer.catalog.db import make_engine
from indexer.catalog.schema import chunks, documents, failures, jobs, meta, skipped, sources
from indexer.models import Access, Chunk, Document, Skipped, SkipReason, SyncFailure

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OWN_TABLES = (chunks, documents, skipped, failures, jobs, meta, sources)


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """A uniquely named database, dropped when the module is done."""
    name = f"cairn_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no PostgreSQL here"
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    Catalog(engine).create_all()
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
        cat = Catalog(engine)
        cat.create_all()
        yield cat
        engine.dispose()
        return
    engine = request.getfixturevalue("pg_engine")
    with engine.begin() as conn:
        for table in OWN_TABLES:
            conn.execute(table.delete())
    yield Catalog(engine)


def make_doc(path: str = "src/app.py", version: str = "v1", source: str = "repo", content: str = "") -> Document:
    body = content or f"def main():\n    return '{path} {version}'\n"
    return Document(id=f"{source}:{path}", source=source, path=path, content=body, version=version,
                    access=Access.of("group:dev"), language="python", title=path, url=f"https://x/{path}")


def make_chunks(doc: Document, texts: list[str]) -> list[Chunk]:
    return [Chunk(doc_id=doc.id, source=doc.source, path=doc.path, ordinal=i, start_line=i * 10 + 1,
                  end_line=i * 10 + 9, content=t, header=f"# {doc.path}", symbol=f"f{i}", language="python",
                  acl=tuple(doc.access.acl())) for i, t in enumerate(texts)]


def test_replace_document_is_idempotent_and_diffs_chunks(catalog: Catalog) -> None:
    doc = make_doc()
    first = make_chunks(doc, ["a = 1", "b = 2", "c = 3"])
    diff = catalog.replace_document(doc, first)
    assert sorted(diff.added) == sorted(c.id for c in first) and diff.removed == ()
    again = catalog.replace_document(doc, first)
    assert again.added == () and again.removed == ()
    assert catalog.counts("repo") == {"documents": 1, "chunks": 3, "skipped": 0, "failures": 0}

    doc2 = make_doc(version="v2")
    second = make_chunks(doc2, ["a = 1", "c = 3", "d = 4"])
    diff = catalog.replace_document(doc2, second)
    assert diff.added == (second[2].id,) and diff.removed == (first[1].id,)
    assert catalog.chunk_ids_for([doc.id]) == {doc.id: [c.id for c in second]}
    assert catalog.get_chunks([second[1].id])[second[1].id].ordinal == 1  # moved chunk's position updated
    assert catalog.document_versions("repo") == {doc.id: "v2"}
    assert catalog.access_digests("repo") == {doc.id: doc.access.digest()}


def test_replace_documents_applies_a_batch_in_one_go(catalog: Catalog) -> None:
    a, b = make_doc("a.py"), make_doc("b.py")
    old_a = make_chunks(a, ["1", "2"])
    catalog.replace_document(a, old_a)
    a2 = make_doc("a.py", version="v2")
    new_a, new_b = make_chunks(a2, ["2", "3"]), make_chunks(b, ["x"])
    diffs = catalog.replace_documents([(a2, new_a, None), (b, new_b, "served b")], state="lexical")
    assert diffs[a.id].removed == (old_a[0].id,) and diffs[a.id].added == (new_a[1].id,)
    assert diffs[b.id].added == (new_b[0].id,) and diffs[b.id].removed == ()
    assert catalog.document_versions("repo") == {a.id: "v2", b.id: "v1"}
    assert catalog.get_document(b.id).content == "served b"
    assert catalog.pending_chunks("repo", 10)[0] == [a.id, b.id]
    assert catalog.replace_documents([(a2, new_a, None), (b, new_b, "served b")], state="lexical") == {
        a.id: ChunkDiff(), b.id: ChunkDiff()}


def test_get_document_serves_the_full_text(catalog: Catalog) -> None:
    body = "π = 3.14159\n" * 5000
    doc = make_doc(content=body)
    catalog.replace_document(doc, [], content=body.replace("3", "*"))
    stored = catalog.get_document(doc.id)
    assert stored is not None and stored.content == body.replace("3", "*")
    assert (stored.version, stored.url, stored.n_chunks, stored.state) == ("v1", doc.url, 0, "indexed")
    assert stored.indexed_at.tzinfo is not None
    assert catalog.get_document("repo:missing") is None


def test_delete_documents_returns_removed_chunk_ids(catalog: Catalog) -> None:
    a, b = make_doc("a.py"), make_doc("b.py")
    ca, cb = make_chunks(a, ["x", "y"]), make_chunks(b, ["z"])
    catalog.replace_document(a, ca)
    catalog.replace_document(b, cb)
    assert catalog.sources_of([a.id, b.id, "repo:nope"]) == {a.id: "repo", b.id: "repo"}
    removed = catalog.delete_documents([a.id, "repo:nope"])
    assert sorted(removed) == sorted(c.id for c in ca)
    assert catalog.document_versions("repo") == {b.id: "v1"}
    assert catalog.get_chunks(c.id for c in ca) == {}
    assert catalog.delete_documents([a.id]) == []


def test_get_chunks_batches_over_many_ids(catalog: Catalog) -> None:
    doc = make_doc()
    many = make_chunks(doc, [f"line {i}" for i in range(1203)])
    catalog.replace_document(doc, many)
    wanted = [c.id for c in many] + [str(uuid.uuid4()) for _ in range(50)]
    got = catalog.get_chunks(wanted)
    assert len(got) == 1203
    record = got[many[700].id]
    assert (record.content, record.title, record.url, record.symbol) == ("line 700", doc.title, doc.url, "f700")
    assert record.to_chunk() == many[700] and record.to_chunk().id == many[700].id
    assert len(catalog.chunk_ids_for([doc.id])[doc.id]) == 1203
    assert len(catalog.delete_documents([doc.id])) == 1203


def test_pending_chunks_and_mark_indexed(catalog: Catalog) -> None:
    docs = [make_doc(f"f{i}.py") for i in range(3)]
    for doc in docs:
        catalog.replace_document(doc, make_chunks(doc, ["one", "two"]), state="lexical")
    doc_ids, pending = catalog.pending_chunks("repo", limit=3)
    assert doc_ids == [docs[0].id] and [c.content for c in pending] == ["one", "two"]
    catalog.mark_indexed(doc_ids)
    doc_ids, pending = catalog.pending_chunks("repo", limit=10)
    assert doc_ids == [docs[1].id, docs[2].id] and len(pending) == 4
    catalog.mark_indexed(doc_ids)
    assert catalog.pending_chunks("repo", limit=10) == ([], [])
    with pytest.raises(CatalogError):
        catalog.replace_document(docs[0], [], state="bogus")


def test_sources_checkpoints_and_state(catalog: Catalog) -> None:
    catalog.upsert_source("repo", "git", {"location": "/srv/repo"}, Access.of("public"))
    catalog.set_checkpoint("repo", {"commit": "abc", "ref": "main"})
    catalog.upsert_source("repo", "git", {"location": "/srv/repo", "ref": "dev"}, ["group:dev"])
    record = catalog.get_source("repo")
    assert record is not None and record.config["ref"] == "dev" and Access.of(*record.access) == Access.of("group:dev")
    assert catalog.get_checkpoint("repo") == {"commit": "abc", "ref": "main"}
    catalog.set_source_state("repo", "syncing")
    catalog.set_source_state("repo", "error", "clone failed")
    record = catalog.get_source("repo")
    assert (record.state, record.last_error, record.last_success_at) == ("error", "clone failed", None)
    assert record.last_sync_at is not None
    catalog.set_source_state("repo", "idle")
    assert catalog.get_source("repo").last_success_at is not None
    assert [s.name for s in catalog.list_sources()] == ["repo"]
    assert catalog.get_checkpoint("nope") is None
    with pytest.raises(CatalogError):
        catalog.set_checkpoint("nope", {})


def test_delete_source_and_reset_index(catalog: Catalog) -> None:
    catalog.upsert_source("repo", "git", {}, Access())
    catalog.upsert_source("other", "git", {}, Access())
    doc, other = make_doc(), make_doc(source="other")
    catalog.replace_document(doc, make_chunks(doc, ["x"]))
    catalog.replace_document(other, make_chunks(other, ["y"]))
    catalog.set_checkpoint("other", {"commit": "1"})
    assert catalog.chunk_ids_of_source("repo") == [make_chunks(doc, ["x"])[0].id]
    removed = catalog.delete_source("repo")
    assert removed["chunks"] == 1 and removed["documents"] == 1 and removed["source"] == 1
    assert catalog.delete_source("repo")["source"] == 0
    assert catalog.get_source("repo") is None and catalog.counts("repo")["documents"] == 0
    catalog.reset_index()
    assert catalog.counts() == {"documents": 0, "chunks": 0, "skipped": 0, "failures": 0}
    assert catalog.get_source("other") is not None and catalog.get_checkpoint("other") is None


def test_skipped_records_refresh_and_clear(catalog: Catalog) -> None:
    catalog.record_skipped(Skipped("repo", "big.bin", SkipReason.BINARY, "png"),
                           Skipped("repo", "vendor/x.js", SkipReason.VENDORED))
    catalog.record_skipped(Skipped("repo", "big.bin", SkipReason.TOO_LARGE, "2 MB"))
    assert catalog.list_skipped("repo") == [Skipped("repo", "big.bin", SkipReason.TOO_LARGE, "2 MB"),
                                            Skipped("repo", "vendor/x.js", SkipReason.VENDORED, "")]
    assert catalog.clear_skipped("repo", before=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert catalog.clear_skipped("repo", paths=["vendor/x.js"]) == 1
    assert catalog.clear_skipped("repo", before=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert catalog.list_skipped("repo") == []


def test_failures_count_attempts_and_clear(catalog: Catalog) -> None:
    catalog.record_failure(SyncFailure("repo", "a.py", "boom"))
    catalog.record_failure(SyncFailure("repo", "a.py", "boom again"))
    catalog.record_failure(SyncFailure("repo", "b.py", "nope"))
    listed = catalog.list_failures("repo")
    assert [(f.item, f.attempts, f.error) for f in listed] == [("a.py", 2, "boom again"), ("b.py", 1, "nope")]
    catalog.clear_failure("repo", "a.py")
    assert [f.item for f in catalog.list_failures("repo")] == ["b.py"]


def test_jobs_lifecycle(catalog: Catalog) -> None:
    job_id = catalog.create_job(None, "repo", "index", total=10)
    job = catalog.get_job(job_id)
    assert (job.state, job.started_at, job.total, job.counts) == ("queued", None, 10, {})
    catalog.update_job(job_id, state="running")
    started = catalog.get_job(job_id).started_at
    assert started is not None and started.tzinfo is not None
    catalog.update_job(job_id, state="running", done=4, counts={"files_changed": 4})
    job = catalog.get_job(job_id)
    assert (job.started_at, job.done, job.counts) == (started, 4, {"files_changed": 4})
    catalog.update_job(job_id, state="failed", error="clone failed")
    job = catalog.get_job(job_id)
    assert (job.state, job.error) == ("failed", "clone failed") and job.finished_at >= started
    later = catalog.create_job("task-123", "other", "reindex")
    assert later == "task-123"
    assert [j.id for j in catalog.list_jobs()] == [later, job_id]
    assert [j.id for j in catalog.list_jobs(source="repo")] == [job_id]
    assert catalog.get_job("missing") is None
    with pytest.raises(CatalogError):
        catalog.update_job(job_id, state="exploded")
    with pytest.raises(CatalogError):
        catalog.update_job("missing", state="running")


def test_meta_values(catalog: Catalog) -> None:
    assert catalog.get_meta("index_version") is None and catalog.get_meta("x", "d") == "d"
    catalog.set_meta("index_version", "1")
    catalog.set_meta("index_version", "2")
    assert catalog.get_meta("index_version") == "2"
