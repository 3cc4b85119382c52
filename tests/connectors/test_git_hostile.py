"""Hostile repositories against the git connector: trees crafted with git plumbing (names porcelain
refuses: `..`, `../x`, absolute, `.git/...`, newlines, backslash traversal, an empty name), symlink
chains out of the repository, and a submodule pointing at a local repository full of secrets.
Nothing from outside the repository may reach a Document, whether the source is read in place or
cloned from a file:// URL; every entry left out is a recorded skip with its reason."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_git_repos import by_type, commit, git, isolated_git, new_repo  # noqa: F401 - fixture reused

from connectors.base import ConnectorError
from connectors.git_repos import GitRepoConnector, unsafe_path_reason
from indexer.models import Document, Skipped, SkipReason

OUTSIDE = "OUTSIDE-SECRET-7f3a"  # written only outside the repository under test
INSIDE = "inside text\n"


def hash_blob(repo: Path, data: bytes) -> bytes:
    out = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, capture_output=True, check=True)
    return bytes.fromhex(out.stdout.decode().strip())


def raw_tree(repo: Path, entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A tree object written byte by byte: `git mktree` would refuse most of these names."""
    data = b"".join(mode + b" " + name + b"\0" + sha for mode, name, sha in entries)
    out = subprocess.run(["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"], cwd=repo, input=data,
                         capture_output=True, check=True)
    return bytes.fromhex(out.stdout.decode().strip())


def point_main_at(repo: Path, tree: bytes) -> None:
    head = git(repo, "commit-tree", tree.hex(), "-m", "crafted")
    git(repo, "update-ref", "refs/heads/main", head)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret file and a git repository of secrets next to (not in) the repository under test."""
    (tmp_path / "secret.txt").write_text(OUTSIDE + "\n")
    return new_repo(tmp_path / "secrets", {"creds.env": f"TOKEN={OUTSIDE}\n", "notes.md": f"# {OUTSIDE}\n"})


def crafted_repo(tmp_path: Path) -> Path:
    repo = new_repo(tmp_path / "hostile", {"ok.py": "def ok():\n    return 1\n"})
    blob = hash_blob(repo, INSIDE.encode())
    ok = hash_blob(repo, b"def ok():\n    return 1\n")
    inner = raw_tree(repo, [(b"100644", b"secret.txt", blob)])

    def link(target: str) -> bytes:
        return hash_blob(repo, target.encode())

    point_main_at(repo, raw_tree(repo, [
        (b"40000", b"..", inner), (b"100644", b"../x", blob), (b"100644", b"/etc/passwd", blob),
        (b"40000", b".git", inner), (b"40000", b".GIT", inner), (b"100644", b".git/config", blob),
        (b"40000", b".", inner), (b"100644", b"a\nb", blob), (b"100644", b"tab\tname", blob),
        (b"100644", b"x\\..\\..\\secret.txt", blob),
        (b"120000", b"link1", link("link2")), (b"120000", b"link2", link("../secret.txt")),
        (b"120000", b"abs", link(str(tmp_path / "secret.txt"))), (b"120000", b"dir", link("..")),
        (b"100644", b"ok.py", ok),
    ]))
    return repo


def assert_nothing_from_outside(items: list) -> dict[str, Document]:
    docs = by_type(items, Document)
    for path, doc in docs.items():
        assert OUTSIDE not in doc.content, path
        assert unsafe_path_reason(path) == "" and not path.lower().startswith(".git/"), path
    return docs


EXPECTED_SKIPS = {
    "../secret.txt": SkipReason.UNSAFE_PATH, "../x": SkipReason.UNSAFE_PATH, "/etc/passwd": SkipReason.UNSAFE_PATH,
    "./secret.txt": SkipReason.UNSAFE_PATH, "a\nb": SkipReason.UNSAFE_PATH, "tab\tname": SkipReason.UNSAFE_PATH,
    "x\\..\\..\\secret.txt": SkipReason.UNSAFE_PATH,
    "link1": SkipReason.SYMLINK, "link2": SkipReason.SYMLINK, "abs": SkipReason.SYMLINK, "dir": SkipReason.SYMLINK,
}


@pytest.mark.parametrize("cloned", [False, True], ids=["in place", "cloned from file://"])
def test_crafted_tree_entries_are_skipped_with_reasons_and_read_nothing_outside(tmp_path, outside, cloned):
    repo = crafted_repo(tmp_path)
    location = f"file://{repo}" if cloned else str(repo)
    items = list(GitRepoConnector("hostile", location, workdir=tmp_path / "work").sync(None, {}))
    docs = assert_nothing_from_outside(items)
    assert set(docs) == {"ok.py"}
    skipped = by_type(items, Skipped)
    for path, reason in EXPECTED_SKIPS.items():
        assert skipped[path].reason is reason and skipped[path].detail, path
    git_dir_entries = {p for p in skipped if p.lower().startswith(".git/")}
    assert git_dir_entries == {".git/secret.txt", ".GIT/secret.txt", ".git/config"}
    assert all(skipped[p].detail for p in git_dir_entries)


def test_a_tree_entry_with_an_empty_name_fails_the_sync_without_yielding_anything(tmp_path, outside):
    repo = new_repo(tmp_path / "hostile", {"ok.py": "x = 1\n"})
    blob = hash_blob(repo, INSIDE.encode())
    point_main_at(repo, raw_tree(repo, [(b"100644", b"", blob), (b"100644", b"ok.py", blob)]))
    with pytest.raises(ConnectorError):
        list(GitRepoConnector("hostile", str(repo)).sync(None, {}))


def test_a_submodule_of_a_local_secrets_repository_is_never_read(tmp_path, outside):
    repo = new_repo(tmp_path / "super", {"app.py": "def app():\n    return 2\n"})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(outside), "vendor/secrets")
    git(repo, "commit", "-q", "-m", "add the secrets as a submodule")
    assert OUTSIDE in (repo / "vendor" / "secrets" / "creds.env").read_text()  # checked out on disk, right there
    for location in (str(repo), f"file://{repo}"):
        items = list(GitRepoConnector("super", location, workdir=tmp_path / "work").sync(None, {}))
        docs = assert_nothing_from_outside(items)
        assert set(docs) == {"app.py", ".gitmodules"}
        assert by_type(items, Skipped)["vendor/secrets"].reason is SkipReason.SUBMODULE


def test_work_tree_symlinks_and_files_outside_the_commit_are_never_read(tmp_path, outside):
    """Only the commit's blobs are read: a symlink chain in the work tree, an untracked file and a
    modified file on disk change nothing."""
    repo = new_repo(tmp_path / "repo", {"app.py": "def app():\n    return 3\n"})
    os.symlink(tmp_path / "secret.txt", repo / "hop2")
    os.symlink("hop2", repo / "hop1")
    commit(repo, {"readme.md": "# Repo\n"})
    (repo / "untracked.txt").write_text(OUTSIDE)
    (repo / "app.py").write_text(OUTSIDE)  # modified but not committed
    items = list(GitRepoConnector("repo", str(repo)).sync(None, {}))
    docs = assert_nothing_from_outside(items)
    assert set(docs) == {"app.py", "readme.md"} and "return 3" in docs["app.py"].content
    skipped = by_type(items, Skipped)
    assert skipped["hop1"].reason is skipped["hop2"].reason is SkipReason.SYMLINK
