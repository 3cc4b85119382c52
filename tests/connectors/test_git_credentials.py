"""Clone-URL credentials reach git through its environment, never its command line (visible in `ps`)."""
from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors import git_process
from connectors.base import AuthFailed
from connectors.git_repos import GitRepoConnector, split_credentials
from indexer.models import Document

TOKEN = "glpat-Zq8xVfT3mKp2Lr9sWd4Y"


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


@pytest.fixture()
def http_git(tmp_path: Path) -> Iterator[str]:
    """`git http-backend` behind a loopback server that wants Basic auth oauth2:TOKEN."""
    root = tmp_path / "served"
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "app.py").write_text("def handler():\n    return 'served over http'\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "init", cwd=work)
    root.mkdir()
    _git("clone", "-q", "--bare", str(work), str(root / "proj.git"), cwd=tmp_path)
    expected = "Basic " + base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()

    class Backend(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                   "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": "oauth2",
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "PATH": os.environ["PATH"]}
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                else:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/proj.git"
    server.shutdown()
    server.server_close()


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


def test_split_credentials_moves_user_and_password_into_the_environment() -> None:
    url, env = split_credentials(f"https://oauth2:{TOKEN}@gitlab.example.com:8443/g/p.git")
    assert url == "https://gitlab.example.com:8443/g/p.git"
    assert env["CAIRN_GIT_USERNAME"] == "oauth2" and env["CAIRN_GIT_PASSWORD"] == TOKEN
    assert split_credentials("https://gitlab.example.com/g/p.git") == ("https://gitlab.example.com/g/p.git", {})
    assert split_credentials("ssh://git@host/g/p.git")[1] == {}  # ssh keys, not passwords


def test_clone_and_fetch_with_a_token_never_put_it_on_a_command_line(http_git, tmp_path, argv_log) -> None:
    url = http_git.replace("http://", f"http://oauth2:{TOKEN}@")
    connector = GitRepoConnector("proj", url, workdir=tmp_path / "clones")
    docs = [i for i in connector.sync(None, {}) if isinstance(i, Document)]
    assert [d.path for d in docs] == ["app.py"]
    again = GitRepoConnector("proj", url, workdir=tmp_path / "clones")
    assert not [i for i in again.sync(None, {d.id: d.version for d in docs}) if isinstance(i, Document)]
    assert any("clone" in argv for argv in argv_log) and any("fetch" in argv for argv in argv_log)
    assert not [argv for argv in argv_log if any(TOKEN in a for a in argv)]
    # Nor does the token stay on disk in the clone's config.
    for config in (tmp_path / "clones").rglob("config"):
        assert TOKEN not in config.read_text()


def test_a_wrong_token_is_an_auth_failure_without_the_token_in_the_message(http_git, tmp_path) -> None:
    url = http_git.replace("http://", "http://oauth2:glpat-wrongwrongwrong0000@")
    with pytest.raises(AuthFailed) as failure:
        list(GitRepoConnector("proj", url, workdir=tmp_path / "clones").sync(None, {}))
    assert "glpat-wrongwrongwrong0000" not in str(failure.value)
