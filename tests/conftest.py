"""Shared fixtures: the embedding model (loaded once per session), real git repositories, services."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.services import IndexServices, build_embedder
from indexer.settings import Settings

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": os.environ.get("HOME", "/")}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=True)
    return proc.stdout.strip()


class GitRepo:
    """A real repository made in the test, with helpers to write, delete and commit files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "-b", "main")

    def write(self, path: str, content: str | bytes) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return target

    def remove(self, path: str) -> None:
        git(self.root, "rm", "-q", path)

    def commit(self, message: str = "change") -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.root, "rev-parse", "HEAD")


# What the tests set in the environment for every process they start: helpers that start `cairn` with a
# clean environment (no CAIRN_* of the caller's) keep these.
KEPT_ENV = frozenset({"CAIRN_HISTORY_COMMITS"})


@pytest.fixture(scope="session", autouse=True)
def history_off_unless_asked() -> Iterator[None]:
    """Git sources index no commit history in tests unless a test asks for it (`Settings(history_commits=...)`,
    as tests/api/test_history.py does): commit documents would change every other test's document and job
    counts. Set in the environment, so `cairn` processes the tests start see it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAIRN_HISTORY_COMMITS", "0")
        yield


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[str], GitRepo]:
    def factory(name: str = "repo") -> GitRepo:
        return GitRepo(tmp_path / name)
    return factory


@pytest.fixture(scope="session")
def embedder():
    """The real default model, loaded once for the whole session."""
    return build_embedder(Settings())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def services(settings: Settings, embedder) -> Iterator[IndexServices]:
    svc = IndexServices.open(settings, embedder=embedder)
    yield svc
    svc.close()


def _stop_process(pid: int) -> None:
    """SIGSTOP, returning once the process is stopped (the signal takes effect asynchronously)."""
    import signal
    import time

    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "tT":
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.01)


@pytest.fixture
def stop_process() -> Callable[[int], None]:
    """`stop_process(pid)`: freeze a process (SIGSTOP) and wait until it is stopped; SIGCONT resumes it."""
    return _stop_process
