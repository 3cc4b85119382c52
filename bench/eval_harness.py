"""The retrieval eval harness (../shared/eval/run_swebench.py) loaded as a module, for the scripts here that
reuse its checkout, scoring and BM25 functions instead of copying them."""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import subprocess
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
    ap.add_argument("--instances", default="",
                    help="only these instance ids (comma-separated), e.g. to finish an interrupted run")


def instances_by_repo(a: argparse.Namespace) -> dict[str, list[dict]]:
    """The instances the options select, grouped by repository in the file's order (--repos, --instances;
    --limit applies per repository afterwards). Unknown --instances ids are an error, not an empty run."""
    path = a.jsonl or Path(a.harness).parent / "swebench_dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    repos = set(filter(None, a.repos.split(",")))
    wanted = set(filter(None, a.instances.split(",")))
    missing = wanted - {r["instance_id"] for r in rows}
    if missing:
        raise SystemExit(f"no such instances in {path}: {', '.join(sorted(missing))}")
    by_repo: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if (not repos or r["repo"] in repos) and (not wanted or r["instance_id"] in wanted):
            by_repo[r["repo"]].append(r)
    return {repo: items[: a.limit or None] for repo, items in sorted(by_repo.items())}


def clone_for(repo: str, mirror_root: str, work: Path) -> bool:
    """A no-checkout clone of `repo` at `work`, sharing the objects of its mirror (`<owner>+<name>[/repo]`).
    False when there is no mirror of it."""
    if work.is_dir():
        return True
    mirror = Path(mirror_root) / repo.replace("/", "+") / "repo"
    if not mirror.is_dir():
        mirror = Path(mirror_root) / repo.replace("/", "+")
    if not mirror.is_dir():
        return False
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(mirror), str(work)], check=True)
    return True
