"""Index generations: each (INDEX_VERSION, model, chunking) lives in its own stores, swapped in whole.

Layout: `data_dir/generations/<id>/{fulltext,vectors}`; with a Qdrant server the vectors of
generation <id> are the collection `<collection>_g<id>`, and the alias `<collection>` names the
serving one. The catalog's meta table records the active generation and the one being built
(`generation.active`, `generation.building`, JSON). A building generation's chunk rows live in
`generation_chunks` (its documents, with the stamp they were built from, in `generation_documents`),
so `chunks` keeps matching the serving stores until the swap replaces `chunks` with them in one
transaction. The background build itself is indexer/generations/build.py."""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from indexer.catalog.db import id_batches
from indexer.catalog.schema import (
    chunk_row,
    chunks,
    documents,
    generation_chunks,
    generation_documents,
    jobs,
    meta,
    sources,
    unpack_text,
)
from indexer.models import ADMINS, Access, AccessError, Chunk, Document
from indexer.settings import Settings
from indexer.stores import StoreError, VectorStore
from indexer.stores.backends import VectorPlace, vector_backend
from indexer.stores.fulltext import TantivyIndex

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

log = logging.getLogger(__name__)

ACTIVE_KEY = "generation.active"
BUILDING_KEY = "generation.building"
# Recorded by `cairn model switch`: {"spec": the model to use, "setting": CAIRN_EMBEDDING_MODEL then}.
REQUESTED_MODEL_KEY = "generation.requested_model"
GENERATIONS_DIR = "generations"
BUILD_LOCK = "index:generation-build"  # ':' cannot occur in a source name, so no source lock shares it
LEGACY_STORE_DIRS = ("vectors", "fulltext")


@dataclass(frozen=True)
class Generation:
    """One complete set of stores and what made them (the identity a mismatch is judged on)."""

    id: int
    index_version: int
    model: str  # the model key (name@fingerprint) its vectors were embedded with
    model_spec: str  # the embedding_model value that loads that model (directory or fastembed name)
    chunking: str  # "max_lines/min_lines"
    collection: str = ""  # Qdrant server backend: the collection holding its vectors
    job_id: str = ""  # building: the job showing its progress
    state: str = "active"  # active | building | swapping

    def same_index(self, other: Generation) -> bool:
        return (self.index_version, self.model, self.chunking) == (other.index_version, other.model, other.chunking)

    def describe(self) -> str:
        return f"generation {self.id} (index v{self.index_version}, {self.model}, chunks {self.chunking})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Generation | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def chunking_key(settings: Settings) -> str:
    return f"{settings.max_chunk_lines}/{settings.min_chunk_lines}"


def wanted_model_spec(engine: Engine, settings: Settings) -> str:
    """The model to index with: the last `cairn model switch`, unless the setting changed since."""
    request = read_meta(engine, REQUESTED_MODEL_KEY)
    if request:
        data = json.loads(request)
        if data.get("setting") == settings.embedding_model and data.get("spec"):
            return str(data["spec"])
    return settings.embedding_model


def request_model(engine: Engine, settings: Settings, spec: str) -> None:
    """Record `cairn model switch SPEC`: the next open builds a generation with it."""
    write_meta(engine, {REQUESTED_MODEL_KEY: json.dumps({"spec": spec, "setting": settings.embedding_model})})


# -- meta ---------------------------------------------------------------------------------------

