"""`expand_identifiers` keeps ASCII text and expands only its compound identifiers: the tokens a
simple tokenizer sees (and so their positions, which phrase queries use) must be exactly those of
the original implementation, which spelled out every word. That implementation is kept here as
the oracle."""
from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indexer.identifiers import MAX_TOKEN_BYTES, code_tokens, expand_identifiers, split_identifier
from indexer.stores.fulltext import code_analyzer

_ORACLE_WORD_RUN = re.compile(r"\w+")
_ORACLE_ASCII_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")
_TOKEN = re.compile(r"[^\W_]+")


def oracle_expand(text: str) -> str:
    """The implementation before: every word, space-separated, compounds as joined form then parts."""
    out = []
    for word in (_ORACLE_ASCII_WORD_RUN if text.isascii() else _ORACLE_WORD_RUN).findall(text):
        parts = split_identifier(word)
        out.append(word if len(parts) < 2 else "".join(parts) + " " + " ".join(parts))
    return " ".join(out)


def tokens(text: str) -> list[str]:
    """What tantivy's simple tokenizer + RemoveLongFilter(40) + lowercase keeps, in order."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t.encode("utf-8", "surrogatepass")) < MAX_TOKEN_BYTES]


CODE_PIECES = ["getUser", "get_user", "HTTPServer", "http2Server", "IOError", "x86_64", "__init__", "_private",
               "MAX_RETRY", "A1b", "a1Bc", "2Foo", "ABc", "aB", "Ab", "AB", "self", "None", "_", "__", "a_", "_a",
               "snake_case_", "parseHTTPResponse_v2", "x" * 45, "camelCase" * 6, "(", ")", ".", ",", " ", "\n",
               "\t", ":", "=", "'", '"', "-", "/", "#", "[", "]", "{", "}", "0", "9", "Z", "z"]
NON_ASCII_PIECES = ["é", "Café", "naïveCase", "ünïcode_snake", "数据库", "İstanbul", "ǅemal", "ß", "ﬁle", "Ωmega",
                    "\u00a0", "١٢٣", "ǈ"]

ascii_text = st.lists(st.one_of(st.sampled_from(CODE_PIECES),
                                st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=12)),
                      max_size=40).map("".join)
any_text = st.lists(st.one_of(st.sampled_from(CODE_PIECES + NON_ASCII_PIECES), st.text(max_size=8)),
                    max_size=40).map("".join)


@settings(max_examples=600, deadline=None)
@given(ascii_text)
@example("fooBar_baz(x)")
@example("a" * 39 + "_" + "B" * 3 + "b")
@example("tail without compounds")
@example("")
def test_ascii_tokens_match_the_original(text):
    assert tokens(expand_identifiers(text)) == tokens(oracle_expand(text))


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_any_text_tokens_match_the_original(text):
    assert tokens(expand_identifiers(text)) == tokens(oracle_expand(text))


@settings(max_examples=200, deadline=None)
@given(ascii_text)
def test_tantivy_analyzer_sees_the_same_tokens(text):
    """The real analyzer (what the index stores) on the new output gives the oracle's tokens."""
    assert code_analyzer().analyze(expand_identifiers(text)) == tokens(oracle_expand(text))


def test_ascii_text_keeps_everything_but_compounds():
    assert expand_identifiers("if getUser(id): return None") == "if getuser get user(id): return None"
    assert expand_identifiers("self.max_retry = 3\n") == "self.maxretry max retry = 3\n"


@pytest.mark.parametrize("size", [10_000, 200_000])
def test_long_words_scan_linearly(size):
    """A long run without compounds (hashes, base64) at the end of a text is scanned once, not
    from every position: big inputs finish quickly and keep their tokens."""
    text = "x = " + "aB1" * (size // 3) + " " + "q" * size
    assert tokens(expand_identifiers(text)) == tokens(oracle_expand(text))
    assert code_tokens(text)[:1] == ["x"]
