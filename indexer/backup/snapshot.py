"""Backup and restore of an embedded node: a consistent copy of the catalog and the serving stores.

A backup pauses writes (the pipeline's write lock; searches keep running), commits tantivy and
flushes Qdrant Edge, copies the SQLite catalog with SQLite's online backup API, copies the active
generation's tantivy shards and Edge shard, then releases the lock and writes `manifest.json`
(versions, model, generation, counts, a sha256 per file) last. A generation being built in the
background is not part of a backup: its rows are dropped from the copied catalog, so a restored
node starts that build again.

Restore (indexer/backup/restore.py) puts a backup back into a stopped node's data directory."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from importlib import metadata as dist_metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from indexer.backup.files import (
    FileEntry,
    copy_file,
    copy_tantivy_index,
    copy_tree,
    hash_file,
    make_private,
    staging_dir,
)
from indexer.models import INDEX_VERSION
from indexer.settings import Settings
from indexer.stores import FullTextIndex, VectorStore
from indexer.stores.backends import vector_backend

if TYPE_CHECKING:
    from indexer.services import IndexServices

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1  # of the backup directory itself; bump when its layout changes
CATALOG_FILE = "catalog.sqlite3"
CACHE_DIRS = frozenset({"repos"})  # clones: the next sync fetches them again
REPLACED_PREFIX = "replaced-"
EDGE_MARKER = "edge_config.json"


class BackupError(RuntimeError):
    """A backup or restore could not be made; nothing was changed."""


class BackupTargetError(BackupError):
    """The destination is unusable: not absolute, not empty, inside the data dir, or in use."""


class BackupUnsupported(BackupError):
    """This node's stores are not embedded (PostgreSQL catalog or Qdrant server): see the README."""


class CorruptBackup(BackupError):
    """The backup is incomplete or was changed after it was written."""


class IncompatibleBackup(BackupError):
    """The backup was written by a newer Cairn than this one."""


@dataclass(frozen=True)
class Manifest:
    """What a backup holds. `layout` maps catalog/fulltext/vectors to their path inside the backup,
    which is also their path inside the data directory (the catalog goes where settings say)."""

    format: int
    cairn_version: str
    index_version: int
    embedding_model: str
    vector_dim: int
    generation: dict[str, Any] | None
    created_at: str
    paused_seconds: float
    layout: dict[str, str | None]
    counts: dict[str, int]
    files: dict[str, dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        missing = [name for name in cls.__dataclass_fields__ if name not in data]
        if missing:
            raise ValueError(f"manifest lacks {', '.join(missing)}")
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def summary(self) -> dict[str, Any]:
        """The manifest without its file list (what the API and CLI print)."""
        return {k: v for k, v in asdict(self).items() if k != "files"} | {
            "file_count": len(self.files), "bytes": sum(int(f["size"]) for f in self.files.values())}


@dataclass(frozen=True)
class ActiveStores:
    catalog: Path
    fulltext: Path
    vectors: Path | None  # None when the active generation serves keyword search only


def cairn_version() -> str:
    try:
        return dist_metadata.version("cairn")
    except dist_metadata.PackageNotFoundError:
        return "unknown"


def sqlite_path(settings: Settings) -> Path:
    """The catalog file of an embedded node; other deployments are backed up with their own tools."""
    url = settings.catalog_url
    if not url.startswith("sqlite:///") or not vector_backend(settings).owner_writes:
        raise BackupUnsupported(
            "this node is not embedded (catalog on PostgreSQL or vectors on a Qdrant server): back up with "
            "pg_dump, Qdrant snapshots and the tantivy shards as docs/operating.md describes")
    return Path(url.removeprefix("sqlite:///"))


def active_stores(services: IndexServices) -> ActiveStores:
    """Where the serving generation's stores are, read from the open services (not a fixed layout)."""
    pipeline = services.pipeline
    vectors = pipeline.vectors.path
    return ActiveStores(sqlite_path(services.settings), Path(pipeline.fulltext.root),
                        Path(vectors) if vectors is not None else None)


def check_new_directory(path: Path, data_dir: Path) -> Path:
    """`path` must be absolute, outside the data directory, and either absent (its parent existing)
    or an empty directory."""
    path = Path(path)
    if not path.is_absolute():
        raise BackupTargetError(f"backup path must be absolute, got {str(path)!r}")
    path = Path(os.path.normpath(path))
    if path == Path(data_dir).resolve() or Path(data_dir).resolve() in path.parents:
        raise BackupTargetError(f"backup path {path} is inside the data directory {data_dir}")
    if path.exists():
        if not path.is_dir() or any(path.iterdir()):
            raise BackupTargetError(f"backup path {path} exists and is not an empty directory")
    elif not path.parent.is_dir():
        raise BackupTargetError(f"the parent directory of {path} does not exist")
    return path


def _inside(data_dir: Path, path: Path) -> str:
    try:
        return PurePosixPath(path.resolve().relative_to(Path(data_dir).resolve())).as_posix()
    except ValueError:
        return path.name


# -- backup -----------------------------------------------------------------------------------------

def create_backup(services: IndexServices, destination: Path) -> Manifest:
    """Write a consistent backup of the open services into `destination` (a new or empty directory)."""
    target = check_new_directory(destination, services.settings.data_dir)
    stores = active_stores(services)
    staging = staging_dir(target.parent, target.name)
    try:
        manifest = _write_backup(services, stores, staging)
        make_private(staging)
        try:
            os.rename(staging, target)  # atomic; replaces an empty directory
        except OSError as exc:
            raise BackupTargetError(f"backup path {target} was filled by someone else meanwhile: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("backup written to %s: %d files, writes paused %.2f s", target, len(manifest.files),
             manifest.paused_seconds)
    return manifest


def _write_backup(services: IndexServices, stores: ActiveStores, staging: Path) -> Manifest:
    data_dir = Path(services.settings.data_dir)
    fulltext_dir = _inside(data_dir, stores.fulltext)
    layout = {"catalog": CATALOG_FILE, "fulltext": fulltext_dir,
              "vectors": _inside(data_dir, stores.vectors) if stores.vectors else None}
    files: dict[str, FileEntry] = {}
    pipeline = services.pipeline
    with pipeline.write_lock:
        paused = time.monotonic()
        pipeline.fulltext.commit()
        pipeline.vectors.flush()
        copy_sqlite(stores.catalog, staging / CATALOG_FILE)
        files.update(_copy_fulltext(stores.fulltext, staging, fulltext_dir))
        if stores.vectors is not None and layout["vectors"]:
            copied = copy_tree(stores.vectors, staging / layout["vectors"])
            files.update({f"{layout['vectors']}/{rel.as_posix()}": e for rel, e in copied.items()})
        counts = store_counts(services.catalog.counts(), pipeline.fulltext, pipeline.vectors)
        paused = time.monotonic() - paused
    generation = forget_building_generation(staging / CATALOG_FILE)
    files[CATALOG_FILE] = hash_file(staging / CATALOG_FILE)
    manifest = Manifest(
        format=FORMAT, cairn_version=cairn_version(), index_version=INDEX_VERSION,
        embedding_model=str(generation.get("model") if generation else services.embedder.model_name),
        vector_dim=int(services.embedder.dim), generation=generation,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), paused_seconds=round(paused, 3),
        layout=layout, counts=counts, files={k: v.as_dict() for k, v in sorted(files.items())})
    _write_synced(staging / MANIFEST, manifest.to_json())
    return manifest


