"""The git connector against real repositories made in each test."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from connectors import git_repos
from connectors.base import ConnectorError, RefNotFound, SourceNotFound, document_id
from connectors.git_process import BlobReader, Git, MissingObject, redact
from connectors.git_repos import GitRepoConnector, parse_ls_tree, unsafe_path_reason, web_blob_base
from indexer.models import Access, Deletion, Document, Skipped, SkipReason, SyncFailure

ACCESS = Access.of("group:dev")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git configuration leaks into the tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(cwd: Path, *args: str) -> str:
    env = {**CLEAN_ENV, "HOME": os.environ["HOME"], "GIT_CONFIG_NOSYSTEM": "1"}
    cmd = ["git", "-c", "user.email=t@example.com", "-c", "user.name=Test", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def write(repo: Path, files: Mapping[str, str | bytes]) -> None:
    for name, body in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())


def commit(repo: Path, files: Mapping[str, str | bytes], message: str = "change") -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def new_repo(path: Path, files: Mapping[str, str | bytes]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(path, files, "initial")
    return path


def run(conn: GitRepoConnector, known: Mapping[str, str] | None = None) -> list:
    return list(conn.sync(None, known or {}))


def by_type(items: Iterable, kind: type) -> dict:
    out = {}
    for item in items:
        if isinstance(item, kind):
            key = item.doc_id if kind is Deletion else item.path if kind is not SyncFailure else item.item
            out[key] = item
    return out


def versions(items: Iterable) -> dict[str, str]:
    return {d.id: d.version for d in by_type(items, Document).values()}


BASE_FILES = {"src/app.py": "def main():\n    return 1\n", "README.md": "# Demo\n\nHello.\n",
              "lib/util.go": "package lib\n\nfunc Add(a, b int) int { return a + b }\n"}


def test_full_sync_yields_tracked_text_files_with_blob_versions(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    write(repo, {"untracked.py": "SECRET_UNTRACKED = 1\n", "src/app.py": "WORK_TREE_EDIT = 1\n"})
    conn = GitRepoConnector("demo", str(repo), access=ACCESS)
    items = run(conn)
    docs = by_type(items, Document)
    assert set(docs) == set(BASE_FILES)
    for path, doc in docs.items():
        assert doc.id == document_id("demo", path) == f"demo:{path}"
        assert doc.version == git(repo, "rev-parse", f"HEAD:{path}")
        assert (doc.content, doc.access, doc.source, doc.title, doc.url) == (BASE_FILES[path], ACCESS, "demo", path, "")
    assert (docs["src/app.py"].language, docs["src/app.py"].kind) == ("python", "code")
    assert docs["README.md"].kind == "doc" and docs["lib/util.go"].language == "go"
    head = git(repo, "rev-parse", "HEAD")
    assert conn.next_checkpoint() == {"commit": head, "ref": None}
    assert conn.list_ids() == {f"demo:{p}" for p in BASE_FILES}


def test_incremental_syncs_yield_only_changes_and_deletions(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    conn = GitRepoConnector("demo", str(repo), access=ACCESS)
    known = versions(run(conn))
    assert run(conn, known) == []

    commit(repo, {"src/app.py": "def main():\n    return 2\n"})
    items = run(conn, known)
    assert [(type(i).__name__, getattr(i, "path", "")) for i in items] == [("Document", "src/app.py")]
    known.update(versions(items))

    (repo / "lib/util.go").unlink()
    commit(repo, {})
    assert run(conn, known) == [Deletion("demo:lib/util.go")]
    assert conn.list_ids() == {"demo:src/app.py", "demo:README.md"}


def test_symlinks_are_skipped_and_never_followed(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    os.symlink("/etc/passwd", repo / "passwd")
    os.symlink("src/app.py", repo / "inner_link.py")
    os.symlink("../../outside", repo / "src" / "escape")
    commit(repo, {})
    items = run(GitRepoConnector("demo", str(repo), access=ACCESS))
    skipped = by_type(items, Skipped)
    for path in ("passwd", "inner_link.py", "src/escape"):
        assert skipped[path].reason is SkipReason.SYMLINK
    assert set(by_type(items, Document)) == set(BASE_FILES)
    assert not any("root:" in d.content for d in by_type(items, Document).values())


def test_binary_large_vendored_and_generated_files_are_skipped(tmp_path: Path) -> None:
    files = {**BASE_FILES, "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(64), "data.raw": b"abc\x00def" * 10,
             "big.txt": "x" * 5000 + "\n", "vendor/lib.js": "var a = 1;\n", "node_modules/x/index.js": "1\n",
             "gen.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage gen\n"}
    repo = new_repo(tmp_path / "repo", files)
    conn = GitRepoConnector("demo", str(repo), access=ACCESS, max_file_bytes=2000)
    items = run(conn)
    reasons = {path: s.reason for path, s in by_type(items, Skipped).items()}
    assert reasons == {"logo.png": SkipReason.BINARY, "data.raw": SkipReason.BINARY, "big.txt": SkipReason.TOO_LARGE,
                       "vendor/lib.js": SkipReason.VENDORED, "node_modules/x/index.js": SkipReason.VENDORED,
                       "gen.go": SkipReason.GENERATED}
    assert set(by_type(items, Document)) == set(BASE_FILES)
    known = versions(items)
    assert run(conn, known) == [s for s in items if isinstance(s, Skipped)]  # skips are reported every sync


def test_file_that_becomes_skipped_is_deleted(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    conn = GitRepoConnector("demo", str(repo), access=ACCESS, max_file_bytes=2000)
    known = versions(run(conn))
    commit(repo, {"README.md": "y" * 3000})
    items = run(conn, known)
    assert by_type(items, Skipped)["README.md"].reason is SkipReason.TOO_LARGE
    assert by_type(items, Deletion) == {"demo:README.md": Deletion("demo:README.md")}


def test_indexes_the_requested_commit_branch_or_tag(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {"v.txt": "one\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, {"v.txt": "feature\n"})
    git(repo, "checkout", "-q", "main")
    commit(repo, {"v.txt": "two\n"})
    cases = {None: "two\n", "main": "two\n", "v1": "one\n", first: "one\n", first[:10]: "one\n",
             "feature": "feature\n"}
    for ref, expected in cases.items():
        conn = GitRepoConnector("demo", str(repo), ref=ref, access=ACCESS)
        assert by_type(run(conn), Document)["v.txt"].content == expected, ref
        assert conn.next_checkpoint()["ref"] == ref
    with pytest.raises(RefNotFound):
        run(GitRepoConnector("demo", str(repo), ref="no-such-branch"))
    with pytest.raises(RefNotFound):
        run(GitRepoConnector("demo", str(repo), ref="--output=/tmp/x"))


def test_clone_from_file_url_then_fetch_incrementally(tmp_path: Path) -> None:
    work = new_repo(tmp_path / "work", BASE_FILES)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(origin))
    conn = GitRepoConnector("remote", origin.as_uri(), access=ACCESS, workdir=tmp_path / "clones")
    known = versions(run(conn))
    assert set(known) == {f"remote:{p}" for p in BASE_FILES}
    clones = list((tmp_path / "clones").iterdir())
    assert len(clones) == 1 and clones[0].name.startswith("remote-") and clones[0].name.endswith(".git")

    commit(work, {"src/app.py": "def main():\n    return 3\n", "new.py": "X = 1\n"})
    git(work, "push", "-q", str(origin), "main")
    items = run(conn, known)
    assert set(by_type(items, Document)) == {"src/app.py", "new.py"}
    assert by_type(items, Document)["new.py"].content == "X = 1\n"
    assert conn.next_checkpoint()["commit"] == git(work, "rev-parse", "HEAD")


def test_bare_repository_path_is_read_directly(tmp_path: Path) -> None:
    work = new_repo(tmp_path / "work", BASE_FILES)
    git(tmp_path, "clone", "-q", "--bare", str(work), str(tmp_path / "bare.git"))
    items = run(GitRepoConnector("bare", str(tmp_path / "bare.git"), access=ACCESS))
    assert set(by_type(items, Document)) == set(BASE_FILES)


def test_clone_failure_is_a_connector_error_without_credentials(tmp_path: Path) -> None:
    url = "https://alice:s3cr3t-token@127.0.0.1:9/group/proj.git"
    conn = GitRepoConnector("remote", url, workdir=tmp_path / "clones", timeout=20)
    with pytest.raises(ConnectorError) as info:
        run(conn)
    assert "s3cr3t" not in str(info.value) and "alice" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert not any((tmp_path / "clones").iterdir())  # no half-made clone is left behind
    with pytest.raises(SourceNotFound):
        run(GitRepoConnector("missing", (tmp_path / "nope.git").as_uri(), workdir=tmp_path / "clones"))


def test_non_repositories_raise_source_not_found(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    for location in (plain, tmp_path / "missing", repo / "src"):
        with pytest.raises(SourceNotFound):
            run(GitRepoConnector("demo", str(location)))


def test_submodule_entries_are_skipped(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},third/sub")
    git(repo, "commit", "-q", "-m", "add gitlink")
    skipped = by_type(run(GitRepoConnector("demo", str(repo))), Skipped)
    assert skipped["third/sub"].reason is SkipReason.SUBMODULE


def test_missing_blob_is_skipped_not_fatal(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    blob = git(repo, "rev-parse", "HEAD:README.md")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    items = run(GitRepoConnector("demo", str(repo)))
    assert by_type(items, Skipped)["README.md"].reason is SkipReason.MISSING_OBJECT
    assert set(by_type(items, Document)) == {"src/app.py", "lib/util.go"}
    assert not by_type(items, SyncFailure)


def test_control_characters_in_names_are_unsafe(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {**BASE_FILES, "bad\x01name.py": "X = 1\n"})
    items = run(GitRepoConnector("demo", str(repo)))
    assert by_type(items, Skipped)["bad\x01name.py"].reason is SkipReason.UNSAFE_PATH
    assert set(by_type(items, Document)) == set(BASE_FILES)


@pytest.mark.parametrize(("path", "unsafe"), [
    ("src/app.py", False), ("a/b/c.txt", False), (".github/workflows/ci.yml", False), ("..x/y", False),
    ("/etc/passwd", True), ("../escape", True), ("a/../../b", True), ("a//b", True), ("./a", True),
    ("a/\x1b[31mred", True), ("tab\there", True), ("line\nbreak", True),
])
def test_unsafe_path_reason(path: str, unsafe: bool) -> None:
    assert bool(unsafe_path_reason(path)) is unsafe


def test_parse_ls_tree_handles_odd_entries() -> None:
    sha = "a" * 40
    raw = (f"100644 blob {sha}      12\tok/file.py\0".encode()
           + f"160000 commit {sha}       -\tsub\0".encode()
           + f"100644 blob {sha}       3\t../up\0".encode()
           + f"100644 blob {sha}       3\t".encode() + b"caf\xe9.txt\0")
    entries = parse_ls_tree(raw)
    assert [(e.path, e.size, bool(e.problem)) for e in entries] == [
        ("ok/file.py", 12, False), ("sub", 0, False), ("../up", 3, True), ("caf\ufffd.txt", 3, True)]


@pytest.mark.parametrize(("location", "base"), [
    ("https://gitlab.example.com/group/sub/proj.git", "https://gitlab.example.com/group/sub/proj/-/blob"),
    ("https://user:tok@github.com/org/repo.git", "https://github.com/org/repo/blob"),
    ("git@github.com:org/repo.git", "https://github.com/org/repo/blob"),
    ("ssh://git@gitlab.corp:2222/team/proj.git", "https://gitlab.corp/team/proj/-/blob"),
    ("http://gitlab.local:8080/a/b", "http://gitlab.local:8080/a/b/-/blob"),
    ("https://example.org/x/y.git", ""), ("file:///srv/git/repo.git", ""),
])
def test_web_blob_base(location: str, base: str) -> None:
    assert web_blob_base(location) == base


def test_documents_from_web_hosts_link_to_the_commit(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", {"dir/a file.py": "X = 1\n"})
    conn = GitRepoConnector("demo", str(repo))
    conn.web_base = web_blob_base("https://gitlab.example.com/g/p.git")
    doc = by_type(run(conn), Document)["dir/a file.py"]
    assert doc.url == f"https://gitlab.example.com/g/p/-/blob/{git(repo, 'rev-parse', 'HEAD')}/dir/a%20file.py"


def test_redact_removes_userinfo() -> None:
    text = "fatal: unable to access 'https://oauth2:glpat-XYZ@gitlab.com/g/p.git/': 403"
    assert redact(text) == "fatal: unable to access 'https://***@gitlab.com/g/p.git/': 403"


def test_next_checkpoint_needs_a_finished_sync(tmp_path: Path) -> None:
    conn = GitRepoConnector("demo", str(new_repo(tmp_path / "repo", BASE_FILES)))
    with pytest.raises(ConnectorError):
        conn.next_checkpoint()
    assert conn.list_ids() == {f"demo:{p}" for p in BASE_FILES}  # judged by path before any sync


def test_a_failing_file_is_reported_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = new_repo(tmp_path / "repo", BASE_FILES)
    conn = GitRepoConnector("demo", str(repo))
    known = versions(run(conn))
    commit(repo, {"README.md": "# changed\n", "src/app.py": "def main():\n    return 9\n"})
    real = git_repos.decode_text

    def flaky(data: bytes) -> str:
        if data.startswith(b"# changed"):
            raise UnicodeError("simulated decoder crash")
        return real(data)

    monkeypatch.setattr(git_repos, "decode_text", flaky)
    items = run(conn, known)
    assert by_type(items, SyncFailure)["README.md"].error == "UnicodeError: simulated decoder crash"
    assert set(by_type(items, Document)) == {"src/app.py"} and not by_type(items, Deletion)
    assert "demo:README.md" in conn.list_ids()


def test_blob_reader_reads_large_blobs_and_restarts_after_a_crash(tmp_path: Path) -> None:
    big = "".join(f"line {i} {'x' * 60}\n" for i in range(20000))  # ~1.4 MB, many pipe buffers
    repo = new_repo(tmp_path / "repo", {"big.txt": big, "small.txt": "small\n"})
    shas = {name: git(repo, "rev-parse", f"HEAD:{name}") for name in ("big.txt", "small.txt")}
    with BlobReader(Git(timeout=10), str(repo / ".git")) as reader:
        assert reader.read(shas["big.txt"]).decode() == big
        reader.proc.kill()
        reader.proc.wait()
        with pytest.raises((OSError, ConnectorError)):
            reader.read(shas["small.txt"])
        assert reader.read(shas["small.txt"]) == b"small\n"
        with pytest.raises(MissingObject):
            reader.read("0" * 40)
        assert reader.read(shas["big.txt"]).decode() == big


def _notebook(cells: list[dict], language: str = "python") -> str:
    import json
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"language": language, "name": "k"},
                                                    "widgets": {"state": {"model-1": {"big": "WIDGET_STATE"}}}},
                       "nbformat": 4, "nbformat_minor": 5}, indent=1)


def test_notebooks_are_indexed_as_cells_without_outputs(tmp_path: Path) -> None:
    image = "iVBORw0KGgo" + "A" * 400_000  # a plotted figure, base64: larger than max_file_bytes on its own
    nb = _notebook([
        {"cell_type": "markdown", "metadata": {}, "source": ["# Churn model\n", "Fits the *baseline*."]},
        {"cell_type": "code", "execution_count": 3, "metadata": {}, "source": ["def fit_churn(df):\n", "    return df"],
         "outputs": [{"output_type": "display_data", "data": {"image/png": image, "text/plain": ["OUTPUT_TEXT"]}}]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "source": "fit_churn(load())", "outputs": []},
    ])
    repo = new_repo(tmp_path / "repo", {"analysis/churn.ipynb": nb, "broken.ipynb": "{not json"})
    conn = GitRepoConnector("demo", str(repo), access=ACCESS, max_file_bytes=100_000)
    items = run(conn)
    doc = by_type(items, Document)["analysis/churn.ipynb"]
    assert doc.content == ("# %% [markdown]\n# # Churn model\n# Fits the *baseline*.\n\n"
                           "# %%\ndef fit_churn(df):\n    return df\n\n# %%\nfit_churn(load())\n")
    assert (doc.language, doc.kind) == ("python", "code")
    assert "OUTPUT_TEXT" not in doc.content and "WIDGET_STATE" not in doc.content
    assert by_type(items, Skipped)["broken.ipynb"].reason == SkipReason.UNDECODABLE
    # unchanged: not read again; the version names the rendering, so a new rendering reads it once more
    assert run(GitRepoConnector("demo", str(repo), access=ACCESS, max_file_bytes=100_000), versions(items)) == \
        [by_type(items, Skipped)["broken.ipynb"]]
    assert doc.version.endswith("+" + git_repos.NOTEBOOK_VERSION)


def test_notebook_language_comes_from_its_kernel(tmp_path: Path) -> None:
    nb = _notebook([{"cell_type": "code", "metadata": {}, "source": "fit <- lm(y ~ x)", "outputs": []},
                    {"cell_type": "markdown", "metadata": {}, "source": "Notes"}], language="R")
    repo = new_repo(tmp_path / "repo", {"model.ipynb": nb})
    doc = by_type(run(GitRepoConnector("demo", str(repo), access=ACCESS)), Document)["model.ipynb"]
    assert doc.language == "r" and doc.content == "# %%\nfit <- lm(y ~ x)\n\n# %% [markdown]\n# Notes\n"
