"""Qdrant server (or cluster) vector store through qdrant-client, with the same payload and filter as Edge."""
from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qdrant_client import QdrantClient, models
from qdrant_client.common.version_check import is_compatible
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

from indexer.stores import ScoredId, SearchFilter, StoreError, Vector, VectorPoint
from indexer.stores.payload import KEYWORD_INDEXES, SCROLL_PAGE, UPSERT_BATCH, chunk_payload

log = logging.getLogger(__name__)

# What qdrant-client raises for server errors, transport failures (httpx/grpc wrapped) and local mode.
_CLIENT_ERRORS = (ApiException, OSError, ValueError, RuntimeError)


def qdrant_filter(flt: SearchFilter) -> models.Filter:
    must: list[models.Condition] = [models.FieldCondition(key=name, match=models.MatchAny(any=list(values)))
                                    for name, values in flt.field_values()]
    excluded = flt.excluded()
    if excluded is None:
        return models.Filter(must=must)
    (field, values), (lacking, value) = excluded
    stale_restricted = models.Filter(
        must=[models.FieldCondition(key=field, match=models.MatchAny(any=list(values)))],
        must_not=[models.FieldCondition(key=lacking, match=models.MatchValue(value=value))])
    return models.Filter(must=must, must_not=[stale_restricted])


def connect(url: str, api_key: str | None = None, timeout: int = 10, attempts: int = 1,
            delay: float = 2.0) -> QdrantClient:
    """A client for `url` that has answered; `:memory:` is qdrant-client's in-process local mode (tests,
    demos). A server that does not answer is tried `attempts` times, `delay` seconds apart (it may still
    be starting beside this process), then StoreError says which URL, how long, and the last error."""
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        try:
            version = client.info().version
        except _CLIENT_ERRORS as exc:
            client.close()
            error = _scrubbed(f"{type(exc).__name__}: {exc}", url)
            if isinstance(exc, UnexpectedResponse) and 400 <= (exc.status_code or 0) < 500:  # answered: no retry helps
                raise StoreError(f"the Qdrant server at {_shown(url)} refused Cairn ({exc.status_code} "
                                 f"{exc.reason_phrase}): check CAIRN_QDRANT_API_KEY and CAIRN_QDRANT_URL") from exc
            if attempt == attempts:
                message = (f"cannot reach the Qdrant server at {_shown(url)}: {attempts} attempt(s) over "
                           f"{time.monotonic() - started:.1f} s, the last failed with {error}")
                log.error("%s; check CAIRN_QDRANT_URL and that the server is up", message)
                raise StoreError(message) from exc
            log.warning("Qdrant server at %s not reachable (attempt %d of %d): %s; trying again in %.1f s",
                        _shown(url), attempt, attempts, error, delay)
            time.sleep(delay)
            continue
        log.info("connected to Qdrant %s at %s", version, _shown(url))
        if not is_compatible(importlib.metadata.version("qdrant-client"), version):
            log.warning("Qdrant server %s and qdrant-client %s differ by more than one minor version: calls may "
                        "fail or behave differently", version, importlib.metadata.version("qdrant-client"))
        return client
    raise StoreError("qdrant_connect_attempts must be at least 1")


def _scrubbed(text: str, url: str) -> str:
    """An error's text without the URL's password, should the transport have quoted the URL."""
    password = urlsplit(url).password
    return text.replace(url, _shown(url)).replace(password, "***") if password else text


def _shown(url: str) -> str:
    """The URL without credentials (a user:password@ part), as logs and errors may show it."""
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


