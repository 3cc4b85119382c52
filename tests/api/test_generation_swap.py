"""Through the real app on a real server: searches running while a new index generation is built and
swapped in never fail and never come back empty."""
from __future__ import annotations

import threading
import time
from typing import Self

import httpx
from api_harness import auth, serve, token

import indexer.services as services_module
from api.app import create_app
from indexer.generations.state import read_generations
from indexer.models import INDEX_VERSION
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

QUERIES = ("parse config value", "retry backoff delay", "Worker drain queue")


def _corpus(repo) -> None:
    for i in range(6):
        repo.write(f"app/config_{i}.py", f'''"""Configuration file parsing, part {i}."""


def parse_config_value_{i}(raw):
    """Parse config value {i}."""
    key, _, value = raw.partition("=")
    return key.strip(), value


def retry_backoff_delay_{i}(attempt):
    """Retry backoff delay, capped."""
    return min(60, 2 ** attempt)
''')
    repo.write("app/worker.py", "class Worker:\n    def drain_queue(self, queue):\n"
                                "        return [item for item in queue]\n")
    repo.commit("corpus")


class Searches:
    """Client threads searching in a loop; every answer's status and hit count is kept."""

    def __init__(self, url: str, tok: str, threads: int = 3) -> None:
        self.url, self.tok, self.stop = url, tok, threading.Event()
        self.answers: list[tuple[float, float, str, int, int]] = []  # (start, end, query, status, hits)
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _loop(self, n: int) -> None:
        with httpx.Client(base_url=self.url, headers=auth(self.tok), timeout=60) as client:
            i = n
            while not self.stop.is_set():
                query = QUERIES[i % len(QUERIES)]
                started = time.monotonic()
                response = client.post("/v1/search", json={"query": query, "limit": 5})
                hits = len(response.json()["hits"]) if response.status_code == 200 else -1
                self.answers.append((started, time.monotonic(), query, response.status_code, hits))
                i += 1


def test_searches_during_a_generation_swap_never_fail_or_come_back_empty(tmp_path, embedder, make_repo,
                                                                         monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    repo = make_repo("repo")
    _corpus(repo)
    with monkeypatch.context() as patch:
        patch.setattr(services_module, "INDEX_VERSION", INDEX_VERSION - 1)
        old = IndexServices.open(settings, embedder=embedder)
        old.catalog.upsert_source("repo", "git", {"location": str(repo.root), "ref": ""}, ["public"])
        run_sync_job(old, "repo")
        old_ids = old.fulltext.ids()
        old.close()

    # Finer chunks too, so every chunk id changes at the swap: stale hydration would show as empty.
    settings = settings.model_copy(update={"max_chunk_lines": 5, "min_chunk_lines": 1})
    svc = IndexServices.open(settings, embedder=embedder)
    reached, release, swapped_at = threading.Event(), threading.Event(), []
    svc.generations.batch_docs = 2
    svc.generations.after_batch = lambda progress: (reached.set(), release.wait(60))
    try:
        tok = token(svc, "reader")
        with serve(create_app(settings, services=svc)) as url, Searches(url, tok) as searches:
            assert reached.wait(60), "the background build did not start with the app"
            # Runs after the app's listener (the new searcher already serves): linger, so searches of the
            # new generation run before the swap's last catalog transaction.
            svc.generations.on_swap(lambda: (swapped_at.append(time.monotonic()), time.sleep(0.5)))
            time.sleep(1.0)  # searches against the old generation while the build waits
            admin = auth(token(svc, "boss", admin=True))
            state = httpx.get(f"{url}/ui/admin/state", headers=admin, timeout=30).json()
            assert state["stats"]["generation"].startswith("1 (building 2: ")
            release.set()
            assert svc.generations.wait(120)
            settled = time.monotonic()
            state = httpx.get(f"{url}/ui/admin/state", headers=admin, timeout=30).json()
            assert state["stats"]["generation"] == "2"
            time.sleep(1.0)  # and against the new one
        assert swapped_at, "the generation was not swapped in"
        swap = swapped_at[0]
        assert read_generations(svc.catalog.engine)[0].id == 2
        bad = [a for a in searches.answers if a[3] != 200 or a[4] == 0]
        assert not bad, bad[:5]
        assert any(end < swap for _, end, *_ in searches.answers)
        assert any(start > swap for start, *_ in searches.answers)
        assert len(searches.answers) > 20
        assert old_ids - svc.fulltext.ids(), "the new chunking should have changed chunk ids"
        # Each answer is a whole answer of one generation or the other, never a partly hydrated one.
        whole = {(q, n) for start, end, q, _, n in searches.answers if end < swap or start > settled}
        assert all((q, n) in whole for _, _, q, _, n in searches.answers)
    finally:
        svc.close()
