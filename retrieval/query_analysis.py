"""Query analysis: weighted lexical terms, identifiers, paths, phrases and the text to embed."""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.rendering.markdown import FENCE, without_html_comments
from indexer.identifiers import code_tokens, split_identifier
from indexer.stores import LexicalQuery

MAX_QUERY_CHARS = 20_000  # longer input is cut before analysis
DENSE_CHARS = 1_000  # ~256 MiniLM tokens of English; the embedder truncates beyond that
DENSE_PROSE_CHARS = 600  # the head of the prose that leads a long query's dense text
IDENT_BOOST = 2.0  # whole identifiers typed in the query
TRACE_WEIGHT = 1.5  # words of traceback frames, error lines and file paths
CODE_WEIGHT = 0.75  # words of pasted code blocks (mostly local names)
MAX_IDENTIFIERS = 32
MAX_IDENTIFIER_CHARS = 120
MAX_PATHS = 16
MAX_PATH_CHARS = 300
MAX_PHRASES = 8
MAX_PHRASE_TOKENS = 8
SEARCH_BOX_CHARS = 200  # a one-line query at most this long is typed into a search box, not pasted


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ENGLISH = _words("""a about above after again against all am an and any are as at be because been before being
below between both but by could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours
yourself yourselves also can cannot may might must shall get got gets getting make makes made don doesn
didn isn wasn aren weren won wouldn couldn shouldn ll re ve hasn haven hadn im ive let lets via per
etc eg ie""")
_BUG_REPORT = _words("""hi hello thanks thank please issue bug problem expected actual behavior behaviour
reproduce reproduction steps step version versions environment happens happen happened seems seem
like using use used uses work works working worked try tried trying want wanted need needs way thing
things something anything everything nothing someone anyone following instead still even though
already really actually currently correctly""")
_CODE_NOISE = _words("""self cls this none null nil true false undefined def class return import from pass lambda
yield async await except finally raise throw catch elif else var const func function void public private
protected static final int str bool float string print println printf args kwargs argv param params
py pyi js jsx mjs ts tsx rs rb cc cpp hpp kt md rst yml txt""")
STOP_WORDS = _ENGLISH | _BUG_REPORT | _CODE_NOISE

_CODE_EXTENSIONS = (
    "py|pyi|pyx|js|jsx|mjs|cjs|ts|tsx|go|rs|java|kt|kts|scala|rb|php|c|h|cc|cpp|cxx|hpp|hh|cs|swift|mm|"
    "sh|bash|zsh|ps1|lua|jl|exs|erl|hs|clj|dart|vue|svelte|sql|proto|graphql|tf|"
    "md|rst|adoc|toml|yaml|yml|json|cfg|ini|xml|html|css|scss|gradle|cmake|mk"
)
_PATH_TOKEN = re.compile(r"[^\s\"'`()\[\]{}<>,;|=]{3,300}")
_PATH_SHAPE = re.compile(rf"(?:[A-Za-z]:)?[\w.\\/-]*[\w-]\.(?:{_CODE_EXTENSIONS})")
_LINE_SUFFIX = re.compile(r"(?::\d+)*[:.!?]*$")
_URL = re.compile(r"\b(?:https?|ftp|file)://\S+|\bwww\.\S+")
_BLOB_URL = re.compile(r"/(?:blob|tree|raw|src)/[^/\s]+/([^\s#?)\]>]+)")  # …/blob/<ref>/<path>#L12
_PY_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+(?:, in (?P<func>\S+))?')
# IPython/Jupyter tracebacks: `~/env/…/pkg/mod.py in func(args)` (IPython < 8) and
# `File ~/env/…/pkg/mod.py:123, in Class.func(args)` (IPython 8+).
_IPY_FRAME = re.compile(
    r"^\s*(?:File\s+(?P<path8>[^\s\"]+\.pyx?):\d+,\s+in\s+(?P<func8>[\w.<>]+)"
    r"|(?P<path>[^\s\"]+\.pyx?)\s+in\s+(?P<func>[\w.<>]+)\s*\()"
)
_IPY_SOURCE = re.compile(r"^\s*(?:-*>\s*)?\d+\s")  # `   1263   code` and `-> 1265   code` under an IPython frame
_AT_FRAME = re.compile(r"^\s*at\s+(?:(?P<func>[\w.$<>]+)\s*)?\(?(?P<path>[^\s():]+\.[A-Za-z]\w*):\d+(?::\d+)?\)?\s*$")
_GO_FRAME = re.compile(r"^\s*(?P<path>[\w./-]+\.go):\d+(?:\s+\+0x[0-9a-f]+)?\s*$")
_TRACE_HEAD = re.compile(
    r"^\s*(?:Traceback \(most recent call last\)|During handling of the above exception|"
    r"The above exception was the direct cause|Caused by:|Exception in thread|goroutine \d+ \[)"
)
EXCEPTION_SUFFIXES = "Error|Exception|Warning|Exit|Interrupt|Fault|Failure|Panic"  # how exception classes end
_ERROR_LINE = re.compile(
    rf"^\s*(?:E\s+)?[A-Za-z_][\w.]*(?:{EXCEPTION_SUFFIXES})\b(?::.*)?$"
    r"|^\s*panic: "
)
_EXCEPTION_AFTER_TRACE = re.compile(r"^[A-Za-z_][\w.]*(?::\s.*)?$")
_ANGLED = re.compile(r"<[^>]*>")
_CARETS = re.compile(r"^\s*[~^]+\s*$")
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?!\w)")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\((?=[^()\n]{0,80}\))")
_COMPOUND = re.compile(r"(?<![\w.])(?:__\w+__|\w*?(?:[^\W_]_+[^\W_]|[a-z][A-Z]|[A-Z][A-Z][a-z])\w*)(?!\w)")
_INLINE_CODE = re.compile(r"`([^`\n]{1,200})`")
_BARE_IDENT = re.compile(r"^[A-Za-z_][\w.]*(?:\(\))?$")
_QUOTED = re.compile(r'"([^"\n]{2,200})"|\u201c([^\u201d\n]{2,200})\u201d')
_NOISE_TOKEN = re.compile(r"^\d+$|^(?:0x)?(?=[0-9a-f]*\d)[0-9a-f]{8,}$")
_STDLIB = re.compile(r"(?:/lib/python\d[\d.]*|/Python\d+/Lib)/(?!.*(?:site|dist)-packages/)|^<")
_PACKAGES = re.compile(r"^.*?(?:site|dist)-packages/")
_DOMAINS = _words("com org net io dev edu gov co uk de")
_SELF = ("self.", "cls.", "this.")


