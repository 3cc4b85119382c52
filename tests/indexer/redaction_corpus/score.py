"""Recall and precision of the secret detector on the labelled corpus, per category.

    PYTHONPATH=$PWD .venv/bin/python tests/indexer/redaction_corpus/score.py [--errors]

Recall: secrets the detector redacted with exactly their span / all secrets. Precision: redactions whose
span is exactly a labelled secret / all redactions (so a redaction that eats a neighbour, or only half a
secret, counts against both). `--errors` lists every miss and every false redaction."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.secrets import SecretDetector

CORPUS = Path(__file__).resolve().parent / "corpus.jsonl"


@dataclass
class Score:
    secrets: int = 0
    found: int = 0
    redactions: int = 0
    correct: int = 0
    benign_cases: int = 0
    misses: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.secrets if self.secrets else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.redactions if self.redactions else 1.0


def load(path: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def score(cases: Iterable[dict], detector: SecretDetector | None = None) -> dict[str, Score]:
    detector = detector or SecretDetector()
    table: dict[str, Score] = {}
    for case in cases:
        row = table.setdefault(case["category"], Score())
        labelled = {tuple(s) for s in case["secrets"]}
        made = {(f.start, f.end): f.rule for f in detector.findings(case["text"])}
        row.secrets += len(labelled)
        row.benign_cases += not labelled
        row.found += len(labelled & made.keys())
        row.redactions += len(made)
        row.correct += len(labelled & made.keys())
        text = case["text"]
        row.misses += [f"{case['id']} {case['form']}: {text[s:e]!r}" for s, e in sorted(labelled - made.keys())]
        row.false += [f"{case['id']} {case['form']} ({made[s]}): {text[s[0]:s[1]]!r}" for s in sorted(made.keys() - labelled)]
    return table


def table_text(table: dict[str, Score]) -> str:
    header = (f"{'category':<11} {'secrets':>7} {'found':>6} {'recall':>7} {'redactions':>10} {'correct':>7} "
              f"{'precision':>9} {'benign cases':>12}")
    lines = [header]
    total = Score()
    for name, s in [*table.items(), ("all", total)]:
        if name != "all":
            for attr in ("secrets", "found", "redactions", "correct", "benign_cases"):
                setattr(total, attr, getattr(total, attr) + getattr(s, attr))
        lines.append(f"{name:<11} {s.secrets:>7} {s.found:>6} {s.recall:>7.3f} {s.redactions:>10} {s.correct:>7} "
                     f"{s.precision:>9.3f} {s.benign_cases:>12}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    table = score(load())
    print(table_text(table))
    if "--errors" in argv:
        for s in table.values():
            for line in s.misses:
                print(f"MISS  {line}")
            for line in s.false:
                print(f"FALSE {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