class QdrantServerStore:
    """`VectorStore` on a Qdrant collection; creates it (cosine, keyword payload indexes) if missing.

    Accepts a URL or a ready `QdrantClient` (e.g. `QdrantClient(path=...)`); a client passed in is
    not closed by `close()`."""

    def __init__(self, url_or_client: str | QdrantClient, collection: str, dim: int,
                 api_key: str | None = None, timeout: int = 10):
        self.collection = collection
        self.dim = dim
        self._owns_client = not isinstance(url_or_client, QdrantClient)
        try:
            self.client = (url_or_client if isinstance(url_or_client, QdrantClient)
                           else connect(url_or_client, api_key, timeout))
            self._ensure_collection()
        except _CLIENT_ERRORS as exc:
            raise StoreError(f"cannot open Qdrant collection {collection!r}: {exc}") from exc

    def _ensure_collection(self) -> None:
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            )
            log.info("created Qdrant collection %s (dim %d)", self.collection, self.dim)
        info = self.client.get_collection(self.collection)
        size = getattr(info.config.params.vectors, "size", None)
        if size != self.dim:
            raise StoreError(f"Qdrant collection {self.collection!r} holds {size}-d vectors, expected {self.dim}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode warns that indexes have no effect
            for name in KEYWORD_INDEXES:
                if name not in (info.payload_schema or {}):
                    self.client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CLIENT_ERRORS as exc:
            raise StoreError(f"Qdrant {what} on {self.collection!r} failed: {exc}") from exc

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [
                models.PointStruct(id=p.chunk.id, vector=[float(x) for x in p.vector], payload=chunk_payload(p.chunk))
                for p in points[start:start + UPSERT_BATCH]
            ]
            self._call("upsert", self.client.upsert, self.collection, points=batch, wait=True)
        log.debug("qdrant upsert: %d points", len(points))

    def delete(self, chunk_ids: Iterable[str]) -> None:
        ids: list[Any] = list(chunk_ids)
        if ids:
            self._call("delete", self.client.delete, self.collection,
                       points_selector=models.PointIdsList(points=ids), wait=True)

    def search(self, vector: Vector, flt: SearchFilter, limit: int) -> list[ScoredId]:
        """Nearest chunks among those the filter admits; the filter is part of the server query."""
        if flt.matches_nothing or limit <= 0:
            return []
        response = self._call("query", self.client.query_points, self.collection,
                              query=[float(x) for x in vector], query_filter=qdrant_filter(flt),
                              limit=limit, with_payload=False)
        return [ScoredId(str(p.id), float(p.score)) for p in response.points]

    def ids(self, source: str | None = None) -> set[str]:
        flt = None
        if source is not None:
            flt = models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))])
        out: set[str] = set()
        offset: Any = None
        while True:
            records, offset = self._call("scroll", self.client.scroll, self.collection, scroll_filter=flt,
                                         limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False)
            out.update(str(r.id) for r in records)
            if offset is None:
                return out

    def optimize(self) -> bool:
        """Nothing to do here: a Qdrant server runs its optimizers in the background by itself."""
        return False

    def flush(self) -> None:
        """Nothing to do here: `upsert` and `delete` wait until the server has persisted them."""

    @property
    def path(self) -> None:
        """The vectors live on the server, not in this node's data dir."""
        return None

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


# -- generations: one collection per index generation, an alias naming the serving one -----------

def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection an alias points at (None when there is no such alias)."""
    try:
        found = client.get_aliases().aliases
    except _CLIENT_ERRORS as exc:
        raise StoreError(f"cannot list Qdrant aliases: {exc}") from exc
    return next((a.collection_name for a in found if a.alias_name == alias), None)


def is_plain_collection(client: QdrantClient, name: str) -> bool:
    """A real collection of that name, not an alias (collection_exists resolves aliases)."""
    try:
        return client.collection_exists(name) and alias_target(client, name) is None
    except _CLIENT_ERRORS as exc:
        raise StoreError(f"cannot look up Qdrant collection {name!r}: {exc}") from exc


def point_alias(client: QdrantClient, alias: str, collection: str) -> None:
    """Make `alias` name `collection`, in one alias update (readers switch atomically). A plain
    collection holding the alias's name (the layout before generations) is dropped first."""
    if is_plain_collection(client, alias):
        drop_collection(client, alias)
    operations: list[Any] = []
    if alias_target(client, alias) is not None:
        operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    operations.append(models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
    try:
        client.update_collection_aliases(change_aliases_operations=operations)
    except _CLIENT_ERRORS as exc:
        raise StoreError(f"cannot point Qdrant alias {alias!r} at {collection!r}: {exc}") from exc
    log.info("Qdrant alias %s now names %s", alias, collection)


def drop_collection(client: QdrantClient, name: str) -> None:
    """Delete a collection (never through an alias: that would delete the serving one)."""
    if not is_plain_collection(client, name):
        return
    try:
        client.delete_collection(name)
    except _CLIENT_ERRORS as exc:
        raise StoreError(f"cannot delete Qdrant collection {name!r}: {exc}") from exc
    log.info("deleted Qdrant collection %s", name)
