"""Admin operations on the node itself: POST /v1/admin/backup writes a consistent backup of the
embedded index onto the server's disk, under CAIRN_BACKUP_DIR (an admin token never chooses an
arbitrary place on the server's filesystem)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth import admin
from api.errors import BadRequest, Conflict
from indexer.backup.snapshot import BackupTargetError, BackupUnsupported, create_backup
from indexer.models import Principal

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin")


class BackupIn(BaseModel):
    path: str = Field(..., min_length=1, max_length=4096,
                      description="Absolute path on the server of a new or empty directory under CAIRN_BACKUP_DIR.")


class BackupOut(BaseModel):
    path: str
    cairn_version: str
    index_version: int
    embedding_model: str
    generation: dict[str, Any] | None
    created_at: str
    counts: dict[str, int]
    file_count: int
    bytes: int
    paused_seconds: float
    seconds: float


def backup_target(raw: str, backup_dir: Path | None) -> Path:
    """The requested directory, which must be absolute and inside the configured backup directory."""
    if backup_dir is None:
        raise Conflict("backups over the API are off on this server: set CAIRN_BACKUP_DIR, or run "
                       "`cairn backup PATH` on the server's machine with the server stopped")
    if "\x00" in raw or not os.path.isabs(raw):
        raise BadRequest(f"backup path must be an absolute path, got {raw!r}")
    root = Path(backup_dir).resolve()
    path = Path(raw)
    resolved = path.parent.resolve() / path.name  # the parent's symlinks resolved; the target is new
    if root not in resolved.parents:
        raise BadRequest(f"backup path must be inside the backup directory {root}")
    return resolved


@router.post("/backup", response_model=BackupOut, status_code=201)
def backup(body: BackupIn, request: Request, who: Principal = Depends(admin)) -> BackupOut:
    """Pause index writes (searches go on), copy the catalog and the serving stores, write the manifest."""
    services = request.app.state.services
    target = backup_target(body.path, request.app.state.settings.backup_dir)
    started = time.perf_counter()
    try:
        manifest = create_backup(services, target)
    except BackupTargetError as exc:
        raise BadRequest(str(exc)) from exc
    except BackupUnsupported as exc:
        raise Conflict(str(exc)) from exc
    request.app.state.audit.record(who, "admin.backup", target=str(target))
    summary = manifest.summary()
    return BackupOut(path=str(target), seconds=round(time.perf_counter() - started, 3),
                     **{k: summary[k] for k in BackupOut.model_fields if k in summary})
