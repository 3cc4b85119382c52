"""Prepares lexical batches (secret screening, chunking, chunk ids) before they are written.

Preparing a batch reads nothing but the batch, so it can run in worker processes while the process
that writes the index applies the batch before it (indexer/pipeline/sync.py keeps a couple of batches in
flight and applies them strictly in order). The pool is one per process, made on first use with the
"forkserver" start method (the API server is multi-threaded and must not be forked), kept for the
process's lifetime and shut down at exit. A batch whose worker dies, or that fails to travel, is
prepared again in-process: nothing is lost, and the pool is made again for later batches. A worker exits
when the process that made the pool dies, even by SIGKILL (`_exit_with`); the fork server and
multiprocessing's resource tracker then see their last client gone and exit too.

Workers log nothing themselves: what they would have logged travels back with the batch (secret
findings as findings, logged by the writer through `SecretScreen.report`; other records as records).

As with any "forkserver"/"spawn" pool, each worker imports the main script of the process (as
`__mp_main__`), so a script that syncs must keep its work under `if __name__ == "__main__":`
(Cairn's entry points do); `CAIRN_INDEX_WORKERS=0` prepares everything in-process."""
from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import select
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from indexer.chunking import ChunkLimits, chunk_document
from indexer.identifiers import expand_identifiers
from indexer.models import Chunk, Document
from indexer.secrets.screen import Screened, SecretScreen

log = logging.getLogger(__name__)

# Batches with less text than this are prepared in-process: shipping them costs more than it saves.
MIN_POOL_BYTES = 64_000


@dataclass(frozen=True)
class ChunkingOptions:
    max_lines: int = 80
    min_lines: int = 8
    limits: ChunkLimits = field(default_factory=ChunkLimits)  # document size, chunk characters, parse time (hostile input)


@dataclass
class PreparedBatch:
    """A batch ready to write: screened (redacted documents, secret files, findings) and chunked,
    each chunk's id already computed. `records`: what a worker logged, for the writer to log."""

    screened: Screened
    chunks: dict[str, list[Chunk]]  # document id → its chunks, for every screened document
    records: list[logging.LogRecord] = field(default_factory=list)
    # text → `expand_identifiers(text)` for the chunks' content, symbol and path (what tantivy indexes),
    # when computed where the batch was prepared
    expansions: dict[str, str] = field(default_factory=dict)
    # From a worker: the screened documents with the ones the screen left unchanged as their position
    # in the batch (the writer has them); `screened.documents` is empty until the writer restores it.
    shipped: list[Document | int] = field(default_factory=list)

    @classmethod
    def merge(cls, parts: Sequence[PreparedBatch]) -> PreparedBatch:
        """The parts of one batch, prepared separately, as one batch in their order."""
        if len(parts) == 1:
            return parts[0]
        screened = Screened([], [])
        out = cls(screened, {})
        for part in parts:
            screened.documents.extend(part.screened.documents)
            screened.skipped.extend(part.screened.skipped)
            screened.skipped_ids.extend(part.screened.skipped_ids)
            screened.findings.update(part.screened.findings)
            out.chunks.update(part.chunks)
            out.records.extend(part.records)
            out.expansions.update(part.expansions)
        return out


def prepare_batch(screen: SecretScreen, chunking: ChunkingOptions, docs: Sequence[Document],
                  expand: bool = False) -> PreparedBatch:
    """Screen and chunk a batch (logging no findings: the writer reports them). `expand`: also the
    identifier expansions tantivy will index (worth it where the batch is not written)."""
    screened = screen.screen(docs, report=False)
    prepared = PreparedBatch(screened, {})
    for doc in screened.documents:
        chunks = prepared.chunks[doc.id] = chunk_document(doc, max_lines=chunking.max_lines,
                                                          min_lines=chunking.min_lines, limits=chunking.limits)
        for chunk in chunks:
            chunk.id  # noqa: B018 - computed (and cached on the chunk) where the batch is prepared
            if expand:
                for text in (chunk.content, chunk.symbol, chunk.path):
                    if text not in prepared.expansions:
                        prepared.expansions[text] = expand_identifiers(text)
    return prepared


# -- in a worker process ----------------------------------------------------------------------------

_worker_screens: dict[tuple, SecretScreen] = {}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:  # tracebacks do not pickle: keep their text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg, record.args = record.getMessage(), None
        self.records.append(record)


