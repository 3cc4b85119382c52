"""What a task's text names that locate looks up: traceback frames with their lines, identifiers, calls, and the
exceptions it quotes (the names and the fixed words of their messages)."""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from indexer.identifiers import code_tokens
from retrieval.query_analysis import EXCEPTION_SUFFIXES, STOP_WORDS, normalise_path

_PY_FRAME_LINE = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>[\w.<>]+))?')
_PATH_LINE = re.compile(r"(?P<path>[\w./\\~-]+\.[A-Za-z]\w*):(?P<line>\d+)(?:[:,]\s*in\s+(?P<func>[\w.<>]+))?")
_CALL = re.compile(r"(?<![\w.])(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\s*\(")
# `ValueError: message`, also quoted inline (`…`), after pytest's `E   ` or a prompt's `>`: the message is what the
# program printed, so its fixed words are in the code that raised it.
_RAISED = re.compile(rf"(?:^|[\s`>(])(?:[A-Za-z_]\w*\.)*(?P<name>[A-Z]\w*(?:{EXCEPTION_SUFFIXES}))"
                     r":[ \t]+(?P<message>[^\n`]+)")
_RAISED_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(\)?")
_RAISED_QUOTED = re.compile(r"'([A-Za-z_]\w*)' object\b")  # `'Contains' object has no attribute …`: a class
_VALUES = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|\S*\d\S*|[^\w\s'\"-]+")  # quoted or numeric values, punctuation
_BUILTINS = frozenset(("int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set", "frozenset", "complex",
                       "object", "type", "NoneType", "function", "method", "module", "ndarray", "range", "len",
                       "isinstance", "getattr", "setattr", "iter", "next", "open", "super", "hash", "format", "round",
                       "abs", "min", "max", "sum", "sorted"))
# Messages the Python interpreter writes itself: no project file raises them (their names still count).
_INTERPRETER = ("object has no attribute", "unexpected keyword argument", "is not defined", "referenced before assignment",
                "index out of range", "not supported between instances", "unsupported operand type", "object is not",
                "changed size during iteration", "codec can't", "can't decode byte", "can't encode character",
                "ordinal not in", "missing required positional argument", "positional argument",
                "invalid literal for", "division by zero", "can only concatenate", "too many values to unpack",
                "not enough values to unpack", "maximum recursion depth", "has no len", "is not subscriptable",
                "does not support item assignment", "takes no arguments", "cannot import name", "No module named",
                "must be real number", "argument must be", "got multiple values for argument")
MIN_FRAGMENT_WORDS = 3
MIN_FRAGMENT_CHARS = 12
MAX_RAISED = 3  # exceptions looked at, the last written (the innermost of a chain) first


@dataclass(frozen=True)
class Raised:
    """An exception the text quotes: its class, its message, the code names in the message (`RST.__init__()` gives
    `RST`; `'Contains' object has no attribute …` gives `Contains`) and the message's fixed word runs (quoted
    values, numbers and punctuation cut out: the words a `raise` in the code would hold verbatim)."""

    name: str
    message: str
    identifiers: tuple[str, ...]
    fragments: tuple[str, ...]


def raised(text: str) -> list[Raised]:
    """The exceptions written in `text` with a message, the last written first, each message once."""
    found: dict[str, Raised] = {}
    for m in reversed(list(_RAISED.finditer(text))):
        message = m.group("message").strip().rstrip("`").strip()
        if not message or message in found:
            continue
        found[message] = Raised(m.group("name"), message, _raised_names(message), _fragments(message))
        if len(found) >= MAX_RAISED:
            break
    return list(found.values())


def variants(fragment: str) -> list[str]:
    """A message's word run as written, then without its first word, then without its last: a value the program
    formatted in unquoted (`TimeSeries object is invalid` from `"{} object is invalid"`) sits at a run's edge."""
    words = fragment.split(" ")
    out = [fragment]
    for cut in (words[1:], words[:-1]):
        run = " ".join(cut)
        if len(cut) >= MIN_FRAGMENT_WORDS and len(run) >= MIN_FRAGMENT_CHARS:
            out.append(run)
    return out


def _raised_names(message: str) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for m in _RAISED_CALL.finditer(message):
        parts = [p for p in m.group(1).split(".") if not (p.startswith("__") and p.endswith("__"))]
        if parts:
            names.setdefault(".".join(parts))
    for m in _RAISED_QUOTED.finditer(message):
        names.setdefault(m.group(1))
    return tuple(n for n in names if n.split(".")[-1] not in _BUILTINS and len(n.split(".")[-1]) >= 3)


def _fragments(message: str) -> tuple[str, ...]:
    out = []
    for part in _VALUES.split(message):
        words = part.split()
        run = " ".join(words)
        if (len(words) >= MIN_FRAGMENT_WORDS and len(run) >= MIN_FRAGMENT_CHARS
                and not any(said in run for said in _INTERPRETER)):
            out.append(run)
    return tuple(out)


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
