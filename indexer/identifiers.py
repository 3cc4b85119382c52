"""Code-aware tokens: identifiers split on camelCase and snake_case, shared by indexing and query analysis."""
from __future__ import annotations

import functools
import re

# Tantivy's simple tokenizer drops tokens of this many UTF-8 bytes or more (RemoveLongFilter(40)).
MAX_TOKEN_BYTES = 40

_WORD = re.compile(r"[^\W_]+")  # what tantivy's simple tokenizer keeps: runs of alphanumerics
_IDENT_SEPARATOR = re.compile(r"[\W_]+")
# Zero-width camelCase boundaries: fooBar | HTTPResponse | http2Server.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[0-9])(?=[A-Z][a-z])")
_WORD_RUN = re.compile(r"\w+")  # identifier-shaped runs, underscores included
_ASCII_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")  # the same for ASCII text, about twice as fast


def split_identifier(identifier: str) -> list[str]:
    """Lower-cased parts of an identifier: `parseHTTPResponse_v2` → [parse, http, response, v2]."""
    parts: list[str] = []
    for piece in _IDENT_SEPARATOR.split(identifier):
        if piece:
            parts.extend(p.lower() for p in _CAMEL_BOUNDARY.split(piece) if p)
    return parts


def _expand_word(word: str) -> str:
    parts = split_identifier(word)
    if len(parts) < 2:
        return word
    return "".join(parts) + " " + " ".join(parts)


# Code repeats its identifiers, so each distinct short word is split once per process; long runs
# (hashes, base64) bypass the memo so it stays small.
_expand_cached = functools.lru_cache(maxsize=1 << 17)(_expand_word)
_CACHED_WORD_CHARS = 64


def expand_identifiers(text: str) -> str:
    """The text's words, space-separated, each compound identifier as its joined form then its parts.

    `parseHttpResponse(x)` becomes `parsehttpresponse parse http response x`, so a plain
    alphanumeric tokenizer (tantivy's simple tokenizer + lowercase) yields exactly `code_tokens`.
    The joined form makes `parse_http_response` and `parseHttpResponse` the same whole token."""
    words = (_ASCII_WORD_RUN if text.isascii() else _WORD_RUN).findall(text)
    return " ".join([_expand_cached(w) if len(w) < _CACHED_WORD_CHARS else _expand_word(w) for w in words])


def code_tokens(text: str) -> list[str]:
    """Lower-cased word tokens plus identifier parts, in order: the whole (joined) identifier first.

    `getUser(id)` → [getuser, get, user, id]. Matches what the full-text index stores, token for
    token and position for position, so phrases built from these tokens match indexed text."""
    return [
        token.lower()
        for token in _WORD.findall(expand_identifiers(text))
        if len(token.encode("utf-8", "surrogatepass")) < MAX_TOKEN_BYTES
    ]
