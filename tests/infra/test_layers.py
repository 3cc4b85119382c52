"""The layer contracts in pyproject.toml hold on the tree, and an import across the layers breaks them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGES = ("indexer", "connectors", "retrieval", "api", "workers")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
LAYERS = "Layers: api > workers > retrieval > indexer > connectors"
FLOOR = "The indexer's vocabulary floor imports none of its rooms"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts on the packages under `tree` (and only those)."""
    # A wide console keeps each contract's name on one line; no cache, so a copy is analysed afresh.
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run([LINT_IMPORTS, "--no-cache", str(PYPROJECT)], check=False, cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


def broken_contracts(output: str) -> set[str]:
    """Names of the contracts reported broken (a line reads `<name> BROKEN` or `<name> BROKEN (n ignored imports)`)."""
    return {line.partition(" BROKEN")[0].strip() for line in output.splitlines() if " BROKEN" in line}


def test_the_tree_keeps_every_contract() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{LAYERS} KEPT" in run.stdout
    assert f"{FLOOR} KEPT" in run.stdout
    assert "Contracts: 2 kept, 0 broken." in run.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("indexer/models.py", "import api", LAYERS),  # the vocabulary reaching the top
    ("retrieval/fusion.py", "from workers import tasks", LAYERS),  # retrieval starting Celery tasks
    ("workers/batches.py", "from api import app", LAYERS),  # workers importing api
    ("connectors/base.py", "from indexer.catalog import Catalog", LAYERS),  # a connector past the floor
    ("indexer/settings.py", "from indexer.stores import StoreError", FLOOR),  # the floor reaching a room
    ("indexer/scratch.py", "from indexer.models import Document", FLOOR),  # a module placed nowhere
], ids=["indexer-imports-api", "retrieval-imports-workers", "workers-imports-api", "connectors-import-catalog",
        "floor-imports-a-room", "unplaced-indexer-module"])
def test_an_import_across_the_layers_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                                         contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    target = tmp_path / module
    original = target.read_text(encoding="utf-8") if target.exists() else '"""A new module."""\n'
    target.write_text(f"{original}\n{line}  # noqa\n", encoding="utf-8")

    run = lint_imports(tmp_path)

    assert run.returncode == 1, run.stdout + run.stderr
    assert broken_contracts(run.stdout) == {contract}, run.stdout
