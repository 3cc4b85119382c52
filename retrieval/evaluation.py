"""Retrieval evaluation on an organization's own queries: recall@k, acc@k, hit@k, MRR and misses, with the
same definitions as the SWE-bench harness (../shared/eval/run_swebench.py)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from indexer.models import Principal
from retrieval.permissions import Scope

KS = (1, 5, 10)


@dataclass(frozen=True)
class EvalQuery:
    query: str
    source: str
    expected_paths: tuple[str, ...]


class Searcher(Protocol):
    def search(self, text: str, principal: Principal | None, scope: Scope = ..., limit: int = ...): ...


def load_queries(path: Path) -> list[EvalQuery]:
    """Read JSONL lines of {"query", "source", "expected_paths"}; a bad line is an error with its number."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(EvalQuery(str(row["query"]), str(row.get("source", "")),
                                 tuple(str(p) for p in row["expected_paths"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: expected {{query, source, expected_paths}}: {exc}") from None
        if not out[-1].expected_paths or not out[-1].query.strip():
            raise ValueError(f"{path}:{n}: query and expected_paths must not be empty")
    if not out:
        raise ValueError(f"{path}: no queries")
    return out


def distinct_paths(paths: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(p, None)
    return list(seen)


def score_ranking(ranked: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    gold = set(expected)
    m: dict[str, float] = {}
    for k in KS:
        top = set(ranked[:k])
        m[f"recall@{k}"] = len(top & gold) / len(gold)
        m[f"acc@{k}"] = float(gold <= top)
        m[f"hit@{k}"] = float(bool(top & gold))
    m["mrr"] = next((1.0 / (i + 1) for i, p in enumerate(ranked) if p in gold), 0.0)
    return m


@dataclass
class EvalReport:
    n: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    misses: list[dict] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        return {k: round(v / self.n, 4) for k, v in self.totals.items()} if self.n else {}

    def as_dict(self) -> dict:
        return {"queries": self.n, "metrics": self.mean(), "misses": self.misses}

    def render(self) -> str:
        lines = [f"queries: {self.n}"] + [f"{k:>10}: {v:.3f}" for k, v in self.mean().items()]
        lines.extend(f"miss: {miss['query'][:80]!r} expected {miss['expected']} got {miss['top'][:5]}"
                     for miss in self.misses)
        return "\n".join(lines)


def evaluate_queries(searcher: Searcher, principal: Principal, queries: Sequence[EvalQuery],
                     limit: int = 10) -> EvalReport:
    report = EvalReport()
    for q in queries:
        scope = Scope(sources=(q.source,) if q.source else ())
        hits = searcher.search(q.query, principal, scope, limit=max(limit, 10) * 3).hits
        ranked = distinct_paths([h.path for h in hits])
        metrics = score_ranking(ranked, q.expected_paths)
        report.n += 1
        for k, v in metrics.items():
            report.totals[k] = report.totals.get(k, 0.0) + v
        if metrics["recall@10"] < 1.0:
            report.misses.append({"query": q.query, "expected": list(q.expected_paths), "top": ranked[:10]})
    return report
