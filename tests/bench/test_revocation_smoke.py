"""A short run of bench/revocation_latency.py (30 items per product, a 3 s permissions interval, a 1 s
scheduler tick): every tightening is applied, by the pass or the webhook, the victim loses exactly that item,
and the report carries finite latencies, the scheduler's intervals and the idle pass's requests, so the
benchmark cannot quietly report nonsense."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "revocation_latency.py"
PRODUCTS = ("gitlab", "jira", "wiki")


def test_revocations_are_measured_by_polling_and_by_webhook(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--docs", "30", "--samples", "2", "--webhook-samples", "2",
                           "--permission-interval", "3", "--scheduler-tick", "1", "--poll-every", "0.2",
                           "--data-dir", str(tmp_path / "data"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    assert report["errors"] == [] and report["passed"], report["errors"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["settings"] == {"permission_sync_interval_seconds": 3, "scheduler_tick_seconds": 1.0,
                                  "defaults": False, "server_env": ["CAIRN_DATA_DIR",
                                                                    "CAIRN_PERMISSION_SYNC_INTERVAL_SECONDS",
                                                                    "CAIRN_SCHEDULER_TICK_SECONDS"]}
    for mode, count in (("polling", 2), ("webhook", 2)):
        for product in PRODUCTS:
            summary = report[mode][product]
            assert summary["n"] == count == len(summary["samples"])
            assert 0 < summary["min"] <= summary["median"] <= summary["max"]
            for sample in summary["samples"]:
                assert math.isfinite(sample["latency_s"]) and 0 < sample["latency_s"] < 60, sample
                # the victim read and found the item before, and lost it (not the source) after
                assert sample["victim_found_it_before"] is True and sample["victim_finds_it_after"] is False
                assert sample["victim_control_status_after"] == 200
                assert sample["applied_by"] is not None and sample["error"] == ""
                if mode == "polling":  # nothing but a permissions pass reads access between syncs here
                    assert sample["applied_by"].startswith("permissions"), sample
                else:
                    assert sample["applied_by"] in ("webhook", "permissions (scheduled)"), sample
        kinds = {s["kind"] for p in PRODUCTS for s in report[mode][p]["samples"]}
        assert len(kinds) >= 5  # several kinds of tightening per mode, not one repeated
    assert report["content_syncs_during_measurement"] == 0
    for product in PRODUCTS:
        idle = report["idle_pass"][product]
        assert idle["documents"] >= 30 and idle["checked"] == idle["documents"]
        assert idle["requests"] == sum(idle["by_endpoint"].values()) > 0
        assert idle["requests_per_100_documents"] == round(100 * idle["requests"] / idle["documents"], 1)
        assert 0 < idle["seconds"] < 30
        scheduler = report["scheduler"][product]
        assert scheduler["scheduled_passes"] >= 1 and set(scheduler["states"]) <= {"succeeded", "cancelled"}
    assert any(report["scheduler"][p]["interval_between_starts_s"]["n"] for p in PRODUCTS)
    assert report["server_log_tracebacks"] == 0
