"""One markdown table from `bench/eval_locate.py` records: per repository and per set (one records file per set),
each system's acc@1/5/10, MRR, tokens and p50, its ratio to the harness BM25 of the same run at acc@1 and acc@5,
and how many instances `search` answered with nothing (the relevance floor abstaining).

    .venv/bin/python bench/eval_report.py /tmp/eval-set1.jsonl /tmp/eval-set2.jsonl --systems search,locate

With `--against OLD.jsonl` (records of an earlier run: another code version or setting), it also lists every
instance in both runs whose first gold file moved, per system, and how many instances each acc@k gained and
lost: the instance-level view a ranking change is judged on ("moves by at most one instance").
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
    for n, system in enumerate([*(s for s in systems if s != BASELINE), BASELINE]):  # BM25 last, once
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


def first_gold(result: dict) -> int | None:
    """The rank of the first gold file (from the reciprocal rank), None when none was ranked."""
    mrr = result["score"]["mrr"]
    return round(1 / mrr) if mrr > 0 else None


def movements(old: list[dict], new: list[dict], systems: list[str]) -> list[str]:
    """Instances of both runs whose first gold file moved, per system, and acc@k gained/lost per system."""
    before = {r["instance_id"]: r for r in old}
    both = [(before[r["instance_id"]], r) for r in new if r["instance_id"] in before]
    lines = [f"Against the earlier run ({len(both)} instances in both):", ""]
    for system in systems:
        pairs = [(a[system], b[system], b["instance_id"]) for a, b in both if system in a and system in b]
        if not pairs:
            continue
        counts = []
        for k in METRICS[:3]:
            gained = sum(1 for a, b, _ in pairs if b["score"][k] > a["score"][k])
            lost = sum(1 for a, b, _ in pairs if b["score"][k] < a["score"][k])
            counts.append(f"{k} +{gained} -{lost}")
        lines.append(f"- {system}: " + ", ".join(counts))
        for a, b, instance in sorted(pairs, key=lambda p: p[2]):
            ra, rb = first_gold(a), first_gold(b)
            if ra != rb:
                lines.append(f"  - {instance}: first gold file {_rank(ra)} -> {_rank(rb)}")
    return lines


def _rank(rank: int | None) -> str:
    return "not ranked" if rank is None else f"#{rank}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="+", help="eval_locate.py --out files, one per set")
    ap.add_argument("--systems", default="search,locate", help="systems to show besides the harness BM25")
    ap.add_argument("--against", type=Path, default=None,
                    help="records of an earlier run: list the instances that moved between it and these")
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
    if a.against is not None:
        old = load(a.against)
        new = [r for path in a.records for r in load(path)]
        notes += ["", *movements(old, new, systems)]
    print("\n".join([*lines, "", *notes]))


if __name__ == "__main__":
    main()
