"""File copies for backups: sparse-aware, checksummed while copying, and safe against tantivy's merges."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20
_ZEROS = bytes(BLOCK)
TANTIVY_COPY_ATTEMPTS = 50  # a merge that retires segments mid-copy makes us start that shard again


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"size": self.size, "sha256": self.sha256}


def copy_file(src: Path, dst: Path) -> FileEntry:
    """Copy `src` to `dst` and return its size and sha256. Zero blocks become holes: Qdrant Edge
    preallocates sparse WAL and payload-index files (hundreds of MB apparent, a few MB used)."""
    digest, size = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(BLOCK):
            digest.update(block)
            size += len(block)
            if block == _ZEROS[:len(block)]:
                fout.seek(len(block), os.SEEK_CUR)
            else:
                fout.write(block)
        fout.truncate(size)
        fout.flush()
        os.fsync(fout.fileno())
    return FileEntry(size, digest.hexdigest())


def hash_file(path: Path) -> FileEntry:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fin:
        while block := fin.read(BLOCK):
            digest.update(block)
            size += len(block)
    return FileEntry(size, digest.hexdigest())


def copy_tree(src: Path, dst: Path, skip: frozenset[str] = frozenset()) -> dict[Path, FileEntry]:
    """Copy every regular file under `src` (names in `skip` left out) to the same place under `dst`;
    the entries are keyed by their path relative to both."""
    out: dict[Path, FileEntry] = {}
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name not in skip:
            rel = path.relative_to(src)
            out[rel] = copy_file(path, dst / rel)
    return out


def tantivy_commit_files(index_dir: Path, meta_bytes: bytes) -> list[str]:
    """The files making up the commit `meta.json` describes: each listed segment's components and
    the delete file of its recorded opstamp (segment files are immutable once written)."""
    names = []
    for segment in json.loads(meta_bytes)["segments"]:
        seg = segment["segment_id"].replace("-", "")
        names += [p.name for p in index_dir.glob(f"{seg}.*") if p.name.count(".") == 1]
        deletes = segment.get("deletes")
        if deletes:
            names.append(f"{seg}.{deletes['opstamp']}.del")
    return sorted(set(names))


def copy_tantivy_index(index_dir: Path, dst: Path) -> dict[Path, FileEntry]:
    """One committed state of a tantivy index: meta.json and exactly the files it names (no locks,
    no `.managed.json`, no segments a merge already retired).

    Writers are paused by the caller, but a merge started by the last commit may still finish and
    delete the segments it replaced; a file vanishing mid-copy restarts the copy from the new meta."""
    for _ in range(TANTIVY_COPY_ATTEMPTS):
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        meta_bytes = (index_dir / "meta.json").read_bytes()
        try:
            out = {Path(name): copy_file(index_dir / name, dst / name)
                   for name in tantivy_commit_files(index_dir, meta_bytes)}
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        (dst / "meta.json").write_bytes(meta_bytes)
        out[Path("meta.json")] = hash_file(dst / "meta.json")
        return out
    raise RuntimeError(f"tantivy index {index_dir} kept changing while it was copied")


def staging_dir(parent: Path, name: str) -> Path:
    """A fresh hidden directory (owner only) next to where the result will be renamed into place."""
    path = parent / f".{name}.partial-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, mode=0o700)
    return path


def make_private(root: Path) -> None:
    """Owner-only access to a tree: directories 0700, files 0600 (a backup holds every document)."""
    os.chmod(root, 0o700)
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
