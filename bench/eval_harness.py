"""The retrieval eval harness (../shared/eval/run_swebench.py) loaded as a module, for the scripts here that
reuse its checkout, scoring and BM25 functions instead of copying them."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "eval" / "run_swebench.py"


def load_harness(path: Path = DEFAULT) -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_swebench", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the harness from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_eval_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every eval script here takes, as the harness names them."""
    ap.add_argument("--mirror", required=True, help="folder of full-history clones, as for the harness")
    ap.add_argument("--harness", type=Path, default=DEFAULT)
    ap.add_argument("--jsonl", type=Path, default=None, help="instances (default: the harness's dev set)")
    ap.add_argument("--repos", default="")
    ap.add_argument("--limit", type=int, default=0, help="at most N instances per repository")
    ap.add_argument("--work", type=Path, required=True, help="checkouts and the data directories")
