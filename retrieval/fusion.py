"""Reciprocal rank fusion: several ranked id lists become one list with a fused score per id."""
from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[str]],
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Fuse ranked lists: an id at 1-based rank r in list i earns weights[i] / (k + r).

    Only an id's first (best) occurrence in a list counts. Ids come back best first; ties keep
    the order in which the ids were first seen (list by list, rank by rank), so the output is
    deterministic for a given input."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if weights is None:
        weights = [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ValueError(f"got {len(weights)} weights for {len(lists)} lists")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")
    scores: dict[str, float] = {}
    for ids, weight in zip(lists, weights, strict=True):
        seen: set[str] = set()
        for rank, item in enumerate(ids, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
