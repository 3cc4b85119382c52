"""`reindex --since`: what the source changed in the window is re-read and rewritten, nothing else."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from connectors.checkpoints import item_version, stamp
from indexer.catalog.schema import documents
from indexer.models import Access, Document
from workers.jobs import run_sync_job
from workers.window import parse_duration, rewind


def indexed_at(services, source: str) -> dict[str, dt.datetime]:
    with services.catalog.engine.connect() as conn:
        rows = conn.execute(select(documents.c.path, documents.c.indexed_at).where(documents.c.source == source))
        return dict(rows.all())


def commit_at(repo, monkeypatch, when: dt.datetime, message: str) -> None:
    stamp_ = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp_)
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp_)
    repo.commit(message)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("45s", 45), ("30m", 1800), ("1h", 3600), ("2d", 172800),
                                           ("1w", 604800), ("1.5h", 5400)])
def test_durations_parse(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "2 days", "-1h", "h", "1y", "99999999999999999999d"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def test_git_files_touched_in_the_window_are_rewritten_others_untouched(services, make_repo, monkeypatch):
    now = dt.datetime.now(dt.UTC)
    repo = make_repo()
    for name in ("a", "b", "c"):
        repo.write(f"{name}.py", f"def {name}_func():\n    return '{name}'\n")
    commit_at(repo, monkeypatch, now - dt.timedelta(days=10), "old")
    repo.write("b.py", "def b_func():\n    return 'b, changed'\n")
    repo.write("d.py", "def d_func():\n    return 'd'\n")
    commit_at(repo, monkeypatch, now - dt.timedelta(hours=20), "recent")
    services.catalog.upsert_source("code", "git", {"location": str(repo.root)}, ["public"])
    run_sync_job(services, "code")
    before = indexed_at(services, "code")
    chunks_before = (services.fulltext.ids("code"), services.vectors.ids("code"))

    counts = run_sync_job(services, "code", since=parse_duration("2d"))

    after = indexed_at(services, "code")
    assert {p for p in after if after[p] > before[p]} == {"b.py", "d.py"}
    assert counts.files_changed == 2 and counts.chunks_embedded == 0  # unchanged content: embedding cache
    assert (services.fulltext.ids("code"), services.vectors.ids("code")) == chunks_before
    job = services.catalog.list_jobs(source="code")[0]
    assert job.kind == "reindex" and job.params["since_seconds"] == 172800 and job.counts["rewound_documents"] == 2
    assert "" not in services.catalog.document_versions("code").values()  # every version is real again


def test_ticket_cursors_rewind_and_items_changed_in_the_window_are_forgotten(services):
    now = dt.datetime.now(dt.UTC)
    services.catalog.upsert_source("tickets", "jira", {"url": "https://jira.example.com"}, ["group:eng"])
    access = Access.of("group:eng")
    for key, age in (("T-1", dt.timedelta(hours=5)), ("T-2", dt.timedelta(days=9))):
        doc = Document(id=f"tickets:{key}", source="tickets", path=key, content=f"{key} text", language="text",
                       version=item_version(stamp(now - age), access.digest()), access=access, kind="issue")
        services.pipeline.apply_lexical([doc])
    services.catalog.set_checkpoint("tickets", {"scopes": {
        "P": {"ident": "P", "access": "x", "cursor": stamp(now - dt.timedelta(hours=1))},
        "Q": {"ident": "Q", "access": "y", "cursor": stamp(now - dt.timedelta(days=10))},
        "R": {"ident": "R", "access": "z", "cursor": None}}, "retry": {}})

    forgotten = rewind(services.catalog, services.catalog.get_source("tickets"), None, dt.timedelta(days=2))

    assert forgotten == 1
    assert services.catalog.document_versions("tickets")["tickets:T-1"] == ""
    assert services.catalog.document_versions("tickets")["tickets:T-2"] != ""
    scopes = services.catalog.get_checkpoint("tickets")["scopes"]
    cutoff = now - dt.timedelta(days=2)
    assert abs(dt.datetime.fromisoformat(scopes["P"]["cursor"]) - cutoff) < dt.timedelta(minutes=1)
    assert scopes["Q"]["cursor"] == stamp(now - dt.timedelta(days=10)) and scopes["R"]["cursor"] is None
