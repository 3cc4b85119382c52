"""A short, bounded run of bench/load_test.py (10 clients, 8 s, reindexes running): no request may
fail, and the report carries the percentiles and the server's memory, so a regression fails CI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD_TEST = Path(__file__).resolve().parents[2] / "bench" / "load_test.py"


def test_ten_clients_mixing_search_context_and_mcp_during_a_reindex_get_no_errors(make_repo, tmp_path):
    repo = make_repo("shop")
    for i in range(12):
        repo.write(f"shop/orders_{i}.py", f'"""Orders {i}."""\n\n\nclass Session{i}:\n'
                                          f'    def prepare_url(self, url):\n        return url.strip() + "/{i}"\n\n\n'
                                          f'def get_auth_from_url(url):\n    """Credentials from url {i}."""\n'
                                          f'    return url.split("@")[0]\n')
    repo.commit("orders")
    proc = subprocess.run([sys.executable, str(LOAD_TEST), "--repo", str(repo.root), "--clients", "10",
                           "--duration", "8", "--data-dir", str(tmp_path / "data"),
                           # 8 s is all warm-up for memory: flatness is judged by the full run (see docs/benchmarks.md)
                           "--max-rss-growth-mb", "1024"],
                          capture_output=True, text=True, timeout=540, check=False)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0, report["error_samples"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(report["kinds"]) == {"search", "context", "mcp"}
    for kind in report["kinds"].values():
        assert kind["requests"] > 0 and 0 < kind["p50_ms"] <= kind["p95_ms"] <= kind["p99_ms"] <= kind["max_ms"]
    assert report["reindex_jobs"].get("succeeded", 0) >= 1 and set(report["reindex_jobs"]) == {"succeeded"}
    assert report["rss"]["start_mb"] > 0 and report["rss"]["samples"] >= 5
    assert report["server_log_tracebacks"] == 0
