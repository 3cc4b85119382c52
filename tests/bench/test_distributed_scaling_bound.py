"""bench/distributed_scaling.py's CPU ceiling: one worker's embedding CPU against the 2-worker run's CPU of every
process spread over the cores, with the embed workers named by the run (not guessed from process names)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "distributed_scaling.py"


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location("distributed_scaling", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_ceiling_counts_only_the_run_s_embed_workers(scaling):
    one = scaling.Result("1", 10, 100, 70.0, per_process={"api": 1.0, "sync": 0.5, "embedder": 60.0},
                         embedders=["embedder"])
    two = scaling.Result("2", 10, 100, 36.0, per_process={"api": 1.0, "sync": 0.5, "e1": 31.0, "e2": 31.5},
                         embedders=["e1", "e2"])
    assert scaling.cpu_bound(one, two) == pytest.approx(60.0 / (64.0 / 2))
    assert scaling.cpu_bound(one, two, cores=1) == pytest.approx(60.0 / 64.0)
    idle = scaling.Result("2", 0, 0, 0.0)
    assert scaling.cpu_bound(one, idle) == 0.0