def read_meta(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def _write_meta(conn: Connection, values: dict[str, str | None]) -> None:
    """Set (or, for None, remove) meta keys inside the caller's transaction."""
    conn.execute(delete(meta).where(meta.c.key.in_(list(values))))
    rows = [{"key": k, "value": v} for k, v in values.items() if v is not None]
    if rows:
        conn.execute(insert(meta), rows)


def write_meta(engine: Engine, values: dict[str, str | None]) -> None:
    with engine.begin() as conn:
        _write_meta(conn, values)


def read_generations(engine: Engine) -> tuple[Generation | None, Generation | None]:
    """(active, building) as recorded in the catalog."""
    return (Generation.from_json(read_meta(engine, ACTIVE_KEY)),
            Generation.from_json(read_meta(engine, BUILDING_KEY)))


def legacy_generation(engine: Engine) -> tuple[int, str] | None:
    """(index version, model key) recorded by the layout before generations, if any."""
    version, model = read_meta(engine, "index_version"), read_meta(engine, "embedding_model")
    if version is None or model is None:
        return None
    try:
        return int(version), model
    except ValueError:
        return 0, model  # unreadable: treat as outdated, so it is rebuilt


# -- on-disk layout and stores -----------------------------------------------------------------

def generation_dir(data_dir: Path, gen_id: int) -> Path:
    return Path(data_dir) / GENERATIONS_DIR / str(gen_id)


def migrate_legacy_layout(data_dir: Path, gen_id: int) -> bool:
    """Move `data_dir/{vectors,fulltext}` into generation `gen_id`'s directory (renames, no reindex).

    Safe to repeat after a crash half-way: each store directory moves on its own."""
    target = generation_dir(data_dir, gen_id)
    moved = False
    for name in LEGACY_STORE_DIRS:
        old = Path(data_dir) / name
        if old.is_dir() and not (target / name).exists():
            target.mkdir(parents=True, exist_ok=True)
            os.replace(old, target / name)
            moved = True
    if moved:
        log.info("moved the stores of %s into %s", data_dir, target)
    return moved


class GenerationStores:
    """Opens, publishes and removes one generation's stores for the configured vector backend."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backend = vector_backend(settings)
        self._client: QdrantClient | None = None  # one qdrant-client for every generation (`:memory:` is per client)

    def collection_for(self, gen_id: int) -> str:
        return f"{self.settings.collection}_g{gen_id}" if self.backend.collections else ""

    def open_fulltext(self, gen: Generation) -> TantivyIndex:
        return TantivyIndex(generation_dir(self.settings.data_dir, gen.id) / "fulltext")

    def open(self, gen: Generation, dim: int) -> tuple[TantivyIndex, VectorStore]:
        fulltext = self.open_fulltext(gen)
        try:
            place = VectorPlace(generation_dir(self.settings.data_dir, gen.id), gen.collection,
                                self.client() if self.backend.collections else None)
            return fulltext, self.backend.open(self.settings, place, dim)
        except Exception:
            fulltext.close()
            raise

    def client(self) -> QdrantClient:
        if self._client is None:
            from indexer.stores.qdrant_server import connect

            if not self.settings.qdrant_url:
                raise StoreError("vector_backend=qdrant needs CAIRN_QDRANT_URL")
            self._client = connect(self.settings.qdrant_url, self.settings.qdrant_api_key or None,
                                   attempts=self.settings.qdrant_connect_attempts,
                                   delay=self.settings.qdrant_connect_delay_seconds)
        return self._client

    def adopt_legacy_collection(self) -> str:
        """The collection the layout before generations wrote (named like the alias), if it exists."""
        if not self.backend.collections:
            return ""
        from indexer.stores.qdrant_server import is_plain_collection

        name = self.settings.collection
        return name if is_plain_collection(self.client(), name) else ""

    def publish(self, gen: Generation) -> None:
        """Point the stable alias (`<collection>`) at the generation's collection (a collection of
        the layout before generations already carries that name and serves under it)."""
        alias = self.settings.collection
        if not self.backend.collections or gen.collection in ("", alias):
            return
        from indexer.stores.qdrant_server import alias_target, point_alias

        if alias_target(self.client(), alias) != gen.collection:
            point_alias(self.client(), alias, gen.collection)

    def remove(self, gen: Generation) -> None:
        """Delete a retired or abandoned generation's stores (they must be closed)."""
        shutil.rmtree(generation_dir(self.settings.data_dir, gen.id), ignore_errors=True)
        if self.backend.collections and gen.collection:
            from indexer.stores.qdrant_server import drop_collection

            drop_collection(self.client(), gen.collection)

    def remove_strays(self, keep: Iterable[int]) -> None:
        """Directories of generations no longer recorded (a crash after a swap, before the delete)."""
        root = Path(self.settings.data_dir) / GENERATIONS_DIR
        kept = {str(k) for k in keep}
        for path in root.glob("*") if root.is_dir() else ():
            if path.is_dir() and path.name not in kept:
                log.info("removing the stores of retired generation %s", path.name)
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -- catalog rows of a building generation -------------------------------------------------------


