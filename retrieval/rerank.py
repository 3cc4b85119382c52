"""The reranker contract and the registry that builds a reranker from an explicit kind."""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from retrieval.hits import Candidate
from retrieval.query_analysis import AnalysedQuery
from retrieval.rerank_features import FeatureReranker, FeatureWeights

DEFAULT_KIND = "features"


class RerankerError(ValueError):
    """A reranker could not be built: unknown kind, bad options, or a model that does not load."""


class Reranker(Protocol):
    """Reorders candidates for a query: returns them all with `.score` set, best first."""

    def rerank(self, query: AnalysedQuery, candidates: Sequence[Candidate]) -> list[Candidate]: ...


def _build_features(weights: Any = None) -> Reranker:
    if weights is None or isinstance(weights, FeatureWeights):
        return FeatureReranker(weights)
    if not isinstance(weights, Mapping):
        raise RerankerError(f"features weights must be a FeatureWeights or a mapping, got {type(weights).__name__}")
    known = {f.name for f in fields(FeatureWeights)}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise RerankerError(f"unknown feature weights {unknown}; known: {sorted(known)}")
    return FeatureReranker(FeatureWeights(**{k: float(v) for k, v in weights.items()}))


def _build_cross_encoder(
    model: str = "",
    local_dir: str | Path | None = None,
    top_n: int = 30,
    threads: int | None = None,
    model_weight: float = 0.8,
    batch_size: int = 32,
) -> Reranker:
    # Imported here: the module needs RerankerError from this one, and only this kind loads fastembed.
    from retrieval.rerank_cross_encoder import CrossEncoderReranker

    if not model:
        raise RerankerError("the cross-encoder reranker needs a model name (option 'model')")
    if local_dir is None and Path(model).expanduser().is_dir():
        # The cross_encoder_model setting may name a directory of ONNX files: load it under a name of
        # its own (fastembed registers models by name; the path hash keeps two directories apart).
        local_dir = Path(model).expanduser().resolve()
        digest = hashlib.sha256(str(local_dir).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        model = f"local/{local_dir.name}-{digest}"
    return CrossEncoderReranker(
        model, Path(local_dir) if local_dir else None, top_n=top_n, threads=threads,
        model_weight=model_weight, batch_size=batch_size,
    )


RERANKERS: dict[str, Callable[..., Reranker]] = {
    "features": _build_features,
    "cross-encoder": _build_cross_encoder,
}


def build_reranker(kind: str = DEFAULT_KIND, **options: Any) -> Reranker:
    """Build the reranker registered under `kind` ("features" or "cross-encoder") with its options.

    features: weights (FeatureWeights or a mapping of overrides).
    cross-encoder: model (a fastembed name, or a directory holding an ONNX export), local_dir, top_n,
    threads, model_weight (see CrossEncoderReranker)."""
    factory = RERANKERS.get(kind)
    if factory is None:
        raise RerankerError(f"unknown reranker kind {kind!r}; choose one of {sorted(RERANKERS)}")
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise RerankerError(f"bad options for the {kind!r} reranker: {exc}") from exc
    return factory(**options)
