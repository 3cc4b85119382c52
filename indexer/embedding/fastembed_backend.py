"""The fastembed-backed Embedder (length-sorted batches) and the caching wrapper the pipeline uses."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from indexer.embedding import Embedder, EmbeddingError
from indexer.embedding.cache import EmbeddingCache, text_hash
from indexer.embedding.model_files import ModelLocation
from indexer.models import Chunk

log = logging.getLogger(__name__)

_PROBE = "dimension probe"


class FastEmbedEmbedder:
    """Embeds with fastembed. `model_name` is the location's key, so it names the exact weights.

    Texts are sorted by token count before batching because fastembed pads each batch to its
    longest text; vectors come back in the caller's order. The tokenizer truncates to the model's limit
    (256 tokens for all-MiniLM-L6-v2), so anything past that is not embedded."""

    def __init__(self, location: ModelLocation, batch_size: int = 64, threads: int | None = None) -> None:
        self.location = location
        self.model_name = location.key
        self.batch_size = max(1, batch_size)
        self._model = _load(location, threads or None)
        # Queries get their own single-threaded session, loaded on the first query (so only
        # processes that search pay its ~90 MB). A query is a few dozen tokens: spreading it over
        # every core buys nothing, and ONNX Runtime's idle threads spin for a while after each run,
        # which under concurrent searches burnt ~14 ms of CPU per query (bench/scale_1m.py: 26 vs
        # 40 ms of server CPU per search, 56 vs 41 searches/s at 8 clients).
        self._query_model: Any = self._model if threads == 1 else None
        self._query_lock = threading.Lock()
        # Probed rather than looked up: a local directory may hold a model of another width.
        self.dim = int(self._run(self._model.query_embed, [_PROBE]).shape[1])
        log.info("loaded embedding model %s (dim %d, batch %d)", self.model_name, self.dim, self.batch_size)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = self._lengths(texts) if len(texts) > self.batch_size else [0] * len(texts)
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out[order] = self._run(self._model.passage_embed, [texts[i] for i in order])
        return out

    def _lengths(self, texts: list[str]) -> list[int]:
        """Token counts after truncation (tokenizing is ~1% of embedding), or characters if the
        model keeps no reachable tokenizer."""
        tokenizer = getattr(getattr(self._model, "model", None), "tokenizer", None)
        if tokenizer is None:
            return [len(t) for t in texts]
        return [sum(e.attention_mask) for e in tokenizer.encode_batch(texts)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._run(self._query_session().query_embed, [text])[0]

    def _query_session(self) -> Any:
        if self._query_model is None:
            with self._query_lock:
                if self._query_model is None:
                    self._query_model = _load(self.location, 1)
        return self._query_model

    def _run(self, embed: Callable[..., Iterable[np.ndarray]], texts: list[str]) -> np.ndarray:
        try:
            vectors = np.asarray(list(embed(texts, batch_size=self.batch_size)), dtype=np.float32)
        except Exception as exc:  # onnxruntime and tokenizers raise their own exception types
            raise EmbeddingError(f"embedding with {self.model_name} failed: {exc}") from exc
        return _normalise(vectors)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (most models already do; ones with other pooling may not)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def _load(location: ModelLocation, threads: int | None) -> Any:
    from fastembed import TextEmbedding

    kwargs: dict[str, Any] = {}
    if location.path is not None:
        kwargs["specific_model_path"] = str(location.path)
    cache = str(location.fastembed_cache) if location.fastembed_cache else None
    try:
        return TextEmbedding(location.model_name, cache_dir=cache, threads=threads, **kwargs)
    except Exception as exc:  # fastembed raises bare ValueError/OSError and hub errors
        hint = "" if location.path else " (offline? run `cairn model prepare` where the model can be fetched)"
        raise EmbeddingError(f"cannot load embedding model {location.key}: {exc}{hint}") from exc


class CachedEmbedder:
    """An Embedder that looks vectors up by (model key, content hash) and embeds only the misses.

    Identical texts in one call are embedded once. Queries are not cached."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_name = inner.model_name
        self.dim = inner.dim

    def embed_chunks(self, chunks: Sequence[Chunk]) -> tuple[np.ndarray, int]:
        """Vectors for the chunks in order, and how many texts had to be embedded (cache misses)."""
        return self._embed([c.content_hash for c in chunks], [c.embed_text() for c in chunks])

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        return self._embed([text_hash(t) for t in texts], list(texts))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_texts(texts)[0]

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def _embed(self, hashes: list[str], texts: list[str]) -> tuple[np.ndarray, int]:
        by_hash = dict(zip(hashes, texts, strict=True))  # equal hashes mean equal texts: each is embedded once
        known = self.cache.get_many(self.model_name, by_hash)
        missing = [h for h in by_hash if h not in known]
        if missing:
            fresh = self.inner.embed_documents([by_hash[h] for h in missing])
            self.cache.put_many(self.model_name, zip(missing, fresh, strict=True))
            known.update(zip(missing, fresh, strict=True))
        out = np.empty((len(hashes), self.dim), dtype=np.float32)
        for row, content_hash in enumerate(hashes):
            out[row] = known[content_hash]
        log.debug("embedded %d of %d texts (%d cached)", len(missing), len(hashes), len(hashes) - len(missing))
        return out, len(missing)
