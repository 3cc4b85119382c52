"""Restore of a backup written by indexer/backup/snapshot.py into a stopped embedded node's data directory.

The manifest and every checksum are verified before anything is touched; the files are copied into
a staging directory inside the data directory, the copied catalog, tantivy and Qdrant Edge are
opened and their counts compared with the manifest, and only then moved into place. With `force`
the previous index moves aside into `replaced-<time>/`; it is never deleted."""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sqlite3
from pathlib import Path, PurePosixPath

from indexer.backup.files import FileEntry, copy_file, hash_file, staging_dir
from indexer.backup.snapshot import (
    CACHE_DIRS,
    CATALOG_FILE,
    EDGE_MARKER,
    FORMAT,
    MANIFEST,
    REPLACED_PREFIX,
    BackupTargetError,
    CorruptBackup,
    IncompatibleBackup,
    Manifest,
    sqlite_path,
)
from indexer.models import INDEX_VERSION
from indexer.settings import Settings

log = logging.getLogger(__name__)


def read_manifest(backup: Path) -> Manifest:
    """The backup's manifest, checked for a format and INDEX_VERSION this Cairn can open."""
    try:
        manifest = Manifest.from_json((Path(backup) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptBackup(f"{backup} is not a Cairn backup (no {MANIFEST}; an interrupted backup has none)") from None
    except (ValueError, TypeError) as exc:
        raise CorruptBackup(f"{backup}/{MANIFEST} is unreadable: {exc}") from exc
    if manifest.format > FORMAT:
        raise IncompatibleBackup(f"backup format {manifest.format} is newer than this Cairn's ({FORMAT}): "
                                 f"restore it with Cairn {manifest.cairn_version} or later")
    if manifest.index_version > INDEX_VERSION:
        raise IncompatibleBackup(
            f"backup was written with INDEX_VERSION {manifest.index_version} (Cairn {manifest.cairn_version}), "
            f"newer than this Cairn's INDEX_VERSION {INDEX_VERSION}: upgrade Cairn before restoring it")
    for rel in [*manifest.files, *(v for v in manifest.layout.values() if v)]:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts or rel == MANIFEST:
            raise CorruptBackup(f"manifest names an unsafe path {rel!r}")
    if CATALOG_FILE not in manifest.files:
        raise CorruptBackup("manifest lists no catalog")
    return manifest


def verify_backup(backup: Path, manifest: Manifest) -> None:
    """Every listed file is present with its recorded size and sha256."""
    for rel, expected in manifest.files.items():
        path = Path(backup) / rel
        if not path.is_file():
            raise CorruptBackup(f"backup file {rel} is missing")
        found = hash_file(path)
        if found != FileEntry(int(expected["size"]), str(expected["sha256"])):
            raise CorruptBackup(f"backup file {rel} does not match its checksum (sha256 {found.sha256[:12]}…, "
                                f"expected {str(expected['sha256'])[:12]}…): the backup is damaged")


def restore_backup(backup: Path, settings: Settings, force: bool = False) -> Manifest:
    """Restore `backup` into the (stopped) node's data directory; see the module docstring."""
    backup = Path(backup)
    manifest = read_manifest(backup)
    verify_backup(backup, manifest)
    data_dir, catalog = Path(settings.data_dir), sqlite_path(settings)
    check_not_in_use(data_dir)
    if not force and occupied(data_dir, catalog):
        raise BackupTargetError(f"data directory {data_dir} is not empty; pass --force to move its index "
                                f"aside (into {REPLACED_PREFIX}<time>/) and restore over it")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    staging = staging_dir(data_dir, "restore")
    try:
        for rel, expected in manifest.files.items():
            if copy_file(backup / rel, staging / rel) != FileEntry(int(expected["size"]), str(expected["sha256"])):
                raise CorruptBackup(f"backup file {rel} changed while it was restored")
        check_opens(staging, manifest)
        if force:
            move_aside(data_dir, catalog, keep={staging.name})
        _put_in_place(staging, manifest, data_dir, catalog)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("restored %s into %s (%d files)", backup, data_dir, len(manifest.files))
    return manifest


def check_not_in_use(data_dir: Path) -> None:
    """Refuse a data directory a running process holds: Qdrant Edge locks each shard's WAL while open."""
    import qdrant_edge as qe

    for marker in _index_files(data_dir, EDGE_MARKER):
        try:
            qe.EdgeShard.load(str(marker.parent)).close()
        except Exception as exc:  # the binding raises bare Exception
            if "WouldBlock" in str(exc):
                raise BackupTargetError(f"data directory {data_dir} is in use (the vector index {marker.parent} "
                                        "is locked by a running Cairn process): stop it before restoring") from exc
            log.warning("vector index %s does not open (%s); it will be replaced", marker.parent, exc)


def _index_files(data_dir: Path, name: str) -> list[Path]:
    if not data_dir.is_dir():
        return []
    found: list[Path] = []
    for entry in data_dir.iterdir():
        if entry.is_dir() and entry.name not in CACHE_DIRS and not entry.name.startswith((REPLACED_PREFIX, ".")):
            found += entry.rglob(name)
    return found


def occupied(data_dir: Path, catalog: Path) -> bool:
    """Whether restoring would replace something: a catalog, or anything but caches in the data dir."""
    if catalog.exists():
        return True
    return data_dir.is_dir() and any(e.name not in CACHE_DIRS and not e.name.startswith(REPLACED_PREFIX)
                                     for e in data_dir.iterdir())


def move_aside(data_dir: Path, catalog: Path, keep: set[str]) -> Path:
    """Move the current index (everything but caches, earlier replaced-* and `keep`) into
    `data_dir/replaced-<UTC time>/`; the operator deletes it once the restored node is good."""
    aside = data_dir / f"{REPLACED_PREFIX}{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    aside.mkdir()
    for entry in list(data_dir.iterdir()):
        if entry.name in CACHE_DIRS or entry.name in keep or entry.name.startswith(REPLACED_PREFIX):
            continue
        os.replace(entry, aside / entry.name)
    for suffix in ("", "-wal", "-shm", "-journal"):  # a catalog kept outside the data directory
        path = catalog.with_name(catalog.name + suffix)
        if path.exists():
            os.replace(path, aside / ("outside-" + path.name))
    log.warning("moved the previous index of %s aside into %s", data_dir, aside)
    return aside


def check_opens(staging: Path, manifest: Manifest) -> None:
    """The copied catalog and stores open and hold the counts the manifest recorded."""
    from indexer.stores.fulltext import TantivyIndex

    with sqlite3.connect(str(staging / CATALOG_FILE)) as conn:
        found = {"documents": conn.execute("SELECT count(*) FROM documents").fetchone()[0],
                 "chunks": conn.execute("SELECT count(*) FROM chunks").fetchone()[0]}
    conn.close()
    fulltext = TantivyIndex(staging / str(manifest.layout["fulltext"]))
    try:
        found["fulltext_chunks"] = len(fulltext.ids())
    finally:
        fulltext.close()
    found["vector_points"] = 0
    if manifest.layout.get("vectors"):
        from indexer.stores.edge import EdgeVectorStore

        vectors = EdgeVectorStore(staging / str(manifest.layout["vectors"]), manifest.vector_dim)
        try:
            found["vector_points"] = len(vectors.ids())
        finally:
            vectors.close()
    expected = {k: manifest.counts.get(k) for k in found}
    if found != expected:
        raise CorruptBackup(f"the backup's stores do not hold what its manifest recorded: {found} != {expected}")


def _put_in_place(staging: Path, manifest: Manifest, data_dir: Path, catalog: Path) -> None:
    for name in ("fulltext", "vectors"):
        rel = manifest.layout.get(name)
        if rel:
            target = data_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
    catalog.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / CATALOG_FILE, catalog)  # last: the catalog names the generation just put in place
