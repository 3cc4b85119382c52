"""Permission tests reuse the connector tests' fake servers and the API tests' harness."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helpers in ("connectors", "api"):  # fake_*.py and harness.py; api_harness.py
    if str(TESTS / helpers) not in sys.path:
        sys.path.insert(0, str(TESTS / helpers))
