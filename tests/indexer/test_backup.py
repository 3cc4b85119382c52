"""Backups taken while a reindex runs and searches continue restore to the same search results;
damaged, newer or misdirected backups and restores are refused without changing anything."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Self

import pytest

from connectors.registry import build_connector
from indexer.backup.restore import restore_backup
from indexer.backup.snapshot import MANIFEST, BackupTargetError, CorruptBackup, IncompatibleBackup, create_backup
from indexer.models import INDEX_VERSION, Principal
from indexer.pipeline.sync import SyncRunner
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

READER = Principal("reader", frozenset({"eng"}))
QUERIES = ["parse the invoice total", "retry with backoff", "render_report", "customer address validation",
           "how are tax rates looked up", "module 7 handler"]


def module_source(i: int, flavour: str = "v1") -> str:
    topic = ["invoice", "retry", "report", "customer", "tax", "shipping"][i % 6]
    return (f'"""Module {i}: {topic} helpers ({flavour})."""\n\n\n'
            f"def handle_{topic}_{i}(payload):\n"
            f'    """Handle one {topic} payload for module {i}."""\n'
            f"    total = sum(item['amount'] for item in payload)\n"
            f"    return {{'module': {i}, 'topic': '{topic}', 'total': total, 'flavour': '{flavour}'}}\n\n\n"
            f"class {topic.title()}Service{i}:\n"
            f'    """Service object around handle_{topic}_{i}."""\n\n'
            f"    def run(self, payload):\n"
            f"        return handle_{topic}_{i}(payload)\n")


def indexed_repo(make_repo, services, files: int = 18):
    repo = make_repo("shop")
    for i in range(files):
        repo.write(f"shop/module_{i}.py", module_source(i))
    repo.commit("v1")
    services.catalog.upsert_source("shop", "git", {"location": str(repo.root), "ref": ""}, ["group:eng"])
    run_sync_job(services, "shop")
    return repo


def results(services) -> list[list[tuple[str, float]]]:
    searcher = build_searcher(services)
    try:
        return [[(h.chunk_id, round(h.score, 9)) for h in searcher.search(q, READER, limit=10).hits] for q in QUERIES]
    finally:
        searcher.close()


def store_ids(services) -> dict[str, set[str]]:
    return {"catalog": set(services.catalog.chunk_ids_of_source("shop")), "fulltext": services.fulltext.ids(),
            "vectors": services.vectors.ids()}


class Searching:
    """Threads searching in a loop until stopped; any exception is kept."""

    def __init__(self, services, threads: int = 3) -> None:
        self.searcher = build_searcher(services)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.done = 0
        self.threads = [threading.Thread(target=self._loop, args=(n,)) for n in range(threads)]

    def _loop(self, n: int) -> None:
        while not self.stop.is_set():
            try:
                self.searcher.search(QUERIES[(self.done + n) % len(QUERIES)], READER, limit=10)
                self.done += 1
            except BaseException as exc:  # noqa: BLE001 - the test reports whatever broke
                self.errors.append(exc)
                return

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        self.searcher.close()


def test_backup_during_a_reindex_restores_identical_search_results_and_store_ids(make_repo, services, embedder,
                                                                                 tmp_path):
    repo = indexed_repo(make_repo, services)
    for i in range(0, 18, 3):
        repo.write(f"shop/module_{i}.py", module_source(i, "v2"))
    for i in range(18, 24):
        repo.write(f"shop/module_{i}.py", module_source(i, "new"))
    repo.remove("shop/module_1.py")
    repo.commit("v2")
    midway, batches_after_backup, backed_up = threading.Event(), [], threading.Event()

    def observe(phase: str, _counts) -> None:
        if phase == "lexical":
            midway.set()
            if backed_up.is_set():
                batches_after_backup.append(phase)

    connector = build_connector(services.catalog.get_source("shop"), services.settings)
    reindex = threading.Thread(target=SyncRunner(services.pipeline, batch_docs=3).run,
                               args=(connector,), kwargs={"full": True, "observe": observe})
    with Searching(services) as searching:
        reindex.start()
        assert midway.wait(120), "the reindex wrote no batch"
        with services.pipeline.write_lock:  # what the backup must capture: the index at this instant
            expected, expected_ids = results(services), store_ids(services)
            manifest = create_backup(services, tmp_path / "backup")
            backed_up.set()
        reindex.join(timeout=300)
    assert not searching.errors and searching.done > 0
    assert batches_after_backup, "the backup was not taken in the middle of the reindex"
    assert expected_ids["catalog"] != store_ids(services)["catalog"]  # the reindex went on changing the index
    assert manifest.index_version == INDEX_VERSION and manifest.counts["chunks"] == len(expected_ids["catalog"])

    restored_settings = Settings(data_dir=tmp_path / "restored")
    restore_backup(tmp_path / "backup", restored_settings)
    restored = IndexServices.open(restored_settings, embedder=embedder)
    try:
        assert results(restored) == expected
        assert store_ids(restored) == expected_ids
        assert any(hits for hits in expected)
        run_sync_job(restored, "shop")  # the restored node catches up to the same final index
        assert store_ids(restored) == store_ids(services)
    finally:
        restored.close()


@pytest.fixture
def backup(make_repo, services, tmp_path) -> Path:
    indexed_repo(make_repo, services, files=4)
    create_backup(services, tmp_path / "backup")
    return tmp_path / "backup"


def test_a_flipped_byte_is_refused_and_the_data_dir_is_left_alone(backup, tmp_path):
    victim = next(p for p in sorted(backup.rglob("*.idx")) if p.stat().st_size > 0)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    target = Settings(data_dir=tmp_path / "restored")
    with pytest.raises(CorruptBackup, match="checksum"):
        restore_backup(backup, target)
    assert not target.data_dir.exists()


def test_a_backup_from_a_newer_index_version_is_refused_with_the_reason(backup, tmp_path):
    manifest = json.loads((backup / MANIFEST).read_text())
    manifest["index_version"] = INDEX_VERSION + 1
    (backup / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleBackup, match=f"INDEX_VERSION {INDEX_VERSION + 1}.*upgrade Cairn"):
        restore_backup(backup, Settings(data_dir=tmp_path / "restored"))


def test_an_unsafe_path_in_the_manifest_is_refused(backup, tmp_path):
    manifest = json.loads((backup / MANIFEST).read_text())
    manifest["files"]["../escape.txt"] = {"size": 0, "sha256": "0" * 64}
    (backup / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorruptBackup, match="unsafe path"):
        restore_backup(backup, Settings(data_dir=tmp_path / "restored"))


def test_restore_refuses_a_data_dir_in_use_or_not_empty_and_force_moves_the_old_index_aside(
        backup, services, embedder, tmp_path):
    with pytest.raises(BackupTargetError, match="in use"):
        restore_backup(backup, services.settings, force=True)  # `services` still holds it open
    services.close()
    with pytest.raises(BackupTargetError, match=r"not empty.*--force"):
        restore_backup(backup, services.settings)
    restore_backup(backup, services.settings, force=True)
    assert len(list(services.settings.data_dir.glob("replaced-*/catalog.sqlite3"))) == 1
    reopened = IndexServices.open(services.settings, embedder=embedder)
    try:
        assert results(reopened)[0]
    finally:
        reopened.close()


@pytest.mark.parametrize("where, message", [("relative", "absolute"), ("full", "not an empty directory"),
                                            ("inside", "inside the data directory"), ("orphan", "parent")])
def test_backup_targets_must_be_new_or_empty_absolute_directories_outside_the_data_dir(services, tmp_path, where,
                                                                                       message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    target = {"relative": Path("backups/today"), "full": tmp_path / "full",
              "inside": services.settings.data_dir / "backup", "orphan": tmp_path / "no" / "such" / "dir"}[where]
    with pytest.raises(BackupTargetError, match=message):
        create_backup(services, target)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_an_interrupted_backup_without_a_manifest_is_not_restorable(tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "catalog.sqlite3").write_bytes(b"half")
    with pytest.raises(CorruptBackup, match="not a Cairn backup"):
        restore_backup(tmp_path / "partial", Settings(data_dir=tmp_path / "restored"))


def test_the_data_directory_and_backups_are_owner_only(backup, services, tmp_path):
    """They hold every indexed document: 0700 directories, 0600 files (an older, open data dir is tightened)."""
    import stat

    from indexer.services import private_dir

    assert stat.S_IMODE(Path(services.settings.data_dir).stat().st_mode) == 0o700
    paths = [backup, *backup.rglob("*")]
    assert len(paths) > 5
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    old = tmp_path / "old-data"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    private_dir(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
