"""Counts the inputs each fuzz target tried and prints the totals at the end of the run."""
from __future__ import annotations

from collections import Counter

import pytest

TRIED: Counter[str] = Counter()


@pytest.fixture
def tried() -> Counter[str]:
    return TRIED


def pytest_terminal_summary(terminalreporter) -> None:
    if TRIED:
        terminalreporter.write_sep("-", "fuzz inputs tried")
        for target, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{target}: {count}")
        terminalreporter.write_line(f"total: {sum(TRIED.values())}")
