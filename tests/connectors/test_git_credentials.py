"""Git credentials reach git through its environment, never its command line (visible in `ps`), its
config on disk, an error message or a log line; stored sources name their token by reference only."""
from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from git_http_server import GitServer, private_repo

from connectors import git_process
from connectors.base import AuthFailed
from connectors.config import SourceConfigError, git_config, url_has_credentials
from connectors.git_repos import GitRepoConnector, split_credentials
from connectors.registry import build_connector
from indexer.catalog.schema import SourceRecord
from indexer.models import Document
from indexer.settings import Settings

TOKEN = "glpat-Zq8xVfT3mKp2Lr9sWd4Y"


@pytest.fixture()
def http_git(tmp_path: Path) -> Iterator[GitServer]:
    with private_repo(tmp_path / "remote", TOKEN) as served:
        yield served


@pytest.fixture()
def argv_log(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command line git is started with (what `ps` would show)."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    def recording(args, *rest, **kwargs):
        seen.append([str(a) for a in args])
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(git_process.subprocess, "Popen", recording)
    return seen


def _docs(items) -> list[Document]:
    return [i for i in items if isinstance(i, Document)]


def _row(name: str, config: dict) -> SourceRecord:
    return SourceRecord(name=name, kind="git", config=config, access=(), checkpoint=None, state="idle",
                        last_sync_at=None, last_success_at=None, last_error="", created_at=None)


def test_split_credentials_moves_user_and_password_into_the_environment() -> None:
    url, env = split_credentials(f"https://oauth2:{TOKEN}@gitlab.example.com:8443/g/p.git")
    assert url == "https://gitlab.example.com:8443/g/p.git"
    assert env["CAIRN_GIT_USERNAME"] == "oauth2" and env["CAIRN_GIT_PASSWORD"] == TOKEN
    assert split_credentials("https://gitlab.example.com/g/p.git") == ("https://gitlab.example.com/g/p.git", {})
    assert split_credentials("ssh://git@host/g/p.git")[1] == {}  # ssh keys, not passwords


@pytest.mark.parametrize("location, secret", [
    (f"https://oauth2:{TOKEN}@gitlab.example.com/g/p.git", True),
    (f"https://{TOKEN}@github.com/o/r.git", True),  # a token alone is a valid user name to GitHub
    ("HTTP://user:pw@host/r.git", True),
    ("ssh://deploy:hunter2@host/r.git", True),
    ("ssh://git@host/g/p.git", False),
    ("git@gitlab.example.com:g/p.git", False),
    ("https://gitlab.example.com/g/p.git", False),
    ("/srv/repos/p.git", False),
])
def test_which_locations_carry_credentials(location: str, secret: bool) -> None:
    assert url_has_credentials(location) is secret
    if secret:
        with pytest.raises(SourceConfigError, match="--token-env VAR") as refused:
            git_config("p", location)
        assert TOKEN not in str(refused.value)


def test_git_config_keeps_only_references() -> None:
    config = git_config("p", "https://gitlab.example.com/g/p.git", "main", token_env="GITLAB_TOKEN")
    assert config == {"location": "https://gitlab.example.com/g/p.git", "ref": "main", "username": "",
                      "token_env": "GITLAB_TOKEN", "token_file": ""}
    with pytest.raises(SourceConfigError, match="not both"):
        git_config("p", "https://h/p.git", token_env="A", token_file="/f")
    with pytest.raises(SourceConfigError, match="http"):
        git_config("p", "/srv/repos/p.git", token_env="A")
    with pytest.raises(SourceConfigError, match="environment variable"):
        git_config("p", "https://h/p.git", token_env="NOT A NAME")


def test_a_token_by_reference_clones_and_fetches_without_leaving_a_trace(http_git, tmp_path, argv_log,
                                                                         monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("REPO_TOKEN", TOKEN)
    row = _row("proj", git_config("proj", http_git.url, token_env="REPO_TOKEN"))
    settings = Settings(data_dir=tmp_path / "data")
    docs = _docs(build_connector(row, settings).sync(None, {}))
    assert [d.path for d in docs] == ["app.py"] and http_git.authorized and http_git.refused  # it asked, we answered
    http_git.commit({"lib.py": "def helper():\n    return 2\n"})
    again = _docs(build_connector(row, settings).sync(None, {d.id: d.version for d in docs}))
    assert [d.path for d in again] == ["lib.py"]
    assert any("clone" in argv for argv in argv_log) and any("fetch" in argv for argv in argv_log)
    assert not [argv for argv in argv_log if any(TOKEN in a for a in argv)]
    for path in (tmp_path / "data").rglob("*"):  # the clone's config, FETCH_HEAD, packed-refs...
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


def test_a_missing_or_wrong_token_fails_clearly_without_the_token(http_git, tmp_path, monkeypatch) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    row = _row("proj", git_config("proj", http_git.url, token_env="REPO_TOKEN"))
    monkeypatch.delenv("REPO_TOKEN", raising=False)
    with pytest.raises(AuthFailed, match="REPO_TOKEN is not set"):
        list(build_connector(row, settings).sync(None, {}))
    monkeypatch.setenv("REPO_TOKEN", "glpat-wrongwrongwrong0000")
    with pytest.raises(AuthFailed) as failure:
        list(build_connector(row, settings).sync(None, {}))
    assert "glpat-wrongwrongwrong0000" not in str(failure.value)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    by_file = _row("proj", git_config("proj", http_git.url, token_file=str(token_file)))
    assert [d.path for d in _docs(build_connector(by_file, settings).sync(None, {}))] == ["app.py"]


def test_a_stored_url_with_credentials_or_a_removed_token_is_never_used(http_git, tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    leaked = _row("proj", {"location": http_git.url.replace("http://", f"http://oauth2:{TOKEN}@"), "ref": ""})
    with pytest.raises(AuthFailed, match="--token-env") as refused:
        build_connector(leaked, settings)
    assert TOKEN not in str(refused.value)
    removed = _row("proj", {"location": http_git.url, "ref": "", "credentials_removed": True})
    with pytest.raises(AuthFailed, match="cairn sources set proj --token-env"):
        build_connector(removed, settings)
    assert http_git.authorized == 0


def test_clone_and_fetch_with_a_url_token_never_put_it_on_a_command_line(http_git, tmp_path, argv_log) -> None:
    """The GitLab connector builds such URLs in memory (never stored): the token still stays off argv."""
    url = http_git.url.replace("http://", f"http://oauth2:{TOKEN}@")
    connector = GitRepoConnector("proj", url, workdir=tmp_path / "clones")
    docs = _docs(connector.sync(None, {}))
    assert [d.path for d in docs] == ["app.py"]
    again = GitRepoConnector("proj", url, workdir=tmp_path / "clones")
    assert not _docs(again.sync(None, {d.id: d.version for d in docs}))
    assert any("clone" in argv for argv in argv_log) and any("fetch" in argv for argv in argv_log)
    assert not [argv for argv in argv_log if any(TOKEN in a for a in argv)]
    for config in (tmp_path / "clones").rglob("config"):
        assert TOKEN not in config.read_text()


def test_a_wrong_token_is_an_auth_failure_without_the_token_in_the_message(http_git, tmp_path) -> None:
    url = http_git.url.replace("http://", "http://oauth2:glpat-wrongwrongwrong0000@")
    with pytest.raises(AuthFailed) as failure:
        list(GitRepoConnector("proj", url, workdir=tmp_path / "clones").sync(None, {}))
    assert "glpat-wrongwrongwrong0000" not in str(failure.value)


def test_a_truncated_transfer_is_retried_and_a_lasting_one_fails_cleanly(http_git, tmp_path, monkeypatch) -> None:
    from connectors.base import Unavailable
    from connectors.git_process import GitRetry

    monkeypatch.setenv("REPO_TOKEN", TOKEN)
    token = lambda: TOKEN  # noqa: E731
    http_git.truncate_next = 2  # the first two packs are cut off halfway
    fast = GitRetry(attempts=4, backoff_base=0.01)
    connector = GitRepoConnector("proj", http_git.url, workdir=tmp_path / "clones", token=token, retry=fast)
    assert [d.path for d in _docs(connector.sync(None, {}))] == ["app.py"]
    assert http_git.truncated == 2
    http_git.commit({"lib.py": "def helper():\n    return 2\n"})
    http_git.truncate_next = 1  # a fetch is retried the same way
    again = GitRepoConnector("proj", http_git.url, workdir=tmp_path / "clones", token=token, retry=fast)
    assert [d.path for d in _docs(again.sync(None, {}))] == ["app.py", "lib.py"]
    assert http_git.truncated == 3
    http_git.truncate_next = 100  # never whole: the budget ends with a clear, token-free error
    fresh = GitRepoConnector("proj", http_git.url, workdir=tmp_path / "other", token=token,
                             retry=GitRetry(attempts=3, backoff_base=0.01))
    with pytest.raises(Unavailable) as failure:
        list(fresh.sync(None, {}))
    assert http_git.truncated == 6 and TOKEN not in str(failure.value)
    assert not list((tmp_path / "other").iterdir())  # no half-made clone is left behind
