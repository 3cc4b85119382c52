"""What a task's text names that locate looks up: traceback frames with their lines, identifiers, calls."""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from indexer.identifiers import code_tokens
from retrieval.query_analysis import STOP_WORDS, normalise_path

_PY_FRAME_LINE = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>[\w.<>]+))?')
_PATH_LINE = re.compile(r"(?P<path>[\w./\\~-]+\.[A-Za-z]\w*):(?P<line>\d+)(?:[:,]\s*in\s+(?P<func>[\w.<>]+))?")
_CALL = re.compile(r"(?<![\w.])(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\s*\(")


def frame_lines(text: str) -> dict[str, tuple[int, str]]:
    """Line and function of each frame path written in the text (`File "x.py", line 12, in f`, `x.py:12`),
    keyed by the path as query analysis normalises it; the innermost (last written) wins."""
    out: dict[str, tuple[int, str]] = {}
    for pattern in (_PATH_LINE, _PY_FRAME_LINE):
        for m in pattern.finditer(text):
            func = (m.group("func") or "").strip("<>")
            out[normalise_path(m.group("path"))] = (int(m.group("line")), "" if func == "module" else func)
    return out


def lookups(identifiers: Sequence[str], limit: int) -> list[str]:
    """The identifiers worth a definition lookup (query analysis keeps compound, dotted, called, quoted and
    frame names): a last part of 4+ characters that is not a stop word, each last part once."""
    out: dict[str, str] = {}
    for ident in identifiers:
        last = re.split(r"\.|::", ident)[-1]
        if len(last) >= 4 and last.lower() not in STOP_WORDS and len(code_tokens(last)) >= 1:
            out.setdefault(last.lower(), ident)
    return list(out.values())[:limit]


def calls(chunk: str, terms: Collection[str]) -> list[str]:
    """Names called in `chunk` that share a word with the query's terms, in order of first call."""
    found: dict[str, None] = {}
    for m in _CALL.finditer(chunk):
        name = m.group(1)
        if len(name) >= 4 and name.lower() not in STOP_WORDS and set(terms) & set(code_tokens(name)):
            found.setdefault(name)
    defined = set(re.findall(r"(?:def|class|function|func|fn)\s+([A-Za-z_]\w*)", chunk))
    return [n for n in found if n not in defined]