def _prepare_in_worker(config: tuple, chunking: ChunkingOptions, docs: Sequence[Document],
                       level: int) -> PreparedBatch:
    screen = _worker_screens.get(config)
    if screen is None:
        screen = _worker_screens[config] = SecretScreen(*config)
    root = logging.getLogger()
    collect = _Collect()
    root.setLevel(level)
    root.addHandler(collect)
    try:
        prepared = prepare_batch(screen, chunking, docs, expand=True)
    finally:
        root.removeHandler(collect)
    prepared.records = collect.records
    # Documents the screen left unchanged travel back as their position in `docs` (the writer has them).
    prepared.shipped = [kept if kept is not docs[i] else i
                        for i, kept in _kept_positions(docs, prepared.screened.documents)]
    prepared.screened.documents.clear()
    return prepared


def _kept_positions(docs: Sequence[Document], kept: Sequence[Document]) -> list[tuple[int, Document]]:
    """(position in `docs`, kept document) for each kept one; kept documents are in `docs` order."""
    out = []
    i = 0
    for doc in kept:
        while docs[i].id != doc.id:
            i += 1
        out.append((i, doc))
        i += 1
    return out


# -- the pool (one per process) ----------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_pool_warm = threading.Event()  # a worker of the current pool has prepared a batch


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_size  # noqa: PLW0603 - one pool per process, shared by every pipeline in it
    with _pool_lock:
        if _pool is not None and _pool_size != workers:  # another size was asked for
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
            _pool_warm.clear()
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])  # workers start with this module imported
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_exit_with,
                                        initargs=(os.getpid(),))
            _pool_size = workers
        return _pool


def _exit_with(owner: int) -> None:
    """Pool initializer: this worker exits once `owner` (the process that made the pool) is gone, however
    it went. A worker's parent is the fork server, not the owner, and the fork server lives on while any
    worker does (each holds its liveness pipe), so no parent-death signal or closed pipe would ever tell
    the worker: after a SIGKILL of the server, workers, fork server and resource tracker stayed for good."""
    threading.Thread(target=_watch_owner, args=(owner,), name="cairn-owner-watch", daemon=True).start()


