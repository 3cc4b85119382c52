"""The API tests' harness: the small corpus's files, tokens, and a real uvicorn server in a thread."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from api.tokens import TokenStore
from indexer.models import Access, Document
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

RETRY_PY = '''"""Retries with exponential backoff."""
import random
import time


def retry_with_backoff(call, attempts=5, base=0.5):
    """Call `call` until it succeeds, sleeping with backoff between attempts."""
    for attempt in range(attempts):
        try:
            return call()
        except ConnectionError:
            delay = backoff_delay(attempt, base)
            time.sleep(delay)
    raise RuntimeError("retry_with_backoff gave up")
# Jitter keeps clients from retrying in lockstep (no blank line: the two chunks touch).
def backoff_delay(attempt, base=0.5):
    """Exponential backoff delay with jitter for one retry attempt."""
    ceiling = base * (2 ** attempt)
    jitter = random.random() * ceiling
    total = ceiling + jitter
    if total > 60:
        total = 60
    return total
'''

INVOICE_PY = '''class InvoiceRenderer:
    """Renders invoices for orders."""

    def render_invoice(self, order):
        return f"invoice {order.id}: {order.total}"
'''

ROLLOUT_PY = '''def rollout_canary(service):
    """Deploy a canary and watch it; the secret ops rollout plan."""
    return "canary invoice rollout backoff"
'''

WEB_URL = "https://gitlab.example.com/platform/billing/-/blob/0123abc/payments/refund.py"
REFUND_PY = "def refund_payment(payment):\n    return payment.amount * -1\n"


GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """A real repository at `root` with these files in one commit."""
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content, encoding="utf-8")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "corpus"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)
    return root


def token(services, user: str = "u", groups=(), admin: bool = False, **kw) -> str:
    return TokenStore(services.catalog.engine).create(user, list(groups), admin=admin, **kw)[0]


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@contextlib.contextmanager
def serve(app, sock: socket.socket | None = None) -> Iterator[str]:
    """The app on a real uvicorn server on a free loopback port (or on `sock`, bound already: its URL can
    go into the app's settings first), in a thread; yields its base URL."""
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def build_corpus(root: Path, embedder) -> tuple[Settings, IndexServices]:
    """Sources `eng` (group eng: pkg/retry.py, billing/invoice.py), `ops` (group ops: deploy/rollout.py)
    and `web` (group eng: a document with a GitLab link), indexed into a data directory under `root`."""
    settings = Settings(data_dir=root / "data")
    services = IndexServices.open(settings, embedder=embedder)
    repos = {"eng": git_repo(root / "eng", {"pkg/retry.py": RETRY_PY, "billing/invoice.py": INVOICE_PY}),
             "ops": git_repo(root / "ops", {"deploy/rollout.py": ROLLOUT_PY})}
    for name, repo in repos.items():
        services.catalog.upsert_source(name, "git", {"location": str(repo), "ref": ""}, [f"group:{name}"])
        run_sync_job(services, name)
    services.catalog.upsert_source("web", "git", {"location": "https://gitlab.example.com/platform/billing.git"},
                                   ["group:eng"])
    doc = Document(id="web:payments/refund.py", source="web", path="payments/refund.py", content=REFUND_PY,
                   version="1", access=Access.of("group:eng"), language="python", url=WEB_URL)
    services.pipeline.apply_lexical([doc])
    services.pipeline.embed_pending("web")
    return settings, services


def index_document(services, source: str, path: str, content: str, access: list[str]) -> str:
    """One document in source `source` (registered with `access` if new; never synced: its location is a
    remote that does not exist) whose chunks carry `access`, indexed into both engines; returns its id."""
    if services.catalog.get_source(source) is None:
        services.catalog.upsert_source(source, "git", {"location": f"https://git.example.com/{source}.git"}, access)
    doc = Document(id=f"{source}:{path}", source=source, path=path, content=content, version="1",
                   access=Access.of(*access), language="python")
    services.pipeline.apply_lexical([doc])
    services.pipeline.embed_pending(source)
    return doc.id
