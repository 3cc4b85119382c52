"""Builds a new index generation in the background while the active one serves, then swaps it in.

The build reads every document's stored content from the catalog, chunks it with the current code,
embeds with the new model (embedding cache first) and writes the new generation's own stores and
catalog rows (generation_chunks); the active generation is never written by it. Syncs meanwhile
keep writing the active generation; each document carries the stamp (documents.indexed_at) it was
built from, so passes repeat until nothing changed, and a last pass runs under the pipeline's
write lock right before the swap. The swap (under the same lock): catalog rows published, the
pipeline's and services' stores pointed at the new generation, swap listeners called (searchers
follow and retire the old one once its in-flight queries end), meta updated in one transaction,
old stores closed and deleted. Stopped or crashed builds resume from their recorded rows."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from indexer.embedding.fastembed_backend import CachedEmbedder
from indexer.generations.serving import ServingSlot
from indexer.generations.state import BUILDING_KEY, Generation, GenerationRows, GenerationStores, write_meta
from indexer.locks import SourceLock
from indexer.stores import VectorPoint, VectorStore
from indexer.stores.fulltext import TantivyIndex

if TYPE_CHECKING:
    from indexer.services import IndexServices

log = logging.getLogger(__name__)

SwapListener = Callable[[], None]
JOB_SOURCE = "*"  # a rebuild covers every source
CATCH_UP_PASSES = 5  # unlocked passes before the final locked one (each catches up what syncs changed)


class BuildStopped(Exception):
    """The build was asked to stop (services closing); it resumes on the next start."""


@dataclass
class BuildProgress:
    generation: int
    phase: str = "starting"  # starting | building | catching-up | swapping | done | failed | stopped
    documents_total: int = 0
    documents_done: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- the build ----------------------------------------------------------------------------------

class GenerationBuilder:
    """Owns the building generation of one IndexServices: runs its build on a thread and swaps it in."""

    def __init__(self, services: IndexServices, stores: GenerationStores, slot: ServingSlot,
                 building: Generation | None, embedder: CachedEmbedder, lock: SourceLock,
                 batch_docs: int = 32) -> None:
        self.services = services
        self.stores = stores
        self.rows = GenerationRows(services.catalog.engine)
        self.slot = slot
        self.building = building
        self.embedder = embedder  # the new generation's model (with the embedding cache)
        self.batch_docs = batch_docs
        self.lock = lock  # one building process per index (a SourceLock from indexer/locks.py)
        self.progress = BuildProgress(building.id) if building else None
        self.after_batch: Callable[[BuildProgress], None] | None = None  # a hook (tests observe mid-build)
        self._listeners: list[SwapListener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stores: tuple[TantivyIndex, VectorStore] | None = None

    @property
    def active(self) -> Generation:
        return self.slot.generation

    def on_swap(self, listener: SwapListener) -> None:
        """Called under the write lock right after the stores switched (searchers follow here)."""
        self._listeners.append(listener)

    def start(self) -> bool:
        """Start the background build if one is pending; returns whether a build is running."""
        if self.building is None:
            return False
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name=f"cairn-rebuild-{self.building.id}", daemon=True)
            self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running build to end; True when none is running any more."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the build between batches (it resumes on the next start) and wait for it."""
        self._stop.set()
        if self.wait(timeout):
            self._close_build_stores()
        else:  # still in a batch (or the swap): its stores stay open until it ends
            log.warning("the build did not stop within %.0fs", timeout)

    def run(self) -> bool:
        """Build and swap in the foreground; True when the new generation is now active."""
        gen = self.building
        if gen is None:
            return False
        if not self.lock.acquire():
            log.warning("another process is building %s; this one keeps serving", gen.describe())
            return False
        try:
            return self._run(gen)
        finally:
            self.lock.release()

    def _run(self, gen: Generation) -> bool:
        progress = self.progress = BuildProgress(gen.id)
        job_id = self._start_job(gen)
        try:
            self._build(gen, progress)
        except BuildStopped:
            progress.phase = "stopped"
            self._finish_job(job_id, "interrupted", "stopped by a shutdown; the rebuild resumes on the next start")
            log.info("build of %s stopped; it resumes on the next start", gen.describe())
            return False
        except Exception as exc:  # recorded on the job; the active generation keeps serving
            progress.phase, progress.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("build of %s failed; the active generation keeps serving", gen.describe())
            self._finish_job(job_id, "failed", progress.error)
            self._close_build_stores()
            return False
        progress.phase = "done"
        self._finish_job(job_id, "succeeded", "")
        return True

    def _build(self, gen: Generation, progress: BuildProgress) -> None:
        self._stores = self._stores or self.stores.open(gen, self.embedder.dim)
        progress.phase = "building"
        self._reconcile(gen)  # repairs what a build killed earlier left between its stores and rows
        for _ in range(CATCH_UP_PASSES):
            if self._pass(gen, progress) == 0:
                break
            progress.phase = "catching-up"
        self._check_stop()
        with self.services.pipeline.write_lock:  # syncs pause from here to the end of the swap
            self._pass(gen, progress)
            progress.phase = "swapping"
            self._swap(gen)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise BuildStopped()

    def _pass(self, gen: Generation, progress: BuildProgress) -> int:
        """Bring the generation up to the catalog: build new/rewritten documents, drop deleted ones."""
        current, built = self.rows.current_stamps(), self.rows.built_stamps(gen.id)
        gone = [doc_id for doc_id in built if doc_id not in current]
        todo = sorted(doc_id for doc_id, stamp in current.items() if built.get(doc_id) != stamp)
        if progress.documents_total == 0:
            progress.documents_total = len(current)
            progress.documents_done = len(current) - len(todo)
        else:
            progress.documents_total += len(todo)
        if gone:
            self._remove(gen, gone)
        for start in range(0, len(todo), self.batch_docs):
            self._check_stop()
            batch = todo[start:start + self.batch_docs]
            self._apply(gen, batch, progress)
            progress.documents_done += len(batch)
            self._report(progress)
            if self.after_batch:
                self.after_batch(progress)
        return len(todo) + len(gone)

    def _apply(self, gen: Generation, doc_ids: Sequence[str], progress: BuildProgress) -> None:
        fulltext, vectors = self._open_stores()
        loaded = self.rows.load_documents(doc_ids)
        old = self.rows.chunk_ids(gen.id, [doc.id for doc, _ in loaded])
        built, fresh, stale = [], [], []
        for doc, stamp in loaded:
            doc_chunks = self.services.pipeline.chunk(doc)  # the pipeline's chunking (and whatever it applies)
            new_ids = {c.id for c in doc_chunks}
            had = old.get(doc.id, [])
            stale += [(source, cid) for source, cid in had if cid not in new_ids]
            known = {cid for _, cid in had}
            fresh += [c for c in doc_chunks if c.id not in known]
            built.append((doc, stamp, doc_chunks))
        self._delete(stale)
        fulltext.upsert(fresh)
        fulltext.commit()
        if fresh:
            embedded, misses = self.embedder.embed_chunks(fresh)
            vectors.upsert([VectorPoint(c, v) for c, v in zip(fresh, embedded, strict=True)])
            progress.chunks_embedded += misses
        self.rows.record(gen.id, built)  # after the stores: a crash leaves rows behind, never ahead
        progress.chunks_written += len(fresh)

    def _remove(self, gen: Generation, doc_ids: Sequence[str]) -> None:
        owned = self.rows.chunk_ids(gen.id, doc_ids)
        self._delete([pair for pairs in owned.values() for pair in pairs])
        self.rows.forget(gen.id, doc_ids)

    def _delete(self, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        fulltext, vectors = self._open_stores()
        by_source: dict[str, list[str]] = {}
        for source, chunk_id in pairs:
            by_source.setdefault(source, []).append(chunk_id)
        for source, ids in by_source.items():
            fulltext.delete(source, ids)
        fulltext.commit()
        vectors.delete([cid for _, cid in pairs])

    def _reconcile(self, gen: Generation) -> None:
        """Make the new stores hold exactly the recorded rows. Within one run stores are written
        before rows and a failure ends the run, so only an earlier, killed run leaves strays (ids
        the rows lack: deleted) or rows whose ids are missing (forgotten: the passes rebuild them)."""
        fulltext, vectors = self._open_stores()
        owned = self.rows.chunk_ids(gen.id)
        recorded = {cid: (doc_id, source) for doc_id, pairs in owned.items() for source, cid in pairs}
        for source in fulltext.sources():
            strays = fulltext.ids(source) - recorded.keys()
            if strays:
                fulltext.delete(source, strays)
        fulltext.commit()
        vector_ids = vectors.ids()
        strays = vector_ids - recorded.keys()
        if strays:
            vectors.delete(strays)
        missing = (recorded.keys() - fulltext.ids()) | (recorded.keys() - vector_ids)
        if missing:
            self.rows.forget(gen.id, sorted({recorded[cid][0] for cid in missing}))
        if strays or missing:
            log.info("generation %d reconciled: %d stray vectors removed, %d chunks to rebuild",
                     gen.id, len(strays), len(missing))

    def _swap(self, gen: Generation) -> None:
        """Under the write lock: the new generation becomes the active one."""
        services, old = self.services, self.slot.generation
        old_stores = (self.slot.fulltext, self.slot.vectors)
        fulltext, vectors = self._open_stores()
        write_meta(services.catalog.engine, {BUILDING_KEY: replace(gen, state="swapping").to_json()})
        self.rows.publish(gen.id)
        self.slot.switch(gen, fulltext, vectors, self.embedder)
        services.fulltext, services.vectors, services.embedder = fulltext, vectors, self.embedder.inner
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener must not leave the index half-swapped
                log.exception("a generation swap listener failed")
        self.rows.finish_swap(gen, {"index_version": str(gen.index_version), "embedding_model": gen.model})
        self.stores.publish(gen)
        self.building, self._stores = None, None
        for store in old_stores:
            try:
                store.close()
            except Exception:
                log.exception("closing the stores of retired %s failed", old.describe())
        self.stores.remove(old)
        log.info("swapped in %s; retired %s", gen.describe(), old.describe())

    def _open_stores(self) -> tuple[TantivyIndex, VectorStore]:
        """The building generation's stores, opened when its build starts."""
        if self._stores is None:
            raise RuntimeError("the building generation's stores are not open")
        return self._stores

    def _close_build_stores(self) -> None:
        if self._stores is not None:
            for store in self._stores:
                store.close()
            self._stores = None

    # -- the job an admin sees --------------------------------------------------------------------

    def _start_job(self, gen: Generation) -> str:
        catalog = self.services.catalog
        job_id = str(uuid.uuid4())
        catalog.create_job(job_id, JOB_SOURCE, "rebuild")
        catalog.update_job(job_id, state="running")
        self.building = gen = replace(gen, job_id=job_id)
        write_meta(catalog.engine, {BUILDING_KEY: gen.to_json()})
        self._last_report = 0.0
        return job_id

    def _report(self, progress: BuildProgress) -> None:
        now = time.monotonic()
        if now - self._last_report < 1.0 or self.building is None:
            return
        self._last_report = now
        self.services.catalog.update_job(self.building.job_id, done=progress.documents_done,
                                         total=progress.documents_total, counts=progress.as_dict())

    def _finish_job(self, job_id: str, state: str, error: str) -> None:
        progress = self.progress.as_dict() if self.progress else {}
        self.services.catalog.update_job(job_id, state=state, error=error, counts=progress,
                                         done=progress.get("documents_done", 0),
                                         total=progress.get("documents_total", 0))

