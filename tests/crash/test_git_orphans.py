"""A git clone or fetch in flight ends when the process that started it dies by SIGKILL (connectors/git_process.py
runs git under `setpriv --pdeathsig KILL` on Linux): no orphaned git keeps the transfer going."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.git_process import PARENT_DEATH

pytestmark = pytest.mark.skipif(not PARENT_DEATH, reason="setpriv (util-linux) is not installed")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_git_in_flight_dies_with_the_process_that_started_it(tmp_path):
    hang = socket.socket()  # a "remote" that accepts and never answers: git waits on it
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    url = f"http://127.0.0.1:{hang.getsockname()[1]}/repo.git"
    code = ("from connectors.git_process import Git\n"
            f"Git(timeout=300).run(['ls-remote', {url!r}])\n")
    starter = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 60
        git = []
        while not git and time.monotonic() < deadline:
            git = _children(starter.pid)
            time.sleep(0.2)
        assert git, "git never started"
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in git) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in git), "git outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
        hang.close()
