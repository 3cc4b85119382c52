"""Exact first: typed identifiers' definitions and verbatim occurrences rank first; quoted text is required."""
from __future__ import annotations

import pytest

from retrieval.exact import CONTAINS, DEFINES, exact_first, holds_phrases, identifier_tier
from retrieval.hits import Candidate
from retrieval.query_analysis import analyse


def cand(n: int, content: str, symbol: str = "", score: float = 1.0, path: str = "") -> Candidate:
    return Candidate(chunk_id=f"c{n}", doc_id=f"d{n}", source="s", path=path or f"f{n}.py", start_line=1,
                     end_line=5, content=content, symbol=symbol, score=score)


@pytest.mark.parametrize("ident, content, symbol, tier", [
    ("keep_alive_seconds", "keep_alive_seconds = 75  # idle", "", DEFINES),
    ("keep_alive_seconds", "    keep_alive_seconds: int = Field(default=75)", "Settings", DEFINES),
    ("keep_alive_seconds", "keep_alive_seconds: 75", "", DEFINES),  # YAML
    ("keep_alive_seconds", '  "keep_alive_seconds": 75,', "", DEFINES),  # JSON
    ("keep_alive_seconds", "server.run(keep_alive=settings.keep_alive_seconds)", "", CONTAINS),
    ("keep_alive_seconds", "if keep_alive_seconds == 0:", "", CONTAINS),  # a comparison is no definition
    ("keep_alive_seconds", "CAIRN_KEEP_ALIVE_SECONDS=75", "", 0),  # another identifier
    ("keep_alive_seconds", "keep alive seconds", "", 0),
    ("rateLimit", "function rateLimit(req) {", "", DEFINES),
    ("rateLimit", "const limiter = rateLimit(60)", "", CONTAINS),
    ("Session.send", "def send(self, request):", "Session.send", DEFINES),
    ("Session.send", "def send(self, request):", "HTTPAdapter.send", CONTAINS),  # another class's send
    ("Session.send", "return Session.send(self, r)", "", CONTAINS),
    ("HTTPAdapter", "class HTTPAdapter(BaseAdapter):", "", DEFINES),
])
def test_identifier_tier(ident, content, symbol, tier):
    assert identifier_tier((ident,), cand(0, content, symbol)) == tier


def test_definitions_then_occurrences_then_the_rest_scores_kept_in_order():
    ranked = [cand(0, "unrelated but high", score=3.0), cand(1, "x = keep_alive_seconds", score=1.0),
              cand(2, "keep_alive_seconds = 75", score=0.2), cand(3, "also unrelated", score=0.1)]
    out = exact_first(analyse("keep_alive_seconds"), ranked)
    assert [c.chunk_id for c in out] == ["c2", "c1", "c0", "c3"]
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert out[0].features["exact_tier"] == DEFINES


def test_pasted_reports_are_not_reordered():
    ranked = [cand(0, "unrelated", score=3.0), cand(1, "keep_alive_seconds = 75", score=1.0)]
    report = "Server closes connections early\n\nkeep_alive_seconds seems ignored since 2.1."
    assert exact_first(analyse(report), ranked) == ranked


@pytest.mark.parametrize("phrases, content, held", [
    (("rate limit reached",), "log.info('rate limit reached for %s')", True),
    (("rate limit reached",), "Rate  Limit\nReached", True),  # case and whitespace do not matter
    (("rate limit reached",), "rate limit was reached", False),
    (("keep alive",), "keep_alive_seconds = 75", True),  # identifier parts, as the index matches them
    (("keep_alive",), "keepAlive = True", True),
    (("rate limit", "host"), "rate limit per host", True),
    (("rate limit", "proxy"), "rate limit per host", False),
    ((), "anything", True),
])
def test_holds_phrases(phrases, content, held):
    assert holds_phrases(phrases, cand(0, content)) is held


@pytest.mark.parametrize("text, required, search_box", [
    ('"rate limit reached" host', ("rate limit reached",), True),
    ('where is "keep_alive_seconds" set', ("keep_alive_seconds",), True),
    ("keep_alive_seconds", (), True),
    ('Uploads fail\n\nThe server says "payload too large".', (), False),
    ("x" * 201, (), False),
])
def test_required_text_only_from_a_search_box(text, required, search_box):
    query = analyse(text)
    assert query.required == required and query.search_box is search_box
