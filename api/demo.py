"""The quick start: index a repository, mint a token, print what to open and type, then serve."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from rich.console import Console

from api.cli_errors import fail
from api.progress import SyncProgress
from api.tokens import TokenStore
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

EXAMPLE_QUERY = "how are chunk ids derived so re-indexing is idempotent"


def repository_root(path: Path) -> Path:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        fail(f"{path} is not inside a git repository", hint="give --path the folder of a git repository")
    return Path(proc.stdout.strip())


def run_demo(settings: Settings, path: Path, port: int | None, console: Console) -> None:
    import uvicorn

    from api.app import create_app

    root = repository_root(path)
    name = root.name
    port = port or settings.port
    settings = settings.for_serving()
    services = IndexServices.open(settings)
    services.catalog.upsert_source(name, "git", {"location": str(root), "ref": ""}, ["public"])
    with SyncProgress(console, pending=lambda: services.catalog.pending_chunk_count(name)) as progress:
        counts = run_sync_job(services, name, observe=progress.update)
    token, _ = TokenStore(services.catalog.engine).create("demo", ["demo"], admin=True, name="quick start")
    base = f"http://{settings.host}:{port}"
    body = shlex.quote(f'{{"query": "{EXAMPLE_QUERY}", "limit": 5}}')
    console.print(f"\nIndexed [bold]{name}[/bold]: {counts.files_changed} files changed, "
                  f"{counts.chunks_written} chunks written, {counts.chunks_embedded} embedded "
                  f"in {counts.seconds:.1f}s. Data directory: {settings.data_dir}\n")
    console.print(f"Serving on [bold]{base}[/bold]  (API description: {base}/openapi.json)", soft_wrap=True)
    console.print(f"Admin token for this demo (shown once): [bold]{token}[/bold]\n", soft_wrap=True)
    console.print(f"Open {base}/ in a browser, sign in with that token and type a question, e.g. "
                  f"[italic]{EXAMPLE_QUERY}[/italic]\n", soft_wrap=True)
    console.print("Or, in another terminal, type:\n")
    console.print(f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
                  f"       -d {body} {base}/v1/search\n", markup=False, highlight=False, soft_wrap=True)
    console.print(f"  CAIRN_URL={base} CAIRN_TOKEN={token} .venv/bin/cairn search "
                  f"{shlex.quote(EXAMPLE_QUERY)}\n", markup=False, highlight=False, soft_wrap=True)
    console.print("Press Ctrl+C to stop.")
    try:
        uvicorn.run(create_app(settings, services=services), host=settings.host, port=port, log_level="warning")
    finally:
        services.close()
