"""bench/eval_report.py turns eval_locate.py records into the markdown table of docs/benchmarks.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "bench" / "eval_report.py"


def record(repo: str, search: tuple[float, float, float, float], bm25: tuple[float, float, float, float],
           ranked: list[str], tokens: int, seconds: float) -> dict:
    def score(values):
        return dict(zip(("acc@1", "acc@5", "acc@10", "mrr"), values, strict=True))
    return {"repo": repo, "search": {"score": score(search), "ranked": ranked, "tokens": tokens, "seconds": seconds},
            "bm25": {"score": score(bm25), "ranked": ["x.py"]}}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_means_ratios_and_abstentions_per_repository_and_set(tmp_path):
    records = [record("a/one", (1, 1, 1, 1), (0, 1, 1, 0.5), ["a.py"], 100, 0.1),
               record("a/one", (0, 1, 1, 0.5), (0, 0, 1, 0.2), ["b.py"], 300, 0.3),
               record("b/two", (0, 0, 0, 0), (1, 1, 1, 1), [], 0, 0.2)]
    path = tmp_path / "set1.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = run(str(path), "--systems", "search")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "| a/one (2) | search | 0.500 | 1.000 | 1.000 | 0.750 | - | 2.00x | 200 | 200 ms |" in lines
    assert "|  | harness BM25 | 0.000 | 0.500 | 1.000 | 0.350 | - | - | - | - |" in lines
    # the whole set: acc@1 1/3 against BM25's 1/3, acc@5 2/3 against 2/3
    assert "| set1, all (3) | search | 0.333 | 0.667 | 0.667 | 0.500 | 1.00x | 1.00x | 133 | 200 ms |" in lines
    assert "set1: search answered nothing on 1 of 3 instances" in lines
    named = run(str(path), "--systems", "search,bm25").stdout.splitlines()  # BM25 named too: still one row of it
    assert sum("| harness BM25 |" in line for line in named) == sum("| harness BM25 |" in line for line in lines) == 3


def test_a_missing_or_empty_file_is_a_short_error(tmp_path):
    proc = run(str(tmp_path / "none.jsonl"))
    assert proc.returncode != 0 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "empty.jsonl").write_text("")
    proc = run(str(tmp_path / "empty.jsonl"))
    assert proc.returncode != 0 and "holds no records" in proc.stderr


def test_against_an_earlier_run_lists_the_instances_that_moved(tmp_path):
    def rec(instance: str, mrr: float, acc5: int) -> dict:
        r = record("a/one", (1 if mrr == 1 else 0, acc5, 1 if mrr else 0, mrr), (0, 0, 0, 0), ["a.py"], 10, 0.1)
        r["instance_id"] = instance
        return r
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in [rec("i1", 1.0, 1), rec("i2", 1 / 6, 0), rec("i3", 0.5, 1),
                                                           rec("gone", 1.0, 1)]))
    new.write_text("".join(json.dumps(r) + "\n" for r in [rec("i1", 1.0, 1), rec("i2", 0.25, 1), rec("i3", 0.0, 0),
                                                           rec("added", 1.0, 1)]))
    proc = run(str(new), "--systems", "search", "--against", str(old))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Against the earlier run (3 instances in both):" in lines
    assert "- search: acc@1 +0 -0, acc@5 +1 -1, acc@10 +0 -1" in lines
    assert "  - i2: first gold file #6 -> #4" in lines and "  - i3: first gold file #2 -> not ranked" in lines
    assert not [line for line in lines if "i1:" in line or "gone" in line or "added" in line]
