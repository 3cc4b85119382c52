"""Builds the index's components from Settings (stores chosen by explicit kind) and owns their lifetime.

The stores belong to an index generation (indexer/generations/state.py): opening an index whose recorded
generation was made by another INDEX_VERSION, model or chunking keeps serving it and records a new
generation for the background build (indexer/generations/build.py) to fill and swap in."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Engine

from indexer.catalog import Catalog, open_catalog
from indexer.chunking.limits import chunk_limits
from indexer.embedding import Embedder, EmbeddingError
from indexer.embedding.cache import EmbeddingCache
from indexer.embedding.fastembed_backend import CachedEmbedder, FastEmbedEmbedder
from indexer.embedding.model_files import resolve_model
from indexer.generations.build import GenerationBuilder
from indexer.generations.serving import NoVectors, ServingSlot, SlotEmbedder, SlotFullText, SlotVectors
from indexer.generations.state import (
    ACTIVE_KEY,
    BUILD_LOCK,
    BUILDING_KEY,
    Generation,
    GenerationRows,
    GenerationStores,
    chunking_key,
    legacy_generation,
    migrate_legacy_layout,
    read_generations,
    wanted_model_spec,
    write_meta,
)
from indexer.locks import SourceLock, source_lock
from indexer.models import INDEX_VERSION
from indexer.pipeline.apply import ChunkingOptions, Pipeline
from indexer.secrets.screen import SecretScreen
from indexer.settings import Settings
from indexer.stores import FullTextIndex, VectorStore
from indexer.stores.backends import vector_backend

log = logging.getLogger(__name__)


def build_embedder(settings: Settings, spec: str | None = None) -> FastEmbedEmbedder:
    """The model named by `spec` (default: the embedding_model setting)."""
    location = resolve_model(spec or settings.embedding_model, settings.model_cache_dir, settings.embedding_quantize)
    return FastEmbedEmbedder(location, batch_size=settings.embed_batch_size, threads=settings.embed_threads or None)


def private_dir(path: Path) -> None:
    """Create the data directory owner-only (0700), and tighten one an older version left open: it holds
    every indexed document, the catalog and the embedding cache."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:  # not ours (a mounted volume): say so, the owner decides
            log.warning("data directory %s is readable by others and cannot be made private: %s", path, exc.strerror)


@dataclass
class IndexServices:
    """Everything that reads or writes the index, opened once per process that owns it.

    `fulltext`, `vectors` and `embedder` are the active generation's (reassigned by a swap);
    `generations` runs the background build of a new one when one is pending."""

    settings: Settings
    catalog: Catalog
    fulltext: FullTextIndex
    vectors: VectorStore
    embedder: Embedder
    pipeline: Pipeline
    generations: GenerationBuilder | None = None

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> IndexServices:
        """Open the active generation. `embedder` is the model to index with (default: the setting,
        or the model chosen by `cairn model switch`)."""
        vector_backend(settings)  # an unknown kind fails before anything is created
        private_dir(Path(settings.data_dir))
        catalog = open_catalog(settings.catalog_url)
        engine = catalog.engine
        spec = wanted_model_spec(engine, settings)
        embedder = embedder or build_embedder(settings, spec)
        cache = EmbeddingCache(engine)
        stores = GenerationStores(settings)
        try:
            target = Generation(0, INDEX_VERSION, embedder.model_name, spec, chunking_key(settings), state="building")
            active, building = plan_generations(catalog, stores, target)
            serving = embedder if active.model == embedder.model_name else load_generation_model(active, settings)
            fulltext, vectors = _open_active(stores, active, serving)
            stores.publish(active)  # after the open created its collection
        except Exception:
            stores.close()
            raise
        slot = ServingSlot(active, fulltext, vectors, CachedEmbedder(serving or embedder, cache))
        chunking = ChunkingOptions(max_lines=settings.max_chunk_lines, min_lines=settings.min_chunk_lines,
                                   limits=chunk_limits(settings))
        secrets = SecretScreen(settings.secret_allowlist, settings.secret_allowlist_paths)
        # Batch preparation uses the process-wide pool of indexer/pipeline/prepare.py (shut down at exit).
        pipeline = Pipeline(catalog, SlotFullText(slot), SlotVectors(slot), SlotEmbedder(slot), chunking,
                            secrets=secrets, prepare_workers=settings.index_workers)
        services = cls(settings, catalog, fulltext, vectors, serving or embedder, pipeline)
        services.generations = GenerationBuilder(services, stores, slot, building, CachedEmbedder(embedder, cache),
                                                 lock=build_lock(catalog, settings))
        return services

    def is_current(self) -> bool:
        """Whether this process still serves the catalog's active generation (another process may
        have swapped in a new one: a worker then reopens its services)."""
        active = read_generations(self.catalog.engine)[0]
        return self.generations is None or active is None or active.id == self.generations.active.id

    def close(self) -> None:
        if self.generations is not None:
            self.generations.stop()
        for closer in (self.fulltext.close, self.vectors.close):
            try:
                closer()
            except Exception:  # closing is best effort; report and keep closing the rest
                log.exception("error while closing a store")
        if self.generations is not None:
            self.generations.stores.close()


