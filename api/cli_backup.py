"""`cairn backup` and `cairn restore`: a consistent copy of the embedded index, and putting one back.

With a running server (`--url`/CAIRN_URL and an admin CAIRN_TOKEN) the server writes the backup on
its own disk, under its CAIRN_BACKUP_DIR, without stopping (it owns the Qdrant Edge shard). Without
one, the CLI opens the data directory itself. Restore is always local, into a stopped node."""
from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from api.cli_errors import fail as _fail
from api.client import CairnClient
from indexer.backup.restore import restore_backup
from indexer.backup.snapshot import BackupError, create_backup
from indexer.settings import Settings
from indexer.stores import StoreError

out = Console()
err = Console(stderr=True)


def _show(summary: dict, as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    counts = summary.get("counts", {})
    out.print(f"{verb} {summary['path']}: {summary['file_count']} files, {summary['bytes']} bytes; "
              f"{counts.get('documents', 0)} documents, {counts.get('chunks', 0)} chunks "
              f"(index v{summary['index_version']}, {summary['embedding_model']})")


def backup(ctx: typer.Context,
           path: str = typer.Argument(..., help="A new or empty directory (with a server: an absolute path on "
                                                "the server's machine, under its CAIRN_BACKUP_DIR)."),
           as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
           url: str | None = typer.Option(None, help="A running server (default: CAIRN_URL).")) -> None:
    """Back up the index (catalog, tantivy shards, Qdrant Edge) consistently, while it keeps serving."""
    settings: Settings = ctx.obj
    target = url or settings.url
    if target:
        if not os.path.isabs(path):
            _fail("with a server, PATH must be an absolute path on the server's machine", code=2)
        _show(CairnClient(target, settings.token).backup(path), as_json, "backup written to")
        return
    from indexer.services import IndexServices

    destination = Path(path).expanduser().absolute()
    try:
        services = IndexServices.open(settings)
    except StoreError as exc:
        _fail(str(exc), hint="if a Cairn server owns this data directory, give --url (or set CAIRN_URL)")
    try:
        manifest = create_backup(services, destination)
    except BackupError as exc:
        _fail(str(exc))
    finally:
        services.close()
    _show(manifest.summary() | {"path": str(destination)}, as_json, "backup written to")


def restore(ctx: typer.Context,
            path: Path = typer.Argument(..., help="A backup directory written by `cairn backup`."),
            force: bool = typer.Option(False, "--force", help="Restore over an existing index (it is moved "
                                                              "aside into DATA_DIR/replaced-<time>/, not deleted)."),
            as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON.")) -> None:
    """Restore a backup into this node's data directory (the node must be stopped); checksums are verified first."""
    settings: Settings = ctx.obj
    try:
        manifest = restore_backup(path.expanduser().absolute(), settings, force=force)
    except BackupError as exc:
        _fail(str(exc))
    _show(manifest.summary() | {"path": str(settings.data_dir)}, as_json, "restored into")
