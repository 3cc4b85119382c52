"""Commit history as documents: real repositories made in each test, synced by the git connector."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_git_repos import commit, git, isolated_git, new_repo  # noqa: F401 - isolated_git: autouse fixture

from connectors.git_history import HISTORY_VERSION, commit_url, parse, references
from connectors.git_repos import GitRepoConnector
from indexer.models import Access, Deletion, Document, SyncFailure

ACCESS = Access.of("group:dev")


def sync(conn: GitRepoConnector, known: dict[str, str] | None = None) -> list:
    return list(conn.sync(None, known or {}))


def commits(items: list) -> dict[str, Document]:
    return {i.id: i for i in items if isinstance(i, Document) and i.kind == "commit"}


def versions(items: list) -> dict[str, str]:
    return {i.id: i.version for i in items if isinstance(i, Document)}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = new_repo(tmp_path / "repo", {"app.py": "print(1)\n"})
    commit(path, {"billing/invoice.py": "TOTAL = 1\n", "app.py": "print(2)\n"},
           "Fix invoice totals PAY-7\n\nRounds half up. See merge request platform/billing!4 and UTF-8 notes.")
    return path


def test_commits_reachable_from_the_ref_become_commit_documents(repo):
    items = sync(GitRepoConnector("src", str(repo), access=ACCESS, history_commits=50))
    found = commits(items)
    head = git(repo, "rev-parse", "HEAD")
    first = git(repo, "rev-parse", "HEAD~1")
    assert set(found) == {f"src:commit:{head}", f"src:commit:{first}"}
    doc = found[f"src:commit:{head}"]
    assert (doc.path, doc.kind, doc.version, doc.access) == (f"commit:{head}", "commit", HISTORY_VERSION, ACCESS)
    assert doc.title == f"{head[:12]} Fix invoice totals PAY-7"
    assert doc.metadata["references"] == "PAY-7 platform/billing!4"
    text = parse(doc.content)
    assert text is not None and text.sha == head and text.author == "Test"
    assert text.message.startswith("Fix invoice totals PAY-7\n\nRounds half up.")
    assert text.paths == ("app.py", "billing/invoice.py") and text.references == ("PAY-7", "platform/billing!4")
    assert text.date.startswith(doc.metadata["date"][:10])
    assert parse(found[f"src:commit:{first}"].content).paths == ("app.py",)


def test_history_is_off_at_zero_and_bounded_by_the_setting(repo):
    assert commits(sync(GitRepoConnector("src", str(repo), access=ACCESS))) == {}
    assert commits(sync(GitRepoConnector("src", str(repo), access=ACCESS, history_commits=0))) == {}
    newest = commits(sync(GitRepoConnector("src", str(repo), access=ACCESS, history_commits=1)))
    assert list(newest) == [f"src:commit:{git(repo, 'rev-parse', 'HEAD')}"]


def test_later_syncs_read_only_new_commits_and_keep_the_old_ones(repo):
    conn = GitRepoConnector("src", str(repo), access=ACCESS, history_commits=50)
    known = versions(sync(conn))
    assert sync(conn, known) == []  # nothing new: nothing read, nothing deleted
    new = commit(repo, {"notes.md": "# notes\n"}, "Add notes")
    items = sync(conn, known)
    assert list(commits(items)) == [f"src:commit:{new}"]
    assert not [i for i in items if isinstance(i, Deletion)]
    assert f"src:commit:{new}" in conn.list_ids() and set(known) <= conn.list_ids()


def test_never_a_commit_after_the_indexed_ref(repo):
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    later = commit(repo, {"feature.py": "x = 1\n"}, "Feature work PAY-9")
    git(repo, "checkout", "-q", "main")
    on_main = commits(sync(GitRepoConnector("src", str(repo), ref="main", access=ACCESS, history_commits=50)))
    assert f"src:commit:{base}" in on_main and f"src:commit:{later}" not in on_main
    pinned = GitRepoConnector("src", str(repo), ref=base, access=ACCESS, history_commits=50)
    assert f"src:commit:{later}" not in commits(sync(pinned)) and f"src:commit:{later}" not in pinned.list_ids()


def test_a_ref_moved_back_deletes_the_commits_after_it(repo):
    conn = GitRepoConnector("src", str(repo), ref="main", access=ACCESS, history_commits=50)
    dropped = commit(repo, {"oops.py": "x = 1\n"}, "Oops")
    known = versions(sync(conn))
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    items = sync(conn, known)
    assert Deletion(f"src:commit:{dropped}") in items
    assert not commits(items)


def test_an_unreadable_history_keeps_the_indexed_commits(repo):
    conn = GitRepoConnector("src", str(repo), access=ACCESS, history_commits=50)
    known = versions(sync(conn))
    conn.history_reader = lambda git_dir: _Broken()  # type: ignore[method-assign]
    items = sync(conn, known)
    assert [type(i) for i in items] == [SyncFailure] and items[0].item == "commit history"


class _Broken:
    def reachable(self, commit: str, limit: int) -> list[str]:
        from connectors.base import ConnectorError
        raise ConnectorError("git rev-list failed: fatal: bad object")


def test_commit_links_for_a_web_hosted_source():
    assert commit_url("https://gitlab.example.com/platform/billing/-/blob", "ab12") == \
        "https://gitlab.example.com/platform/billing/-/commit/ab12"
    assert commit_url("https://github.com/psf/requests/blob", "ab12") == "https://github.com/psf/requests/commit/ab12"
    assert commit_url("", "ab12") == ""


@pytest.mark.parametrize("message, project, expected", [
    ("Fix PAY-7 and OPS-12.", "", ("PAY-7", "OPS-12")),
    ("See merge request platform/billing!4", "", ("platform/billing!4",)),
    ("Follow-up to !12", "platform/billing", ("platform/billing!12",)),
    ("Follow-up to !12", "", ("!12",)),
    ("UTF-8, SHA-256, ISO-8601 and RFC-7231 are not tickets; neither is x-1 or ABC-0", "", ()),
    ("PAY-7 again: PAY-7", "", ("PAY-7",)),
    ("Not a ref: a!=b, hello!3x, PAY-7a", "", ()),
])
def test_ticket_and_merge_request_references(message, project, expected):
    assert references(message, project) == expected


def test_a_bare_merge_request_is_qualified_with_the_web_hosted_project(tmp_path):
    conn = GitRepoConnector("src", "https://gitlab.example.com/platform/billing.git", access=ACCESS,
                            workdir=tmp_path, history_commits=5)
    assert conn._project_path() == "platform/billing"
