"""Redaction measured on the labelled corpus (tests/indexer/redaction_corpus): recall and precision of the
secret detector per category, pinned at 0.98; the table is printed (`pytest -s` shows it)."""
from __future__ import annotations

import itertools

import pytest
from redaction_corpus import build, score

from indexer.secrets import SecretDetector

THRESHOLD = 0.98
# The forms issue 16 found returned verbatim, each a template of the corpus.
ISSUE_FORMS = {
    "pgpassword-env-prefix": "PGPASSWORD=… psql", "mysql-p-attached": "mysql -u root -p<pw>",
    "curl-u": "curl -u admin:<pw>", "sshpass": "sshpass -p '<pw>'", "py-auth-tuple": 'auth=("admin", "<pw>")',
    "json-password-issue": '{"password": "P@ssw0rd!2024"}', "py-mailgun": 'MAILGUN = "key-…"',
    "jira-new-password": "a Jira comment giving a new password", "jira-vault-root": "the vault root password is …",
    "prose-vault-root": "the vault root password is …", "jira-unquoted-env": "unquoted DB_PASSWORD=… in a comment",
    "comment-db-password": "# DB_PASSWORD=…",
}


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return score.load()


def test_corpus_file_is_what_the_templates_build(cases):
    """corpus.jsonl is generated (seeded): editing a template without rebuilding it fails here."""
    assert score.CORPUS.read_text(encoding="utf-8") == build.serialise(build.build()), \
        "corpus.jsonl is stale: run tests/indexer/redaction_corpus/build.py"


def test_corpus_covers_every_category_and_the_forms_of_issue_16(cases):
    secrets = sum(len(c["secrets"]) for c in cases)
    benign = sum(1 for c in cases if not c["secrets"])
    assert secrets >= 300 and benign >= 300
    assert {c["category"] for c in cases} == set(build.CATEGORIES)
    forms = {c["form"] for c in cases if c["secrets"]}
    assert set(ISSUE_FORMS) <= forms
    for case in cases:  # labels are real spans: in the text, in order, not overlapping
        spans = case["secrets"]
        assert all(0 <= s < e <= len(case["text"]) for s, e in spans), case["id"]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), case["id"]


def test_recall_and_precision_per_category_stay_above_the_threshold(cases):
    table = score.score(cases)
    print("\n" + score.table_text(table))
    low = {name: (round(s.recall, 3), round(s.precision, 3), s.misses[:5], s.false[:5])
           for name, s in table.items() if s.recall < THRESHOLD or s.precision < THRESHOLD}
    assert not low, f"below {THRESHOLD}:\n{score.table_text(table)}\n{low}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thresholds_hold_on_other_random_values(seed, monkeypatch):
    """The same templates filled with other random values: the rules fit the forms, not the corpus's draws."""
    monkeypatch.setattr(build, "SEED", seed)
    table = score.score(build.build())
    assert all(s.recall >= THRESHOLD and s.precision >= THRESHOLD for s in table.values()), score.table_text(table)


def test_redacted_corpus_holds_no_labelled_secret(cases):
    """What the screen writes: every labelled secret is gone from the redacted text, lines kept."""
    detector = SecretDetector()
    for case in cases:
        text = case["text"]
        redacted = detector.redact(text).text
        assert redacted.count("\n") == text.count("\n"), case["id"]
        assert not [text[s:e] for s, e in case["secrets"] if text[s:e] in redacted], case["id"]