class QueryError(ValueError):
    """The query cannot be searched (empty, blank or not text)."""


@dataclass(frozen=True)
class AnalysedQuery:
    """What retrieval needs from the user's text: the lexical query, and the text to embed."""

    text: str  # the cleaned input (control characters removed, length capped)
    lexical: LexicalQuery
    dense_text: str
    frame_paths: tuple[str, ...] = ()  # project files of traceback frames, innermost (where it failed) first
    search_box: bool = False  # one short line: typed identifiers rank first, quoted text is required

    @property
    def required(self) -> tuple[str, ...]:
        """Quoted text every hit must hold (search-box queries only)."""
        return self.lexical.required

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(term for term, _ in self.lexical.terms)

    @property
    def phrases(self) -> tuple[str, ...]:
        return self.lexical.phrases

    @property
    def identifiers(self) -> tuple[str, ...]:
        return self.lexical.identifiers

    @property
    def paths(self) -> tuple[str, ...]:
        return self.lexical.paths


@dataclass(frozen=True)
class _Line:
    kind: str  # prose | code | frame | source | error | head
    text: str  # the text whose words count (a frame line is reduced to its path and function)


@dataclass(frozen=True)
class _Parsed:
    lines: list[_Line]
    frames: list[tuple[str, str]]  # (path as written, function)


def analyse(text: str, max_terms: int = 64) -> AnalysedQuery:
    """Analyse a query, from three words to a pasted bug report with code and tracebacks.

    Terms: code tokens minus stop words; a term's weight is its strongest occurrence (prose 1,
    code block 0.75, traceback/path 1.5, whole identifier x2) times 1 + ln(count), and only the
    `max_terms` heaviest are kept. If every word is a stop word, the stop words are searched."""
    if max_terms < 1:
        raise ValueError(f"max_terms must be >= 1, got {max_terms}")
    clean = clean_text(text)
    search_box = "\n" not in clean and len(clean) <= SEARCH_BOX_CHARS
    if not search_box:
        clean = without_html_comments(clean)
    parsed = _parse(clean)
    paths = _paths(parsed)
    phrases, quoted_words = _phrases(parsed.lines)
    identifiers = _unique(_identifiers(parsed) + quoted_words, MAX_IDENTIFIERS)
    terms = _weighted_terms(parsed.lines, identifiers, paths, max_terms)
    required = _unique(phrases + tuple(quoted_words), MAX_PHRASES) if search_box else ()
    lexical = LexicalQuery(terms=terms, phrases=phrases, identifiers=identifiers, paths=paths, required=required)
    frame_paths = _unique((p for path, _ in reversed(parsed.frames) if (p := _frame_path(path))), MAX_PATHS)
    return AnalysedQuery(text=clean, lexical=lexical, dense_text=_dense_text(clean, parsed, identifiers),
                         frame_paths=frame_paths, search_box=search_box)