def _watch_owner(owner: int) -> None:
    try:
        handle = os.pidfd_open(owner)  # readable once the owner exits (Linux 5.3+): no PID reuse to fear
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here: poll
        while _alive(owner):
            time.sleep(1.0)
        os._exit(0)
    select.select([handle], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_warm(pool: ProcessPoolExecutor, future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        with _pool_lock:
            if _pool is pool:  # not a late answer from a pool since dropped
                _pool_warm.set()


def _discard(pool: ProcessPoolExecutor) -> None:
    """A broken pool is dropped; the next batch makes a new one."""
    global _pool  # noqa: PLW0603 - see _executor
    with _pool_lock:
        if _pool is pool:
            _pool = None
            _pool_warm.clear()
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def shutdown_pool() -> None:
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
        _pool_warm.clear()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def pool_processes() -> list:
    """The live worker processes of the pool (for tests and diagnostics)."""
    with _pool_lock:
        pool = _pool
    return list((pool._processes or {}).values()) if pool is not None else []


@dataclass
class Pending:
    """A batch handed to the preparer: its parts, each with its future (None: prepare in-process)."""

    parts: list[tuple[list[Document], Future | None, ProcessPoolExecutor | None]]


class BatchPreparer:
    """Prepares a sync's batches, in worker processes when there are any and the batch is big enough."""

    def __init__(self, screen: SecretScreen, chunking: ChunkingOptions, workers: int,
                 min_pool_bytes: int | None = None) -> None:
        self.screen = screen
        self.chunking = chunking
        # Only the plain screen can be rebuilt in a worker from its configuration; a daemonic process
        # (a Celery prefork child) may not start processes.
        plain = type(screen) is SecretScreen and not multiprocessing.current_process().daemon
        self.workers = workers if plain else 0
        self.min_pool_bytes = MIN_POOL_BYTES if min_pool_bytes is None else min_pool_bytes
        # parts prepared: "pool", "in_process"; "redone": parts the pool failed (dead worker) or refused,
        # prepared in-process instead
        self.stats: Counter[str] = Counter()
        self._warming = False

    def expect(self, size: int) -> None:
        """A batch with at least `size` characters of text is being read: when it will go to the
        workers, start them now (in the background), so they are up when it is cut."""
        if self.workers > 0 and not self._warming and size >= self.min_pool_bytes:
            self._warming = True
            threading.Thread(target=self._warm, name="cairn-prepare-warm", daemon=True).start()

    def _warm(self) -> None:
        try:
            pool = _executor(self.workers)
            for _ in range(self.workers):
                pool.submit(int)  # spawns a worker process
        except Exception as exc:  # noqa: BLE001 - only a head start: submit() deals with a pool that fails
            log.info("indexing workers did not start early: %s", exc)

    def submit(self, docs: Sequence[Document]) -> Pending:
        docs = list(docs)
        size = sum(len(d.content) for d in docs)
        if self.workers <= 0 or size < self.min_pool_bytes or not docs:
            return Pending([(docs, None, None)])
        try:
            pool = _executor(self.workers)
        except Exception as exc:  # noqa: BLE001 - no processes to be had: prepare here
            self._give_up(exc)
            return Pending([(docs, None, None)])
        level = logging.getLogger("indexer").getEffectiveLevel()
        parts: list[tuple[list[Document], Future | None, ProcessPoolExecutor | None]] = []
        split = _split(docs, self.workers + 1, size) if not _pool_warm.is_set() else _split(docs, self.workers, size)
        if not _pool_warm.is_set() and len(split) > 1:
            # Workers still starting (importing, loading grammars): this process, idle until the first
            # batch is ready, prepares a share of it when its turn comes.
            parts.append((split.pop(0), None, None))
        for part in split:
            try:
                future = pool.submit(_prepare_in_worker, self.screen.config, self.chunking, part, level)
            except (BrokenProcessPool, RuntimeError) as exc:  # broken or shut down since: a new pool next time
                log.warning("indexing workers unavailable (%s: %s); preparing in-process", type(exc).__name__, exc)
                _discard(pool)
                self.stats["redone"] += 1  # prepared here when its turn comes
                parts.append((part, None, None))
                continue
            except Exception as exc:  # noqa: BLE001 - processes cannot be started here at all
                self._give_up(exc)
                parts.append((part, None, None))
                continue
            future.add_done_callback(functools.partial(_mark_warm, pool))
            parts.append((part, future, pool))
        return Pending(parts)

    def _give_up(self, exc: Exception) -> None:
        log.warning("cannot start indexing workers (%s: %s); this sync prepares its batches in-process",
                    type(exc).__name__, exc)
        self.workers = 0

    def result(self, pending: Pending) -> PreparedBatch:
        """The prepared batch, waiting for its workers; a part whose worker failed is redone here."""
        prepared = []
        for docs, future, pool in pending.parts:
            if future is None:
                self.stats["in_process"] += 1
                prepared.append(prepare_batch(self.screen, self.chunking, docs))
                continue
            try:
                part = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker, or a batch that did not travel
                log.warning("preparing %d documents in a worker failed (%s: %s); preparing them in-process",
                            len(docs), type(exc).__name__, exc)
                if isinstance(exc, BrokenProcessPool) and pool is not None:
                    _discard(pool)
                self.stats["redone"] += 1
                prepared.append(prepare_batch(self.screen, self.chunking, docs))
                continue
            self.stats["pool"] += 1
            part.screened.documents[:] = [docs[d] if isinstance(d, int) else d for d in part.shipped]
            part.shipped = []
            for record in part.records:
                logger = logging.getLogger(record.name)
                if logger.isEnabledFor(record.levelno):
                    logger.handle(record)
            part.records = []
            prepared.append(part)
        return PreparedBatch.merge(prepared)

    @staticmethod
    def discard(pending: Pending) -> None:
        """Drop a batch that will not be applied (a stopped sync): queued work is cancelled."""
        for _, future, _ in pending.parts:
            if future is not None:
                future.cancel()


def _split(docs: list[Document], parts: int, size: int) -> list[list[Document]]:
    """Consecutive runs of about equal text, one per worker (order kept)."""
    if parts <= 1 or len(docs) < 2:
        return [docs]
    target = size / parts
    out: list[list[Document]] = [[]]
    filled = 0
    for doc in docs:
        if filled >= target * len(out) and len(out) < parts:
            out.append([])
        out[-1].append(doc)
        filled += len(doc.content)
    return [part for part in out if part]
