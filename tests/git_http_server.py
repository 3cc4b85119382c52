"""`git http-backend` behind a loopback HTTP server that wants Basic auth `oauth2:<token>`: a private
repository over smart HTTP, as GitLab serves one. It can also cut answers short (a truncated transfer)."""
from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@dataclass
class GitServer:
    """The served repository's URL (no credentials), its work tree, and what the server saw."""

    url: str
    work: Path
    bare: Path
    authorized: int = 0  # requests that carried the right token
    refused: int = 0  # requests answered 401
    truncate_next: int = 0  # this many pack answers are cut off halfway (then the connection closes)
    truncated: int = 0
    seen_paths: list[str] = field(default_factory=list)

    def commit(self, files: dict[str, str], message: str = "change") -> None:
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        git("add", ".", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", str(self.bare), "HEAD:main", cwd=self.work)


def _handler(state: GitServer, root: Path, expected: str) -> type[BaseHTTPRequestHandler]:
    class Backend(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            state.seen_paths.append(self.path)
            if self.headers.get("Authorization") != expected:
                state.refused += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            state.authorized += 1
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                   "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": "oauth2",
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "PATH": os.environ["PATH"]}
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                else:
                    headers.append((name, value))
            cut = path.endswith("git-upload-pack") and state.truncate_next > 0
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if cut:  # promise the whole pack, send half, hang up
                state.truncate_next -= 1
                state.truncated += 1
                self.wfile.write(payload[:len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Backend


@contextlib.contextmanager
def private_repo(tmp_path: Path, token: str, files: dict[str, str] | None = None) -> Iterator[GitServer]:
    """A repository served over HTTP that only answers requests authorized with `oauth2:<token>`."""
    root, work = tmp_path / "served", tmp_path / "work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    for name, text in (files or {"app.py": "def handler():\n    return 'served over http'\n"}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    root.mkdir()
    git("clone", "-q", "--bare", str(work), str(root / "proj.git"), cwd=tmp_path)
    expected = "Basic " + base64.b64encode(f"oauth2:{token}".encode()).decode()
    state = GitServer(url="", work=work, bare=root / "proj.git")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, root, expected))
    state.url = f"http://127.0.0.1:{server.server_port}/proj.git"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