def clean_text(text: str) -> str:
    """NFKC-normalised text without control/format characters (newlines and tabs kept), capped."""
    if not isinstance(text, str):
        raise QueryError(f"a query must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text[: MAX_QUERY_CHARS * 2])
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = text[:MAX_QUERY_CHARS].strip()
    if not text:
        raise QueryError("the query is empty: type some words, an identifier, a path or an error message")
    return text


def _parse(text: str) -> _Parsed:
    """Classify lines: prose, code (inside fences), frame, source (the code line under a frame),
    error (exception lines) or head (traceback boilerplate and standard-library frames: ignored)."""
    lines: list[_Line] = []
    frames: list[tuple[str, str]] = []
    in_fence = False
    prev = "prose"
    for raw in text.split("\n"):
        if FENCE.match(raw):
            in_fence, prev = not in_fence, "prose"
            continue
        frame = _PY_FRAME.match(raw) or _IPY_FRAME.match(raw) or _AT_FRAME.match(raw) or _GO_FRAME.match(raw)
        if frame:
            groups = frame.groupdict()
            frame_path = groups.get("path") or groups.get("path8") or ""
            func = _ANGLED.sub("", groups.get("func") or groups.get("func8") or "").strip(".")  # <module>
            frames.append((frame_path, func))
            path = _frame_path(frame_path)
            line = _Line("frame", f"{path} {func}") if path else _Line("head", raw)
            prev = "pyframe" if frame.re in (_PY_FRAME, _IPY_FRAME) and path else line.kind
        else:
            line = _Line(_line_kind(raw, prev, in_fence), raw)
            prev = line.kind
        lines.append(line)
    return _Parsed(lines, frames)


def _line_kind(raw: str, prev: str, in_fence: bool) -> str:
    if _TRACE_HEAD.match(raw) or _CARETS.match(raw):
        return "head"
    if prev == "pyframe" and raw.startswith((" ", "\t")):
        return "source"
    if prev == "source" and _IPY_SOURCE.match(raw):
        return "source"
    if prev == "head" and raw.startswith((" ", "\t")) and not _ERROR_LINE.match(raw):
        return "head"  # the source line under a standard-library frame
    if _ERROR_LINE.match(raw) or (prev in ("source", "frame", "head") and _EXCEPTION_AFTER_TRACE.match(raw)):
        return "error"
    return "code" if in_fence else "prose"


def _frame_path(path: str) -> str:
    """A frame's path reduced to its words worth searching ('' for the standard library)."""
    path = path.replace("\\", "/")
    return "" if _STDLIB.search(path) else normalise_path(path)


def normalise_path(path: str) -> str:
    """A mentioned path as the index may know it: forward slashes, no drive, no installed prefix
    (…/site-packages/), no leading ./ or /, and at most the last four parts of an absolute (or ~/) path."""
    path = re.sub(r"^[A-Za-z]:", "", path.replace("\\", "/"))
    absolute = path.startswith(("/", "~/"))
    path = _PACKAGES.sub("", path)
    while path.startswith("./"):
        path = path[2:]
    parts = [p for p in path.split("/") if p]
    if absolute and not _PACKAGES.match(path):
        parts = parts[-4:]
    return "/".join(parts)


def _paths(parsed: _Parsed) -> tuple[str, ...]:
    found = [_frame_path(path) for path, _ in parsed.frames]
    for line in parsed.lines:
        if line.kind != "head":
            for url in _URL.findall(line.text):
                found.extend(_find_paths(" ".join(_BLOB_URL.findall(url))))
            found.extend(normalise_path(p) for p in _find_paths(_URL.sub(" ", line.text)))
    return _unique([p for p in found if 0 < len(p) <= MAX_PATH_CHARS], MAX_PATHS)


def _find_paths(text: str) -> list[str]:
    """File paths written in a line: `requests/sessions.py`, `sessions.py:123`, `C:\\app\\x.py`."""
    out = []
    for match in _PATH_TOKEN.finditer(text):
        token = _LINE_SUFFIX.sub("", match.group(0))
        if text.startswith("(", match.end()) and token == match.group(0):
            continue  # a call such as response.json(), not a file
        if _PATH_SHAPE.fullmatch(token):
            out.append(token)
    return out


def _identifiers(parsed: _Parsed) -> list[str]:
    """Identifiers as typed: frame functions, inline `code`, dotted names, calls, compound words."""
    found = [func for path, func in parsed.frames if func and _frame_path(path)]
    for line in parsed.lines:
        if line.kind == "head":
            continue
        text = _URL.sub(" ", line.text)
        found.extend(m.group(1) for m in _INLINE_CODE.finditer(text) if _BARE_IDENT.match(m.group(1)))
        for path in _find_paths(text):
            text = text.replace(path, " ")
        found.extend(m.group(1) for m in _CALL.finditer(text))
        found.extend(m.group(0) for m in _DOTTED.finditer(text))
        found.extend(m.group(0) for m in _COMPOUND.finditer(text))
    return [ident for ident in map(_tidy_identifier, found) if ident]


def _tidy_identifier(ident: str) -> str:
    """Drop call parentheses and a leading self./this.; '' for names that are not worth a boost."""
    ident = ident.removesuffix("()").strip(".")
    if len(ident) > MAX_IDENTIFIER_CHARS:
        return ""
    parts = ident.split(".")
    if len(parts) > 1 and (max(map(len, parts)) < 2 or parts[-1].lower() in _DOMAINS):
        return ""  # e.g, i.e, example.com
    while "." in ident and (ident.startswith(_SELF) or ident.index(".") == 1):
        ident = ident.split(".", 1)[1]  # self.x, this.x and one-letter locals such as s.get
    joined = "".join(split_identifier(ident))
    if len(joined) < 2 or joined in STOP_WORDS or _NOISE_TOKEN.match(joined):
        return ""
    return ident


def _phrases(lines: list[_Line]) -> tuple[tuple[str, ...], list[str]]:
    """Short double-quoted prose strings become phrases; a quoted single word becomes an identifier."""
    phrases, words = [], []
    for line in lines:
        if line.kind != "prose":
            continue
        for match in _QUOTED.finditer(line.text):
            quoted = (match.group(1) or match.group(2)).strip()
            count = len(code_tokens(quoted))
            if 2 <= count <= MAX_PHRASE_TOKENS:
                phrases.append(" ".join(quoted.split()))
            elif count == 1 and _BARE_IDENT.match(quoted):
                words.append(quoted)
    return _unique(phrases, MAX_PHRASES), words


def _weighted_terms(
    lines: list[_Line], identifiers: Iterable[str], paths: Iterable[str], max_terms: int
) -> tuple[tuple[str, float], ...]:
    ident_tokens = {"".join(split_identifier(part)) for ident in identifiers for part in ident.split(".")}
    path_tokens = {token for path in paths for token in code_tokens(path)}
    line_weight = {"prose": 1.0, "code": CODE_WEIGHT, "frame": TRACE_WEIGHT, "source": TRACE_WEIGHT,
                   "error": TRACE_WEIGHT}
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    fallback: list[str] = []
    for line in lines:
        if line.kind == "head":
            continue
        base = line_weight[line.kind]
        for token in code_tokens(_URL.sub(" ", line.text)):
            if len(token) < 2 or _NOISE_TOKEN.match(token):
                continue
            if token in STOP_WORDS and token not in ident_tokens:
                fallback.append(token)
                continue
            weight = base * IDENT_BOOST if token in ident_tokens else base
            if token in path_tokens:
                weight = max(weight, TRACE_WEIGHT)
            best[token] = max(best.get(token, 0.0), weight)
            counts[token] = counts.get(token, 0) + 1
    if not best:
        for token in fallback:
            best[token] = 1.0
            counts[token] = counts.get(token, 0) + 1
    scored = [(token, round(best[token] * (1 + math.log(counts[token])), 4)) for token in best]
    order = {token: i for i, token in enumerate(best)}
    scored.sort(key=lambda pair: (-pair[1], order[pair[0]]))
    return tuple(scored[:max_terms])


def _dense_text(clean: str, parsed: _Parsed, identifiers: tuple[str, ...]) -> str:
    """The text to embed. A short query is embedded as typed (whitespace collapsed). A long one is
    rebuilt most-informative-first, because the embedder only reads its first ~256 tokens: the head
    of the prose (title and first paragraph, up to 600 chars), the error lines, the innermost four
    traceback frames as `path function`, the identifiers, the first code lines, then more prose."""
    collapsed = " ".join(clean.split())
    if len(collapsed) <= DENSE_CHARS:
        return collapsed
    prose = " ".join(" ".join(line.text.split()) for line in parsed.lines if line.kind == "prose")
    errors = [line.text.strip() for line in parsed.lines if line.kind == "error"]
    frames = _unique((f"{p} {func}".strip() for path, func in reversed(parsed.frames) if (p := _frame_path(path))), 4)
    code = [" ".join(line.text.split()) for line in parsed.lines if line.kind == "code" and line.text.strip()]
    head = _cut(prose, DENSE_PROSE_CHARS)
    parts = [head, " ".join(_unique(reversed(errors), 2)), "; ".join(reversed(frames)), " ".join(identifiers[:16]),
             " ".join(code[:8]), prose[len(head):]]
    return _cut("\n".join(" ".join(p.split()) for p in parts if p.strip()), DENSE_CHARS)


def _cut(text: str, limit: int) -> str:
    """The text cut to at most `limit` characters, at a space when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit * 0.8 else cut


def _unique(items: Iterable[str], limit: int) -> tuple[str, ...]:
    """Items without repeats (first spelling wins, case-insensitively), at most `limit`."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out[:limit])