def store_counts(catalog_counts: dict[str, int], fulltext: FullTextIndex, vectors: VectorStore) -> dict[str, int]:
    return {"documents": int(catalog_counts["documents"]), "chunks": int(catalog_counts["chunks"]),
            "fulltext_chunks": len(fulltext.ids()), "vector_points": len(vectors.ids())}


def copy_sqlite(src: Path, dst: Path) -> None:
    """A transactionally consistent copy through SQLite's online backup API (never a file copy of a
    live WAL database), left as one self-contained file (no -wal)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(str(src), timeout=30)
    target = sqlite3.connect(str(dst))
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def forget_building_generation(catalog_file: Path) -> dict[str, Any] | None:
    """In the copied catalog: drop a generation still being built (its stores are not in the backup,
    so a restored node starts the build again). Returns the active generation's record."""
    from indexer.catalog.db import make_engine
    from indexer.generations.state import BUILDING_KEY, GenerationRows, read_generations, write_meta

    engine = make_engine(f"sqlite:///{catalog_file}")
    try:
        active, building = read_generations(engine)
        if building is not None:
            GenerationRows(engine).drop(building.id)
            write_meta(engine, {BUILDING_KEY: None})
    finally:
        engine.dispose()
    with sqlite3.connect(str(catalog_file)) as conn:  # back to one file after SQLAlchemy's WAL pragma
        conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return asdict(active) if active is not None else None


def _copy_fulltext(root: Path, staging: Path, rel_root: str) -> dict[str, FileEntry]:
    """Each tantivy index under `root` at its last commit, plus the shards' other files (source names)."""
    out: dict[str, FileEntry] = {}
    index_dirs = sorted({p.parent for p in root.rglob("meta.json")})
    for index_dir in index_dirs:
        rel = index_dir.relative_to(root).as_posix()
        for name, entry in copy_tantivy_index(index_dir, staging / rel_root / rel).items():
            out[f"{rel_root}/{rel}/{name.as_posix()}"] = entry
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(d in path.parents for d in index_dirs):
            rel = path.relative_to(root).as_posix()
            out[f"{rel_root}/{rel}"] = copy_file(path, staging / rel_root / rel)
    return out


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
