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


# ASCII text as runs of (separators and simple words) each followed by a possibly compound word: a
# word that may split into several parts (an underscore or a camelCase boundary; a superset of the
# words `split_identifier` splits, the others expand to themselves). Simple words are lower-case,
# Capitalised or UPPER-case; every quantifier is possessive and each run ends in a word or at the
# end, so a search never restarts inside a word and the scan stays linear.
_ASCII_SIMPLE = r"[a-z0-9]++(?![A-Z_])|[A-Z][a-z0-9]++(?![A-Z_])|[A-Z0-9]++(?![a-z_])"
_ASCII_COMPOUND_RUNS = re.compile(rf"((?:[^A-Za-z0-9_]++|{_ASCII_SIMPLE})*+)([A-Za-z0-9_]++|\Z)")


def _expand_any(word: str) -> str:
    return _expand_cached(word) if len(word) < _CACHED_WORD_CHARS else _expand_word(word)


def expand_identifiers(text: str) -> str:
    """The text with each compound identifier replaced by its joined form then its parts.

    `parseHttpResponse(x)` becomes `parsehttpresponse parse http response(x)`, so a plain
    alphanumeric tokenizer (tantivy's simple tokenizer + lowercase) yields exactly `code_tokens`.
    The joined form makes `parse_http_response` and `parseHttpResponse` the same whole token.
    ASCII text keeps everything between its compound identifiers (only the tokens and their order
    matter); other text becomes its words, space-separated."""
    if text.isascii():
        # ['', run, compound, '', run, compound, ...]: the runs stay, the compounds are expanded
        pieces = _ASCII_COMPOUND_RUNS.split(text)
        pieces[2::3] = [_expand_any(w) for w in pieces[2::3]]
        return "".join(pieces)
    return " ".join([_expand_any(w) for w in _WORD_RUN.findall(text)])


def code_tokens(text: str) -> list[str]:
    """Lower-cased word tokens plus identifier parts, in order: the whole (joined) identifier first.

    `getUser(id)` → [getuser, get, user, id]. Matches what the full-text index stores, token for
    token and position for position, so phrases built from these tokens match indexed text."""
    return [
        token.lower()
        for token in _WORD.findall(expand_identifiers(text))
        if len(token.encode("utf-8", "surrogatepass")) < MAX_TOKEN_BYTES
    ]
