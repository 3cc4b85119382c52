"""Two versions of Cairn ranked side by side on the harness's instances, with one embedding pass.

For a change that must not move the ranking (a refactoring, a layout change), run both versions on the
same checkouts: each instance is checked out once (the harness's `checkout`), indexed by version A in its
own data directory, then by version B in another after A's new embedding-cache rows were copied into B's
catalog (the cache is keyed by model and the hash of exactly the embedded text, so B embeds only text A
never saw, and both rank with identical vectors), and searched by both as the harness searches
(`cairn search TEXT --limit 50 --source NAME --json`). Reported: instances whose distinct-file rankings
differ, and the harness's scores of each version.

    git worktree add /tmp/a <commit-a>; git worktree add /tmp/b <commit-b>
    .venv/bin/python bench/eval_equivalence.py --a /tmp/a --b /tmp/b --mirror /work/.mirror \
        --repos astropy/astropy --work /tmp/equiv --out /tmp/equiv.jsonl
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from eval_harness import add_eval_arguments, clone_for, instances_by_repo, load_harness  # noqa: E402

CATALOG = "catalog.sqlite3"


def seed_cache(source: Path, target: Path) -> int:
    """Copy the embedding-cache rows of catalog `source` that `target` lacks; how many were copied. A target
    catalog that does not exist yet is made with the cache table alone (the version creates the rest)."""
    if not source.exists():
        return 0
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(source) as src:
            ddl = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'embedding_cache'"
                              ).fetchone()
        if ddl is None:
            return 0
        with sqlite3.connect(target) as conn:
            conn.execute(ddl[0])
    with sqlite3.connect(target) as conn:
        conn.execute("ATTACH DATABASE ? AS a", (str(source),))
        before = conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
        conn.execute("INSERT OR IGNORE INTO embedding_cache SELECT * FROM a.embedding_cache")
        after = conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
    return int(after - before)


def cairn(cairn_bin: str, code: Path, data: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(code), CAIRN_DATA_DIR=str(data))
    done = subprocess.run([cairn_bin, *args], check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"cairn {args[0]} ({code}) exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="checkout of version A (indexes first)")
    ap.add_argument("--b", type=Path, required=True, help="checkout of version B")
    add_eval_arguments(ap)
    ap.add_argument("--cairn", default=str(ROOT / ".venv" / "bin" / "cairn"))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    h = load_harness(a.harness)
    by_repo = instances_by_repo(a)
    a.work.mkdir(parents=True, exist_ok=True)
    data = {"a": a.work / "data-a", "b": a.work / "data-b"}
    code = {"a": a.a.resolve(), "b": a.b.resolve()}
    totals: dict[str, collections.Counter[str]] = {side: collections.Counter() for side in code}
    out = open(a.out, "w", encoding="utf-8") if a.out else None  # noqa: SIM115 (written per instance)
    n = differ = 0
    for repo, items in by_repo.items():
        if not clone_for(repo, a.mirror, a.work / repo.replace("/", "__")):
            raise SystemExit(f"no clone of {repo} under {a.mirror}")
        work = a.work / repo.replace("/", "__")
        name = repo.split("/")[1]
        for row in items:
            h.checkout(str(work), row["base_commit"])
            rec: dict = {"instance_id": row["instance_id"], "gold": row["gold_files"]}
            for side in ("a", "b"):
                if side == "b":
                    rec["seeded"] = seed_cache(data["a"] / CATALOG, data["b"] / CATALOG)
                started = time.time()
                summary = h.last_json(cairn(a.cairn, code[side], data[side], "index", str(work), "--name", name,
                                            "--access", "public", "--json"))
                index_s = time.time() - started
                found = json.loads(cairn(a.cairn, code[side], data[side], "search", row["problem_statement"],
                                         "--limit", "50", "--source", name, "--json"))
                ranked = h.distinct_paths(found.get("results", []))
                scores = h.score(ranked, row["gold_files"])
                totals[side].update(scores)
                rec[side] = {"ranked": ranked, "score": scores, "embedded": summary.get("chunks_embedded"),
                             "index_s": round(index_s, 1), "partial": found.get("partial")}
            same = rec["a"]["ranked"] == rec["b"]["ranked"]
            differ += not same
            n += 1
            print(f"{row['instance_id']}: {'same' if same else 'DIFFERENT'} ranking; embedded a="
                  f"{rec['a']['embedded']} b={rec['b']['embedded']} (seeded {rec['seeded']})", file=sys.stderr)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
    if not n:
        sys.exit("no instance evaluated")
    print(f"instances: {n}, rankings that differ: {differ}")
    cols = ["acc@1", "acc@5", "acc@10", "mrr"]
    print("version " + " ".join(f"{c:>8}" for c in cols))
    for side in ("a", "b"):
        print(f"{side:7} " + " ".join(f"{totals[side][c] / n:8.3f}" for c in cols))


if __name__ == "__main__":
    main()
