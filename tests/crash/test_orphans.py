"""kill -9 of a real `cairn serve` while it indexes: every process it started exits with it (the vector
process, the fork server of the indexing workers, the workers, multiprocessing's resource tracker, git),
and the job resumed by the next start reports the counts of the whole job, not only of its second run."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from crash_harness import SOURCE, Server, seed, snapshot

FILES = 800  # ~1 KB each: lexical batches big enough for the indexing workers (indexer/pipeline/prepare.py)
KINDS = {"vector process": "indexer.stores.edge_process", "fork server": "multiprocessing.forkserver",
         "resource tracker": "multiprocessing.resource_tracker", "git": "cat-file"}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    started: int  # clock ticks after boot: tells a process from a later one given the same pid
    state: str
    command: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return Proc(pid, int(fields[1]), int(fields[19]), fields[0], command.strip())


def descendants(root: int) -> list[Proc]:
    procs = [p for p in (read_proc(int(d)) for d in os.listdir("/proc") if d.isdigit()) if p is not None]
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def alive(proc: Proc) -> bool:
    now = read_proc(proc.pid)
    return now is not None and now.started == proc.started and now.state != "Z"


def kinds(tree: list[Proc]) -> dict[str, int]:
    """How many of each kind of child; fork server children are the indexing workers."""
    found = {kind: sum(marker in p.command for p in tree) for kind, marker in KINDS.items()}
    servers = {p.pid for p in tree if KINDS["fork server"] in p.command and p.ppid not in {q.pid for q in tree
                                                                                              if KINDS["fork server"] in q.command}}
    found["worker"] = sum(p.ppid in servers for p in tree)
    found["fork server"] -= found["worker"]  # workers are forks of it and show its command line
    return found


@pytest.fixture
def wide_repo(make_repo):
    repo = make_repo("big")
    for i in range(FILES):
        body = "".join(f"    total_{k} = items[{k}] * {i + k}  # step {k} of module {i}\n" for k in range(20))
        repo.write(f"pkg{i % 12}/module_{i}.py", f"def compute_{i}(items):\n{body}    return total_0\n")
    repo.write("README.md", "# Wide\n\nGenerated for the orphan test.\n")
    repo.commit("many files")
    return repo


def test_kill_9_leaves_no_process_behind_and_the_resumed_job_counts_the_whole_job(tmp_path, wide_repo, embedder):
    data = tmp_path / "data"
    server = Server(data, seed(data, wide_repo.root, embedder), tmp_path / "serve.log").start()
    try:
        job_id = server.call("POST", f"/v1/sources/{SOURCE}/reindex", {})["id"]
        deadline = time.monotonic() + 120
        while True:  # until every kind of child exists, the job still running
            tree = descendants(server.proc.pid)
            found = kinds(tree)
            if all(found.values()):
                break
            job = server.job(job_id)
            assert job["state"] == "running" and time.monotonic() < deadline, (found, job)
            time.sleep(0.05)
        assert server.job(job_id)["state"] == "running"
        server.kill9()

        deadline = time.monotonic() + 20
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [f"{p.pid} {p.command[:120]}" for p in tree if alive(p)]
        assert left == [], f"still running after kill -9 of the server ({found}): {left}"

        server.start()
        done = server.wait_for(job_id, lambda j: j["state"] not in ("queued", "running"), timeout=300, poll=0.5)
    finally:
        server.stop()
    state = snapshot(data, embedder)
    assert done["state"] == "succeeded", done
    counts = done["counts"]
    assert counts["files_seen"] == counts["files_changed"] == len(state.documents) == FILES + 1
    assert counts["chunks_written"] == counts["chunks_embedded"] == len(state.catalog_chunks)
