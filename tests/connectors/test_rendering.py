"""Rich text to Markdown: Jira ADF, Jira wiki markup and Confluence storage format (pure functions)."""
from __future__ import annotations

import pytest

from connectors.rendering import adf_to_text, jira_wiki_to_text, storage_to_markdown


def text(value):
    return {"type": "text", "text": value}


def para(*nodes):
    return {"type": "paragraph", "content": list(nodes)}


ADF = {"type": "doc", "version": 1, "content": [
    {"type": "heading", "attrs": {"level": 2}, "content": [text("Steps")]},
    para(text("Press "), {"type": "text", "text": "Pay", "marks": [{"type": "strong"}]}, text(" as "),
         {"type": "mention", "attrs": {"id": "1", "text": "@bob"}}, {"type": "hardBreak"},
         {"type": "text", "text": "docs", "marks": [{"type": "link", "attrs": {"href": "https://x.example/d"}}]}),
    {"type": "bulletList", "content": [
        {"type": "listItem", "content": [para(text("one")), {"type": "bulletList", "content": [
            {"type": "listItem", "content": [para(text("nested"))]}]}]},
        {"type": "listItem", "content": [para(text("two"))]}]},
    {"type": "orderedList", "attrs": {"order": 3}, "content": [{"type": "listItem", "content": [para(text("third"))]}]},
    {"type": "codeBlock", "attrs": {"language": "java"}, "content": [text("int x = 1;\nreturn x;")]},
    {"type": "panel", "attrs": {"panelType": "info"}, "content": [para(text("inside a panel"))]},
    {"type": "table", "content": [
        {"type": "tableRow", "content": [{"type": "tableHeader", "content": [para(text("k"))]},
                                         {"type": "tableHeader", "content": [para(text("v"))]}]},
        {"type": "tableRow", "content": [{"type": "tableCell", "content": [para(text("a|b"))]},
                                         {"type": "tableCell", "content": [para(text("ünï ✓"))]}]}]},
    {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "x"}}]},
    {"type": "unknownFutureNode", "content": [text("kept text")]},
]}


def test_adf_keeps_structure():
    out = adf_to_text(ADF)
    assert out.startswith("## Steps\n\nPress Pay as @bob\ndocs (https://x.example/d)")
    for piece in ("- one\n  - nested\n- two", "3. third", "```java\nint x = 1;\nreturn x;\n```", "inside a panel",
                  "| k | v |\n|---|---|\n| a\\|b | ünï ✓ |", "kept text"):
        assert piece in out, piece


@pytest.mark.parametrize("value, expected", [(None, ""), ("plain", "plain"), ({"type": "doc", "content": []}, ""),
                                             ({"type": "doc", "content": [None, 3, para()]}, "")])
def test_adf_edge_cases(value, expected):
    assert adf_to_text(value) == expected


WIKI = """h1. Checkout *times out*
Some _text_ with {{gateway.charge()}} and [the docs|https://x.example/d] and [~alice].
* one
** nested
# first
||key||value||
|a|b|
{code:java}
int x = 1; // *not bold* {{not mono}}
{code}
{noformat}
raw
{noformat}
bq. a quote
----
{color:red}red{color} !screenshot.png|thumbnail!"""


def test_jira_wiki_keeps_structure():
    out = jira_wiki_to_text(WIKI)
    for piece in ("# Checkout times out",
                  "Some text with `gateway.charge()` and the docs (https://x.example/d) and @alice.",
                  "- one\n  - nested\n1. first", "| key | value |\n|---|---|\n| a | b |",
                  "```java\nint x = 1; // *not bold* {{not mono}}\n```", "```\nraw\n```", "> a quote",
                  "\n\n---\n", "red [image: screenshot.png]"):
        assert piece in out, piece


@pytest.mark.parametrize("value, expected", [(None, ""), ("", ""), ("well-known a - b", "well-known a - b"),
                                             ("h2. Title", "## Title")])
def test_jira_wiki_edge_cases(value, expected):
    assert jira_wiki_to_text(value) == expected


STORAGE = """<h1>Runbook</h1><p>When <strong>checkout</strong> times out, see
<ac:link><ri:page ri:content-title="Payments" /></ac:link> &amp; <a href="https://x.example">this</a>.</p>
<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">python</ac:parameter>
<ac:plain-text-body><![CDATA[if a < b and c > d:
    retry()]]></ac:plain-text-body></ac:structured-macro>
<table><tbody><tr><th>Step</th><th>Action</th></tr>
<tr><td>1</td><td><p>Restart <code>api</code></p></td></tr></tbody></table>
<ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul><ol><li>first</li></ol>
<ac:structured-macro ac:name="info"><ac:parameter ac:name="title">Careful</ac:parameter>
<ac:rich-text-body><p>Back up first.</p></ac:rich-text-body></ac:structured-macro>
<ac:structured-macro ac:name="toc" />
<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>complete</ac:task-status>
<ac:task-body>rotate keys</ac:task-body></ac:task></ac:task-list>
<ac:image><ri:attachment ri:filename="diagram.png" /></ac:image><p>Ünïcødé ✓ 日本語<br/>next line</p>"""


def test_confluence_storage_keeps_headings_code_and_tables():
    out = storage_to_markdown(STORAGE)
    for piece in ("# Runbook", "When checkout times out, see Payments & this (https://x.example).",
                  "```python\nif a < b and c > d:\n    retry()\n```",
                  "| Step | Action |\n|---|---|\n| 1 | Restart `api` |",
                  "- one\n  - nested\n- two", "1. first", "**Careful**\n\nBack up first.", "- [x] rotate keys",
                  "Ünïcødé ✓ 日本語\nnext line"):
        assert piece in out, piece
    assert "diagram.png" not in out and "toc" not in out


@pytest.mark.parametrize("value, expected", [(None, ""), ("", ""), ("<p>unclosed <b>bold", "unclosed bold"),
                                             ("plain text", "plain text")])
def test_confluence_storage_edge_cases(value, expected):
    assert storage_to_markdown(value) == expected


def test_huge_inputs_render_in_reasonable_time():
    big = "<p>" + "checkout times out " * 50_000 + "</p>"
    assert len(storage_to_markdown(big)) > 900_000
    assert len(jira_wiki_to_text("h2. x\n" + "word " * 200_000)) > 900_000
