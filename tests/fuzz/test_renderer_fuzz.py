"""Hostile input to the ticket and page renderers (Jira ADF and wiki markup, Confluence storage):
random structures and markup-heavy text, plus hand-made nasties. Always a string, in bounded time."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nasty import ADF, STORAGE, WIKI

from connectors.rendering import adf_to_text, jira_wiki_to_text, storage_to_markdown

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SECONDS_PER_NASTY = 20.0

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=30)
ADF_TYPES = st.sampled_from(["doc", "paragraph", "text", "heading", "bulletList", "orderedList", "listItem",
                             "taskList", "taskItem", "codeBlock", "blockquote", "table", "tableRow", "tableHeader",
                             "tableCell", "panel", "expand", "mention", "emoji", "date", "status", "hardBreak",
                             "inlineCard", "rule", "mediaSingle", "mystery"])
ADF_NODE = st.recursive(
    st.fixed_dictionaries({"type": ADF_TYPES}, optional={"text": JSON, "attrs": JSON, "marks": JSON}),
    lambda inner: st.fixed_dictionaries({"type": ADF_TYPES, "content": st.lists(inner | JSON, max_size=5)},
                                        optional={"attrs": JSON, "marks": JSON}),
    max_leaves=40)
WIKI_TEXT = st.lists(st.sampled_from(["{code}", "{code:java}", "{noformat}", "{quote}", "{{", "}}", "[", "]", "|",
                                      "||", "[~", "[http://x", "{panel:title=a}", "{color:red}", "*", "_", "-", "+",
                                      "^", "~", "!", "!a.png|", "h1. ", "bq. ", "----", "# ", "* ", "\n", "\r\n",
                                      "\x00", "\x001\x00", " ", "a", "é"]) | st.text(max_size=10),
                     max_size=300).map("".join)
XHTML = st.lists(st.sampled_from(["<p>", "</p>", "<div>", "</div>", "<ul>", "<li>", "</li>", "</ul>", "<ol>",
                                  "<table>", "<tr>", "<th>", "<td>", "</td>", "</table>", "<h2>", "</h2>", "<pre>",
                                  "</pre>", "<br/>", "<hr>", "<a href=\"x\">", "</a>", "<code>", "</code>",
                                  '<ac:structured-macro ac:name="code">', '<ac:structured-macro ac:name="info">',
                                  "</ac:structured-macro>", "<ac:plain-text-body>", "<![CDATA[", "]]>",
                                  "<ac:rich-text-body>", '<ac:parameter ac:name="title">', "<ac:task>",
                                  "<ac:task-status>complete", "<!--", "-->", "<", ">", "&", "&amp;", "&#", '"',
                                  "<script>", "\x00", "a", " ", "\n"]) | st.text(max_size=10),
                 max_size=300).map("".join)


@FUZZ
@given(node=ADF_NODE | JSON)
def test_any_adf_json_renders_to_text(tried, node):
    tried["renderer: ADF"] += 1
    assert isinstance(adf_to_text(node), str)


@FUZZ
@given(markup=WIKI_TEXT)
def test_any_wiki_markup_renders_to_text(tried, markup):
    tried["renderer: Jira wiki"] += 1
    out = jira_wiki_to_text(markup)
    assert isinstance(out, str) and "\x00" not in out


@FUZZ
@given(xhtml=XHTML)
def test_any_storage_xhtml_renders_to_markdown(tried, xhtml):
    tried["renderer: Confluence storage"] += 1
    assert isinstance(storage_to_markdown(xhtml), str)


@FUZZ
@given(text=st.text(max_size=2000))
def test_any_unicode_renders_in_every_format(tried, text):
    tried["renderer: unicode text (3 formats)"] += 1
    for render in (adf_to_text, jira_wiki_to_text, storage_to_markdown):
        assert isinstance(render(text), str)


def _timed(render, value) -> str:
    started = time.monotonic()
    out = render(value)
    assert time.monotonic() - started < SECONDS_PER_NASTY
    return out


@pytest.mark.parametrize("name", list(WIKI))
def test_nasty_wiki_markup_renders_in_bounded_time(tried, name):
    tried["renderer: hand-made nasties"] += 1
    assert "\x00" not in _timed(jira_wiki_to_text, WIKI[name])


@pytest.mark.parametrize("name", list(STORAGE))
def test_nasty_storage_renders_in_bounded_time(tried, name):
    tried["renderer: hand-made nasties"] += 1
    assert isinstance(_timed(storage_to_markdown, STORAGE[name]), str)


@pytest.mark.parametrize("name", list(ADF))
def test_nasty_adf_renders_in_bounded_time(tried, name):
    tried["renderer: hand-made nasties"] += 1
    assert isinstance(_timed(adf_to_text, ADF[name]), str)


def test_text_nested_past_the_depth_limit_is_kept():
    assert "level 4999" in adf_to_text(ADF["5000 nested blockquotes"])
    assert "deep" in storage_to_markdown("<div>" * 500 + "deep" + "</div>" * 500)


def test_a_nul_in_wiki_markup_cannot_name_a_code_block():
    # Before: `\x0099\x00` was taken for the 99th stashed code block (IndexError, the sync crashed).
    assert jira_wiki_to_text("{code}x{code} \x000\x00 and \x0099\x00") == "```\nx\n``` 0 and 99"