def _open_active(stores: GenerationStores, active: Generation,
                 serving: Embedder | None) -> tuple[FullTextIndex, VectorStore]:
    if serving is not None:
        return stores.open(active, serving.dim)
    fulltext, vectors = stores.open_fulltext(active), NoVectors()
    return fulltext, vectors


def plan_generations(catalog: Catalog, stores: GenerationStores, target: Generation) -> tuple[Generation, Generation | None]:
    """(active, building) for an index opened to serve `target`: records the first generation
    (moving stores of the layout before generations into it) and the generation to build when the
    active one differs from `target`. Recovery (finishing a swap a crash interrupted, dropping a
    stale build, deleting retired stores) only runs while no process is building."""
    engine = catalog.engine
    active, building = read_generations(engine)
    if active is None:
        active = _first_generation(engine, stores, target)
    lock = build_lock(catalog, stores.settings)
    if not lock.acquire():  # another process is building: take the generations as they are
        return active, building if building is not None and building.same_index(target) else None
    try:
        return _recover_and_plan(catalog, stores, active, building, target)
    finally:
        lock.release()


def build_lock(catalog: Catalog, settings: Settings) -> SourceLock:
    """Held by the process building a generation (and briefly by recovery at open)."""
    return source_lock(catalog.engine, Path(settings.data_dir), BUILD_LOCK)


def _recover_and_plan(catalog: Catalog, stores: GenerationStores, active: Generation, building: Generation | None,
                      target: Generation) -> tuple[Generation, Generation | None]:
    engine = catalog.engine
    if building is not None and building.state == "swapping":
        active, building = _finish_interrupted_swap(engine, stores, active, building)
    if building is not None and (active.same_index(target) or not building.same_index(target)):
        log.info("dropping the unfinished build of %s", building.describe())
        _abandon(catalog, stores, building)
        building = None
    if building is None and not active.same_index(target):
        new_id = active.id + 1
        building = replace(target, id=new_id, collection=stores.collection_for(new_id))
        write_meta(engine, {BUILDING_KEY: building.to_json()})
        log.warning("%s differs from what this version builds (index v%d, %s, chunks %s): it keeps serving "
                    "while generation %d is built in the background", active.describe(), target.index_version,
                    target.model, target.chunking, new_id)
    elif building is not None:
        _interrupt_job(catalog, building)
        log.info("resuming the build of %s", building.describe())
    stores.remove_strays([active.id] + ([building.id] if building else []))
    return active, building


def _first_generation(engine: Engine, stores: GenerationStores, target: Generation) -> Generation:
    """Generation 1: the stores of the layout before generations (renamed, not reindexed), or new."""
    legacy = legacy_generation(engine)
    version, model = legacy or (target.index_version, target.model)
    spec = target.model_spec if model == target.model else model.split("@", 1)[0]
    active = Generation(1, version, model, spec, target.chunking,
                        collection=stores.adopt_legacy_collection() or stores.collection_for(1))
    migrate_legacy_layout(stores.settings.data_dir, active.id)
    write_meta(engine, {ACTIVE_KEY: active.to_json(), "index_version": str(version), "embedding_model": model})
    return active


def _finish_interrupted_swap(engine: Engine, stores: GenerationStores, active: Generation,
                             building: Generation) -> tuple[Generation, None]:
    """A crash during a swap: the new generation was complete (the swap runs under the write lock
    after the last catch-up), so finish it."""
    log.info("finishing the interrupted swap to %s", building.describe())
    GenerationRows(engine).finish_swap(building, {"index_version": str(building.index_version),
                                                  "embedding_model": building.model})
    stores.publish(building)
    stores.remove(active)
    return replace(building, state="active", job_id=""), None


def _abandon(catalog: Catalog, stores: GenerationStores, building: Generation) -> None:
    _interrupt_job(catalog, building)
    stores.remove(building)
    GenerationRows(catalog.engine).drop(building.id)
    write_meta(catalog.engine, {BUILDING_KEY: None})


def _interrupt_job(catalog: Catalog, building: Generation) -> None:
    """The job of a build that stopped with its process (it never got to record that)."""
    job = catalog.get_job(building.job_id) if building.job_id else None
    if job is not None and job.state == "running":
        catalog.update_job(job.id, state="interrupted", error="the process stopped during the build")


def load_generation_model(gen: Generation, settings: Settings) -> Embedder | None:
    """The model a generation was embedded with, to embed queries for it; None when it is gone."""
    specs = dict.fromkeys(s for s in (gen.model_spec, gen.model.split("@", 1)[0]) if s)
    for spec in specs:
        for quantize in dict.fromkeys((settings.embedding_quantize, "")):
            try:
                location = resolve_model(spec, settings.model_cache_dir, quantize)
                if location.key == gen.model:
                    return FastEmbedEmbedder(location, batch_size=settings.embed_batch_size,
                                             threads=settings.embed_threads or None)
            except EmbeddingError as exc:
                log.info("model %s is not loadable here: %s", spec, exc)
    log.warning("the model of %s cannot be loaded any more: it serves keyword search only until the new "
                "generation is swapped in", gen.describe())
    return None
