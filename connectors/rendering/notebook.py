"""Jupyter notebooks as the code and prose people wrote: each cell in order, in the percent format editors
understand (`# %%` before a code cell, `# %% [markdown]` before a commented markdown cell). Outputs, execution
counts and widget state are dropped: they are results, mostly base64 images and HTML, not source."""
from __future__ import annotations

import json
from typing import Any

from indexer.languages import canonical_language

# Line comment of each kernel language a notebook commonly runs; markdown cells are written as comments.
COMMENT = {"python": "#", "r": "#", "julia": "#", "ruby": "#", "shell": "#", "perl": "#", "scala": "//",
           "javascript": "//", "typescript": "//", "go": "//", "rust": "//", "java": "//", "kotlin": "//",
           "csharp": "//", "cpp": "//", "c": "//", "sql": "--", "lua": "--", "haskell": "--"}


class NotANotebook(ValueError):
    """The text is not a notebook document (invalid JSON or no cells)."""


def _source(cell: dict[str, Any]) -> str:
    text = cell.get("source") or ""
    return "".join(text) if isinstance(text, list) else str(text)


def notebook_language(nb: dict[str, Any]) -> str:
    meta = nb.get("metadata") or {}
    name = (meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language") or ""
    return canonical_language(str(name)) if name else "python"


def notebook_to_text(raw: str) -> tuple[str, str]:
    """(the cells as one script, the kernel's language). Raises NotANotebook."""
    try:
        nb = json.loads(raw)
    except ValueError as exc:
        raise NotANotebook(f"not JSON: {exc}") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise NotANotebook("no cells")
    language = notebook_language(nb)
    mark = COMMENT.get(language, "#")
    parts = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        body = _source(cell).rstrip("\n")
        kind = cell.get("cell_type")
        if kind == "code":
            parts.append(f"{mark} %%\n{body}")
        elif kind in ("markdown", "raw"):
            commented = "\n".join(f"{mark} {line}".rstrip() for line in body.split("\n"))
            parts.append(f"{mark} %% [{kind}]\n{commented}")
    return "\n\n".join(parts) + "\n", language