class GenerationRows:
    """The building generation's chunk rows and document stamps, and the swap's two transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def current_stamps(self) -> dict[str, datetime]:
        """doc id → when the catalog last rewrote it (every content or access change restamps)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(documents.c.id, documents.c.indexed_at)).all())

    def built_stamps(self, gen: int) -> dict[str, datetime]:
        t = generation_documents.c
        with self.engine.connect() as conn:
            return dict(conn.execute(select(t.doc_id, t.stamp).where(t.generation == gen)).all())

    def chunk_ids(self, gen: int, doc_ids: Iterable[str] | None = None) -> dict[str, list[tuple[str, str]]]:
        """doc id → [(source, chunk id)] of the generation (all documents when doc_ids is None)."""
        t = generation_chunks.c
        query = select(t.doc_id, t.source, t.id).where(t.generation == gen)
        out: dict[str, list[tuple[str, str]]] = {}
        with self.engine.connect() as conn:
            batches = [None] if doc_ids is None else list(id_batches(sorted(set(doc_ids))))
            for batch in batches:
                rows = conn.execute(query if batch is None else query.where(t.doc_id.in_(batch)))
                for doc_id, source, chunk_id in rows:
                    out.setdefault(doc_id, []).append((source, chunk_id))
        return out

    def record(self, gen: int, built: Sequence[tuple[Document, datetime, Sequence[Chunk]]]) -> None:
        """Make the generation's rows of these documents exactly these chunks, stamped."""
        ids = [doc.id for doc, _, _ in built]
        rows = [{"generation": gen, **chunk_row(c)} for _, _, doc_chunks in built for c in doc_chunks]
        stamps = [{"generation": gen, "doc_id": doc.id, "stamp": stamp, "n_chunks": len(doc_chunks)}
                  for doc, stamp, doc_chunks in built]
        with self.engine.begin() as conn:
            self._forget(conn, gen, ids)
            if rows:
                conn.execute(insert(generation_chunks), rows)
            if stamps:
                conn.execute(insert(generation_documents), stamps)

    def forget(self, gen: int, doc_ids: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            self._forget(conn, gen, doc_ids)

    @staticmethod
    def _forget(conn: Connection, gen: int, doc_ids: Sequence[str]) -> None:
        for batch in id_batches(sorted(set(doc_ids))):
            for table in (generation_chunks, generation_documents):
                conn.execute(delete(table).where(table.c.generation == gen, table.c.doc_id.in_(batch)))

    def drop(self, gen: int) -> None:
        with self.engine.begin() as conn:
            for table in (generation_chunks, generation_documents):
                conn.execute(delete(table).where(table.c.generation == gen))

    def load_documents(self, doc_ids: Sequence[str]) -> list[tuple[Document, datetime]]:
        """The catalog's stored documents as Documents (content as stored, access from their rows)."""
        out = []
        with self.engine.connect() as conn:
            for batch in id_batches(sorted(set(doc_ids))):
                acls = dict(conn.execute(select(chunks.c.doc_id, chunks.c.acl)
                                         .where(chunks.c.doc_id.in_(batch), chunks.c.ordinal == 0)).all())
                rows = conn.execute(select(documents, sources.c.access.label("source_access"))
                                    .select_from(documents.outerjoin(sources, sources.c.name == documents.c.source))
                                    .where(documents.c.id.in_(batch))).all()
                out += [(_document(row, acls.get(row.id)), row.indexed_at) for row in rows]
        return out

    def publish(self, gen: int) -> None:
        """Swap step 1: add the generation's rows missing from `chunks`, so searches of either
        generation find every id they return while both are live."""
        g = generation_chunks
        cols = [c.name for c in chunks.columns]
        query = select(*[g.c[n] for n in cols]).where(g.c.generation == gen, g.c.id.not_in(select(chunks.c.id)))
        with self.engine.begin() as conn:
            conn.execute(insert(chunks).from_select(cols, query))

    def finish_swap(self, gen: Generation, legacy_meta: dict[str, str]) -> None:
        """Swap step 2, one transaction: `chunks` becomes exactly the generation's rows, documents
        take its chunk counts, and the generation becomes the active one."""
        g, d = generation_chunks, generation_documents
        cols = [c.name for c in chunks.columns]
        counts = select(d.c.n_chunks).where(d.c.generation == gen.id, d.c.doc_id == documents.c.id).scalar_subquery()
        with self.engine.begin() as conn:
            conn.execute(delete(chunks))
            conn.execute(insert(chunks).from_select(cols, select(*[g.c[n] for n in cols]).where(g.c.generation == gen.id)))
            conn.execute(update(documents).values(n_chunks=counts)
                         .where(documents.c.id.in_(select(d.c.doc_id).where(d.c.generation == gen.id))))
            for table in (generation_chunks, generation_documents):
                conn.execute(delete(table).where(table.c.generation == gen.id))
            _write_meta(conn, {ACTIVE_KEY: replace(gen, state="active", job_id="").to_json(), BUILDING_KEY: None,
                               **legacy_meta})


def _document(row: Any, acl: Sequence[str] | None) -> Document:
    """Rebuild a Document from its row. Its access is the ACL written on its chunks (or, without
    chunks, its source's access) when that matches the recorded digest; otherwise admins only."""
    access = Access()
    for candidate in (acl, row.source_access):
        try:
            found = Access.of(*(p for p in (candidate or ()) if p != ADMINS))
        except AccessError:
            continue
        if candidate is not None and found.digest() == row.access_digest:
            access = found
            break
    return Document(id=row.id, source=row.source, path=row.path, content=unpack_text(row.content),
                    version=row.version, access=access, kind=row.kind, language=row.language,
                    title=row.title, url=row.url)


def generation_status(engine: Engine) -> dict[str, Any]:
    """What `cairn model status` and the admin console show: the active generation, the one being
    built with its job's progress, and a model requested by `cairn model switch`."""
    active, building = read_generations(engine)
    out: dict[str, Any] = {"active": asdict(active) if active else None, "building": None,
                           "requested_model": json.loads(read_meta(engine, REQUESTED_MODEL_KEY) or "null")}
    if building is not None:
        out["building"] = asdict(building)
        with engine.connect() as conn:
            job = conn.execute(select(jobs.c.state, jobs.c.done, jobs.c.total, jobs.c.error)
                               .where(jobs.c.id == building.job_id)).first() if building.job_id else None
        out["building"]["job"] = dict(job._asdict()) if job else None
    return out


def generation_summary(status: dict[str, Any]) -> str:
    """One line for the admin console: `2` or `2 (building 3: 120/800 documents)`."""
    active, building = status["active"], status["building"]
    text = str(active["id"]) if active else "none"
    if building:
        job = building.get("job") or {}
        text += f" (building {building['id']}: {job.get('done', 0)}/{job.get('total', 0)} documents)"
    return text
