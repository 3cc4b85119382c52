"""Celery tasks run in-process (no broker) against a real index; applying a batch twice changes nothing."""
from __future__ import annotations

import pytest

from indexer.models import Access, Document
from workers import celery_app
from workers.tasks import delete_documents, document_from_json, document_to_json, index_batch, sync_source


@pytest.fixture
def eager(settings, services):
    celery_app.configure(settings)
    celery_app.attach_services(services)
    yield celery_app.app
    celery_app.detach_services()


def doc(path: str, text: str) -> Document:
    return Document(id=f"notes:{path}", source="notes", path=path, content=text, version="v1",
                    access=Access.of("group:eng"), kind="doc", language="markdown", title=path)


def test_tasks_run_eagerly_without_a_broker(eager):
    assert eager.conf.task_always_eager and eager.conf.broker_url == "memory://"


def test_index_batch_is_idempotent(eager, services):
    batch = [document_to_json(doc("a.md", "# Alpha\n\nfirst note\n")), document_to_json(doc("b.md", "# Beta\n\nsecond\n"))]
    first = index_batch.delay(batch).get()
    assert first["docs_changed"] == 2 and first["chunks_embedded"] >= 2
    ids = (services.fulltext.ids("notes"), services.vectors.ids("notes"), set(services.catalog.chunk_ids_of_source("notes")))
    second = index_batch.delay(batch).get()
    assert second["chunks_written"] == 0 and second["chunks_embedded"] == 0
    assert ids == (services.fulltext.ids("notes"), services.vectors.ids("notes"),
                   set(services.catalog.chunk_ids_of_source("notes")))
    gone = delete_documents.delay(["notes:a.md"]).get()
    assert gone["docs_deleted"] == 1 and services.catalog.chunk_ids_for(["notes:a.md"]).get("notes:a.md", []) == []


def test_sync_source_task_indexes_a_repository(eager, services, make_repo):
    repo = make_repo()
    repo.write("main.go", "package main\n\nfunc main() {\n\tprintln(\"hi\")\n}\n")
    repo.commit()
    services.catalog.upsert_source("go", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    counts = sync_source.delay("go").get()
    assert counts["files_changed"] == 1 and counts["chunks_embedded"] >= 1
    assert services.catalog.list_jobs(source="go")[0].state == "succeeded"


def test_document_json_round_trip():
    d = doc("x.md", "text")
    assert document_from_json(document_to_json(d)) == d
