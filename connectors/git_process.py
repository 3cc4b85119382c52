"""Running git safely: no prompts, timeouts, credential-free errors, and a long-lived blob reader."""
from __future__ import annotations

import logging
import os
import random
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from connectors.base import AuthFailed, ConnectorError, SourceNotFound, Unavailable

log = logging.getLogger(__name__)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
# Variables that would point git at some other repository than the one we name explicitly.
_REPO_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
             "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")
_AUTH_HINTS = ("authentication failed", "could not read username", "could not read password",
               "permission denied", "access denied", "http basic: access denied")
_NOT_FOUND_HINTS = ("not found", "does not appear to be a git repository", "does not exist", "no such")
_UNAVAILABLE_HINTS = ("could not resolve", "failed to connect", "connection refused", "connection timed out",
                      "operation timed out", "network is unreachable", "the remote end hung up",
                      # a transfer cut short: curl 18/56, a pack that ends early
                      "early eof", "rpc failed", "unexpected disconnect", "transfer closed", "index-pack failed",
                      "invalid index-pack output", "connection reset", "unexpected eof", "http/2 stream",
                      "returned error: 502", "returned error: 503", "returned error: 504")


def redact(text: str) -> str:
    """Remove `user:token@` from every URL in a message."""
    return _USERINFO.sub(r"\1***@", text)


@dataclass(frozen=True)
class GitRetry:
    """How often a network git command (clone, fetch) is tried when the transfer fails, and the wait
    between tries: the same budget and backoff (doubling, full jitter) as the HTTP policy's defaults."""

    attempts: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


class GitTimeout(Unavailable):
    """A git command ran past its timeout (not retried: a slow transfer would only be slow again)."""


class MissingObject(ConnectorError):
    """The object store does not hold a blob the tree names (partial or damaged clone)."""


# On Linux, git runs under `setpriv --pdeathsig KILL`: the kernel kills it when the thread that started it
# dies, so a clone or fetch in flight ends with a server killed by SIGKILL instead of running on, orphaned.
# (The thread waits for git, so it lives as long as git does; git's own helpers end when git does.)
PARENT_DEATH = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class Git:
    """Runs git with a clean environment, no prompts, a timeout, and credential-free errors."""

    def __init__(self, timeout: float, secret: str = "") -> None:
        self.timeout = timeout
        # strings (the clone URL, a token) scrubbed from every error message
        self.secrets: list[str] = [secret] if secret else []
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        self.env = {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_NO_LAZY_FETCH": "1", "LC_ALL": "C"}

    def hide(self, secret: str) -> None:
        """Scrub `secret` from every message from now on."""
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, redact(secret) if "://" in secret else "***")
        return redact(text).strip()

    def run(self, args: Sequence[str], cwd: Path | None = None, timeout: float | None = None,
            env: Mapping[str, str] | None = None) -> bytes:
        """Run `git args`; raise a ConnectorError subclass (by the failure's kind) when it fails."""
        # A new session has no controlling terminal, so ssh cannot prompt either; killing the
        # group on timeout also ends helpers (ssh, git-remote-https) git started.
        verb = next((a for a in args if not a.startswith("-")), "")
        try:
            proc = subprocess.Popen([*PARENT_DEATH, "git", *args], cwd=cwd, env={**self.env, **(env or {})},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            raise ConnectorError(f"cannot run git: {exc.strerror}") from None
        try:
            out, err = proc.communicate(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GitTimeout(f"git {verb} timed out after {timeout or self.timeout:.0f}s") from None
        if proc.returncode != 0:
            message = " ".join(self.clean(err.decode("utf-8", "replace")).split())[-500:]
            raise _classify(message)(f"git {verb} failed: {message}")
        return out

    def run_retrying(self, args: Sequence[str], retry: GitRetry, env: Mapping[str, str] | None = None,
                     before_retry: Callable[[], None] | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> bytes:
        """`run`, tried again while git fails with a transfer error (Unavailable: dropped, cut short,
        timed out); an auth or not-found failure is raised at once."""
        rng = random.Random()
        for attempt in range(1, retry.attempts + 1):
            try:
                return self.run(args, env=env)
            except GitTimeout:
                raise
            except Unavailable as exc:
                if attempt >= retry.attempts:
                    raise
                wait = retry.delay(attempt, rng)
                log.info("git transfer failed on attempt %d (%s), retrying in %.1fs", attempt, exc, wait)
                if before_retry:
                    before_retry()
                sleep(wait)
        raise AssertionError("unreachable")

    def open_batch(self, git_dir: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"], env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                bufsize=0, start_new_session=True)


def _classify(message: str) -> type[ConnectorError]:
    lowered = message.lower()
    if any(hint in lowered for hint in _AUTH_HINTS):
        return AuthFailed
    if any(hint in lowered for hint in _NOT_FOUND_HINTS):
        return SourceNotFound
    if any(hint in lowered for hint in _UNAVAILABLE_HINTS):
        return Unavailable
    return ConnectorError


class BlobReader:
    """One long-lived `git cat-file --batch` process; every read has a deadline."""

    def __init__(self, git: Git, git_dir: str) -> None:
        self.git, self.git_dir = git, git_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = bytearray()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None:
            stdin, stdout = self._pipes()
            proc, self.proc = self.proc, None
            stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            stdout.close()
        self.buf.clear()

    def read(self, sha: str) -> bytes:
        """The blob's bytes; MissingObject when the store lacks it. A broken process is restarted next time."""
        if self.proc is None:
            self.proc = self.git.open_batch(self.git_dir)
        try:
            self._pipes()[0].write(sha.encode("ascii") + b"\n")
            header = self._read_line().split()
            if len(header) == 2 and header[1] == b"missing":
                raise MissingObject(f"object {sha} is missing")
            if len(header) != 3 or header[1] != b"blob":
                raise ConnectorError(f"unexpected cat-file reply for {sha}")
            return self._read_exact(int(header[2]) + 1)[:-1]
        except MissingObject:
            raise
        except (OSError, ValueError, ConnectorError):
            self.close()
            raise

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        """The running process's stdin and stdout (open_batch opens both)."""
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            raise ConnectorError("git cat-file is not running")
        return self.proc.stdin, self.proc.stdout

    def _read_line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            self._fill(4096)
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill(size - len(self.buf))
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def _fill(self, want: int) -> None:
        fd = self._pipes()[1].fileno()
        ready, _, _ = select.select([fd], [], [], self.git.timeout)
        if not ready:
            raise Unavailable(f"git cat-file gave no answer in {self.git.timeout:.0f}s")
        data = os.read(fd, max(want, 65536))
        if not data:
            raise ConnectorError("git cat-file exited unexpectedly")
        self.buf += data
