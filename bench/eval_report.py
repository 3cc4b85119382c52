"""One markdown table from `bench/eval_locate.py` records: per repository and per set (one records file per set),
each system's acc@1/5/10, MRR, tokens and p50, its ratio to the harness BM25 of the same run at acc@1 and acc@5,
and how many instances `search` answered with nothing (the relevance floor abstaining).

    .venv/bin/python bench/eval_report.py /tmp/eval-set1.jsonl /tmp/eval-set2.jsonl --systems search,locate
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
from pathlib import Path

METRICS = ("acc@1", "acc@5", "acc@10", "mrr")
BASELINE = "bm25"


def load(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror}") from None
    return [json.loads(line) for line in lines if line.strip()]


def means(records: list[dict], system: str) -> dict[str, float] | None:
    scored = [r[system] for r in records if system in r]
    if not scored:
        return None
    row = {m: sum(s["score"][m] for s in scored) / len(scored) for m in METRICS}
    tokens = [s["tokens"] for s in scored if "tokens" in s]
    times = [s["seconds"] for s in scored if "seconds" in s]
    row["tokens"] = statistics.mean(tokens) if tokens else float("nan")
    row["p50"] = statistics.median(times) * 1000 if times else float("nan")
    return row


def rows(records: list[dict], label: str, systems: list[str]) -> list[str]:
    base = means(records, BASELINE)
    out = []
    for n, system in enumerate([*systems, BASELINE]):
        row = means(records, system)
        if row is None:
            continue
        name = "harness BM25" if system == BASELINE else system
        cells = [f"{row[m]:.3f}" for m in METRICS]
        ratios = ["-", "-"]
        if system != BASELINE and base:
            ratios = [f"{row[m] / base[m]:.2f}x" if base[m] else "-" for m in ("acc@1", "acc@5")]
        tokens = "-" if row["tokens"] != row["tokens"] else f"{row['tokens']:,.0f}"
        p50 = "-" if row["p50"] != row["p50"] else f"{row['p50']:,.0f} ms"
        first = f"{label} ({len(records)})" if n == 0 else ""
        out.append(f"| {first} | {name} | " + " | ".join(cells) + f" | {' | '.join(ratios)} | {tokens} | {p50} |")
    return out


def abstentions(records: list[dict]) -> int:
    """Instances whose `search` returned no file at all."""
    return sum(1 for r in records if "search" in r and not r["search"]["ranked"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="+", help="eval_locate.py --out files, one per set")
    ap.add_argument("--systems", default="search,locate", help="systems to show besides the harness BM25")
    a = ap.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    lines = ["| repository | system | acc@1 | acc@5 | acc@10 | MRR | acc@1 / BM25 | acc@5 / BM25 | tokens | p50 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for path in a.records:
        records = load(path)
        if not records:
            raise SystemExit(f"{path} holds no records")
        by_repo: dict[str, list[dict]] = collections.defaultdict(list)
        for r in records:
            by_repo[r["repo"]].append(r)
        for repo, recs in sorted(by_repo.items()):
            lines += rows(recs, repo, systems)
        if len(by_repo) > 1:
            lines += rows(records, f"{path.stem}, all", systems)
        notes.append(f"{path.stem}: search answered nothing on {abstentions(records)} of {len(records)} instances")
    print("\n".join([*lines, "", *notes]))


if __name__ == "__main__":
    main()
