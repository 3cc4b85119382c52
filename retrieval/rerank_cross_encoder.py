"""The cross-encoder reranker: a fastembed ONNX cross-encoder rescores the top candidates."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrieval.hits import Candidate
from retrieval.query_analysis import AnalysedQuery
from retrieval.rerank import RerankerError

log = logging.getLogger(__name__)

# Where an ONNX export usually puts the graph, in the order we look.
MODEL_FILES = ("onnx/model.onnx", "model.onnx")
MAX_DOCUMENT_CHARS = 4_000  # the tokenizer truncates to the model's context anyway; this bounds the work


class CrossEncoderReranker:
    """Scores (query.dense_text, candidate text) for the first `top_n` candidates with a cross-encoder.

    Scored candidates come first, ordered by `model_weight` x model score + (1 - model_weight) x
    incoming score, both min-max normalised over the scored candidates, then shifted into [1, 2].
    The others follow in their incoming order with rank-based scores in (0, 1)."""

    def __init__(
        self,
        model: str,
        local_dir: Path | None = None,
        top_n: int = 30,
        threads: int | None = None,
        model_weight: float = 0.8,
        batch_size: int = 32,
    ) -> None:
        if top_n < 1:
            raise RerankerError(f"top_n must be >= 1, got {top_n}")
        if not 0.0 <= model_weight <= 1.0:
            raise RerankerError(f"model_weight must be within [0, 1], got {model_weight}")
        self.model = model
        self.top_n = top_n
        self.model_weight = model_weight
        self.batch_size = batch_size
        self._encoder = load_cross_encoder(model, local_dir, threads)

    def rerank(self, query: AnalysedQuery, candidates: Sequence[Candidate]) -> list[Candidate]:
        head, tail = list(candidates[: self.top_n]), list(candidates[self.top_n:])
        if not head:
            return []
        texts = [document_text(c) for c in head]
        logits = [float(s) for s in self._encoder.rerank(query.dense_text, texts, batch_size=self.batch_size)]
        model_norm = _min_max(logits)
        incoming_norm = _min_max([c.score for c in head])
        scored = []
        for cand, logit, m, inc in zip(head, logits, model_norm, incoming_norm, strict=True):
            blended = self.model_weight * m + (1.0 - self.model_weight) * inc
            feats = {**cand.features, "incoming": cand.score, "cross_encoder": logit}
            scored.append(replace(cand, score=1.0 + blended, features=feats))
        scored.sort(key=lambda c: (-c.score, c.path, c.start_line, c.chunk_id))
        rest = [replace(c, score=(len(tail) - i) / (len(tail) + 1)) for i, c in enumerate(tail)]
        log.debug("cross-encoder %s scored %d candidates, kept %d after them", self.model, len(head), len(tail))
        return scored + rest


def document_text(cand: Candidate) -> str:
    """What the cross-encoder reads for a candidate: a header (path, title, symbol) and the content."""
    header = " · ".join(part for part in (cand.path, cand.title, cand.symbol) if part)
    return f"{header}\n{cand.content}"[:MAX_DOCUMENT_CHARS]


def _min_max(values: list[float]) -> list[float]:
    """Values scaled to [0, 1]; all 0.5 when they are all equal."""
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [0.5] * len(values)
    return [(v - low) / (high - low) for v in values]


def load_cross_encoder(model: str, local_dir: Path | None, threads: int | None) -> Any:
    """A fastembed TextCrossEncoder for `model`, from `local_dir` when given (never downloading then).

    fastembed only loads models it has a description for. A supported name (e.g.
    Xenova/ms-marco-MiniLM-L-6-v2) is loaded from `local_dir` through `specific_model_path`, which
    must then hold that description's ONNX file. Any other name needs `local_dir`: it is registered
    once per process with `TextCrossEncoder.add_custom_model`, naming the ONNX file found there."""
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    known = {m["model"].lower(): m for m in TextCrossEncoder.list_supported_models()}
    options: dict[str, Any] = {}
    if local_dir is not None:
        _register_local(TextCrossEncoder, known, model, Path(local_dir))
        options = {"specific_model_path": str(local_dir), "local_files_only": True}
    elif model.lower() not in known:
        raise RerankerError(
            f"cross-encoder {model!r} is not a fastembed model; give local_dir with its ONNX export "
            f"(a model file {' or '.join(MODEL_FILES)}, tokenizer.json, tokenizer_config.json)"
        )
    try:
        encoder = TextCrossEncoder(model_name=model, threads=threads, **options)
    except Exception as exc:  # fastembed and onnxruntime raise many types; the caller needs one
        raise RerankerError(f"cross-encoder {model!r} could not be loaded from {local_dir or 'fastembed'}: {exc}") from exc
    log.info("cross-encoder %s loaded (local=%s)", model, local_dir is not None)
    return encoder


def _register_local(encoder_cls: Any, known: dict[str, dict], model: str, local_dir: Path) -> None:
    """Check `local_dir` holds the ONNX file fastembed will open, registering unknown names."""
    from fastembed.common.model_description import ModelSource

    if not local_dir.is_dir():
        raise RerankerError(f"cross-encoder directory {local_dir} does not exist")
    description = known.get(model.lower())
    if description is None:
        model_file = next((f for f in MODEL_FILES if (local_dir / f).is_file()), None)
        if model_file is None:
            raise RerankerError(f"no ONNX model in {local_dir}: expected {' or '.join(MODEL_FILES)}")
        # The source is never contacted: specific_model_path makes fastembed read local_dir only.
        encoder_cls.add_custom_model(model, sources=ModelSource(hf=model), model_file=model_file)
        return
    if not (local_dir / description["model_file"]).is_file():
        raise RerankerError(
            f"{local_dir} is loaded as {model!r}, which reads {description['model_file']}; that file is missing"
        )
