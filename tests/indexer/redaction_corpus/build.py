"""Builds the labelled redaction corpus (corpus.jsonl next to this file) from the templates, deterministically.

    .venv/bin/python tests/indexer/redaction_corpus/build.py          # rewrite corpus.jsonl
    .venv/bin/python tests/indexer/redaction_corpus/build.py --check  # exit 1 when the file is stale

One JSON object per line: `id`, `category`, `form` (the template's name), `text`, and `secrets`, the
[start, end) character spans of every secret in the text (empty for a benign case). Each secret template
is rendered until its category holds at least SECRETS_PER_CATEGORY secrets, each benign template until
BENIGN_PER_CATEGORY benign cases; filler lines of the category go around some cases. Notebook cases are
real .ipynb JSON (the secret's span is that of its JSON-escaped form, which is what the indexer reads)."""
from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(HERE.parent))

from redaction_corpus import templates  # noqa: E402
from redaction_corpus.values import BENIGN, SECRETS  # noqa: E402

CORPUS = HERE / "corpus.jsonl"
SEED = 16
SECRETS_PER_CATEGORY = 60
BENIGN_PER_CATEGORY = 45
CATEGORIES = {
    "code": (templates.CODE_SECRETS, templates.CODE_BENIGN),
    "shell": (templates.SHELL_SECRETS, templates.SHELL_BENIGN),
    "ci": (templates.CI_SECRETS, templates.CI_BENIGN),
    "config": (templates.CONFIG_SECRETS, templates.CONFIG_BENIGN),
    "dockerfile": (templates.DOCKERFILE_SECRETS, templates.DOCKERFILE_BENIGN),
    "notebook": (templates.NOTEBOOK_SECRETS, templates.NOTEBOOK_BENIGN),
    "ticket": (templates.TICKET_SECRETS, templates.TICKET_BENIGN),
    "prose": (templates.PROSE_SECRETS, templates.PROSE_BENIGN),
}
_SLOT = re.compile(r"«(\w+)»|§(\w+)§")


def render(template: str, rng: random.Random) -> tuple[str, list[str]]:
    """The template with its slots filled, and the secret values in it."""
    secrets: list[str] = []

    def fill(match: re.Match[str]) -> str:
        if match.group(1):
            value = SECRETS[match.group(1)](rng)
            secrets.append(value)
            return value
        return BENIGN[match.group(2)](rng)
    return _SLOT.sub(fill, template), secrets


def with_filler(text: str, category: str, rng: random.Random) -> str:
    lines = templates.FILLER[category]
    if not lines or rng.random() < 0.3:
        return text
    before = rng.sample(lines, rng.randint(0, 2))
    after = rng.sample(lines, rng.randint(0, 2))
    return "\n".join([*before, text, *after]) + "\n"


def notebook(text: str) -> str:
    """A notebook holding the text: code lines in a code cell, `__OUTPUT__` lines as its printed output,
    `__IMAGE__` as a PNG it displayed, `__MARKDOWN__` as a markdown cell."""
    code, output, cells = [], [], []
    image = None
    for line in text.split("\n"):
        if line.startswith("__OUTPUT__"):
            output.append(line.removeprefix("__OUTPUT__"))
        elif line.startswith("__IMAGE__"):
            image = line.removeprefix("__IMAGE__")
        elif line.startswith("__MARKDOWN__"):
            cells.append({"cell_type": "markdown", "metadata": {}, "source": [line.removeprefix("__MARKDOWN__")]})
        else:
            code.append(line)
    outputs: list[dict] = []
    if output:
        outputs.append({"name": "stdout", "output_type": "stream", "text": [o + "\n" for o in output]})
    if image:
        outputs.append({"data": {"image/png": image, "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
                        "metadata": {}, "output_type": "display_data"})
    source = [line + "\n" for line in code[:-1]] + code[-1:]
    cells.append({"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": outputs, "source": source})
    doc = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def spans(text: str, secrets: list[str], escaped: bool) -> list[list[int]]:
    found = []
    for secret in dict.fromkeys(secrets):
        needle = json.dumps(secret, ensure_ascii=False)[1:-1] if escaped else secret
        starts = [m.start() for m in re.finditer(re.escape(needle), text)]
        if not starts:
            raise ValueError(f"secret not found in its rendered case: {needle!r}")
        found += [[s, s + len(needle)] for s in starts]
    return sorted(found)


def case(category: str, form: str, template: str, rng: random.Random) -> dict:
    text, secrets = render(template, rng)
    text = notebook(text) if category == "notebook" else with_filler(text, category, rng)
    return {"category": category, "form": form, "text": text, "secrets": spans(text, secrets, category == "notebook")}


def build() -> list[dict]:
    rng = random.Random(SEED)
    cases: list[dict] = []
    for category, (secret_templates, benign_templates) in CATEGORIES.items():
        found = 0
        for i in range(10_000):
            form, template = secret_templates[i % len(secret_templates)]
            item = case(category, form, template, rng)
            cases.append(item)
            found += len(item["secrets"])
            if found >= SECRETS_PER_CATEGORY and i + 1 >= len(secret_templates):
                break
        for i in range(max(BENIGN_PER_CATEGORY, len(benign_templates))):
            form, template = benign_templates[i % len(benign_templates)]
            cases.append(case(category, form, template, rng))
    for number, item in enumerate(cases, 1):
        item["id"] = f"{item['category']}-{number:04d}"
    return cases


def serialise(cases: list[dict]) -> str:
    keys = ("id", "category", "form", "text", "secrets")
    return "".join(json.dumps({k: c[k] for k in keys}, ensure_ascii=False) + "\n" for c in cases)


def main(argv: list[str]) -> int:
    text = serialise(build())
    if "--check" in argv:
        stale = not CORPUS.exists() or CORPUS.read_text(encoding="utf-8") != text
        print("corpus.jsonl is stale: run build.py" if stale else "corpus.jsonl is up to date", file=sys.stderr)
        return int(stale)
    CORPUS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
