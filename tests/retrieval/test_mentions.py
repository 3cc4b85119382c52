"""What locate reads out of a task's text: frame lines, the identifiers worth a lookup, and calls."""
from __future__ import annotations

import pytest

from retrieval.mentions import calls, frame_lines, lookups, raised, variants
from retrieval.query_analysis import analyse

TRACE = '''Traceback (most recent call last):
  File "/home/me/app.py", line 3, in <module>
  File "/usr/lib/python3.11/site-packages/tinyhttp/sessions.py", line 140, in send
    r = adapter.send(request, **kwargs)
  File "tinyhttp/adapters.py", line 101, in send
ValueError: too many values to unpack'''


def test_frame_lines_are_keyed_like_query_analysis_frame_paths():
    assert frame_lines(TRACE) == {"home/me/app.py": (3, ""), "tinyhttp/sessions.py": (140, "send"),
                                  "tinyhttp/adapters.py": (101, "send")}
    assert set(analyse(TRACE).frame_paths) <= set(frame_lines(TRACE))  # every frame locate resolves has its line
    assert frame_lines("see src/app/models.py:42 and lib/x.go:7") == {"src/app/models.py": (42, ""),
                                                                      "lib/x.go": (7, "")}
    assert frame_lines("no frames here: 3.14, x.y") == {}


@pytest.mark.parametrize("identifiers, expected", [
    (["Session.request", "requests.Session", "get", "send", "self"], ["Session.request", "requests.Session", "send"]),
    (["build_digest_header", "Auth.build_digest_header", "with"], ["build_digest_header"]),
    ([f"name_{i:02d}" for i in range(12)], [f"name_{i:02d}" for i in range(8)]),
])
def test_lookups_keep_each_last_part_once_and_skip_short_and_stop_words(identifiers, expected):
    assert lookups(identifiers, 8) == expected


def test_calls_are_the_called_names_the_query_words_name_not_the_chunk_s_own():
    chunk = ("def rebuild_auth(self, prepared):\n    if should_strip_auth(url, new):\n        del headers\n"
             "    new_auth = get_netrc_auth(url)\n    rebuild_auth(x)\n    len(headers)\n")
    assert calls(chunk, {"strip", "auth", "netrc"}) == ["should_strip_auth", "get_netrc_auth"]
    assert calls(chunk, {"cookies"}) == []


@pytest.mark.parametrize("text, expected", [
    ("Traceback ...\nTypeError: RST.__init__() got an unexpected keyword argument 'header_rows'",
     [("TypeError", ("RST",), ())]),  # the interpreter's words are nobody's raise; the class is the project's
    (("The message is confusing:\n`ValueError: TimeSeries object is invalid - expected 'time' as the first columns "
      "but found 'time'`"), [("ValueError", (), ("TimeSeries object is invalid - expected", "as the first columns but found"))]),
    ("E   AttributeError: 'Contains' object has no attribute 'as_relational'", [("AttributeError", ("Contains",), ())]),
    ("ValueError: x\nfirst\nKeyError: 'a'\nValueError: x", [("ValueError", (), ()), ("KeyError", (), ())]),
    ("VerifyWarning: Card is too long, comment will be truncated. [astropy.io.fits.card]",
     [("VerifyWarning", (), ("Card is too long", "comment will be truncated"))]),
    ("TypeError: '<' not supported between instances of 'int' and 'str'", [("TypeError", (), ())]),
    ("no error here: ValueErrors happen, error: lowercase", []),
])
def test_raised_reads_the_exception_names_and_the_fixed_words_of_its_message(text, expected):
    assert [(r.name, r.identifiers, r.fragments) for r in raised(text)] == expected


def test_variants_cut_one_word_at_either_edge_while_a_run_is_left():
    assert variants("TimeSeries object is invalid - expected") == [
        "TimeSeries object is invalid - expected", "object is invalid - expected", "TimeSeries object is invalid -"]
    assert variants("Unrecognized QDP line") == ["Unrecognized QDP line"]  # two words are no run
    assert variants("Card is too long") == ["Card is too long"]  # "is too long", "Card is too": under 12 characters
    assert variants("Value not scalar compatible") == ["Value not scalar compatible", "not scalar compatible",
                                                       "Value not scalar"]
