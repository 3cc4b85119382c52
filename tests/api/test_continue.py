"""POST /v1/context with the exact JSON Continue's `http` context provider sends.

Continue (core/context/providers/HttpContextProvider.ts) POSTs
`{"query": query || "", "fullInput": ..., "options": params.options, "workspacePath": ...}` with
`Content-Type: application/json` plus the configured `headers`; `options` and `workspacePath` are
dropped by JSON.stringify when undefined. It reads the answer as an array (or one object) of
`{name, description, content, uri?}` and keeps `uri` only as `{type, value}`."""
from __future__ import annotations

import pytest
from api_harness import WEB_URL, auth, token
from fastapi.testclient import TestClient

from api.app import create_app
from api.continue_provider import fence, link
from retrieval.packing import estimate_tokens

# What Continue sends for "@Cairn how does retry backoff work?" with `options: {repos: [eng], limit: 8}`.
CONTINUE_BODY = {
    "query": "",
    "fullInput": "how does the retry backoff delay work?",
    "options": {"repos": ["eng"], "limit": 8},
    "workspacePath": "/home/dev/src/eng",
}


@pytest.fixture(scope="module")
def client(corpus):
    with TestClient(create_app(corpus.settings, services=corpus)) as c:
        yield c


def items(client, body, tok, **headers):
    resp = client.post("/v1/context", json=body, headers={**auth(tok), **headers})
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), list)
    return resp.json()


def test_continue_request_gets_an_array_of_context_items(client, corpus):
    got = items(client, CONTINUE_BODY, token(corpus, groups=["eng"]))
    assert got and all(set(i) <= {"name", "description", "content", "uri"} for i in got)
    first = got[0]
    # The two adjacent chunks of retry.py (retry_with_backoff and backoff_delay) come back as one span.
    assert first["name"].startswith("retry.py (") and first["description"].startswith("eng/pkg/retry.py:")
    assert first["content"].startswith("```pkg/retry.py\n") and first["content"].endswith("\n```")
    assert "def retry_with_backoff" in first["content"] and "def backoff_delay" in first["content"]
    assert "uri" not in first  # a local repository has no web link
    assert {i["description"].split("/")[0] for i in got} == {"eng"}


def test_minimal_body_without_options_or_workspace(client, corpus):
    got = items(client, {"query": "", "fullInput": "render_invoice"}, token(corpus, groups=["eng"]))
    assert got[0]["name"].startswith("invoice.py (")
    assert "InvoiceRenderer.render_invoice" in got[0]["description"] or "render_invoice" in got[0]["content"]


def test_query_is_used_when_full_input_is_empty(client, corpus):
    got = items(client, {"query": "rollout_canary", "fullInput": ""}, token(corpus, groups=["ops"]))
    assert got[0]["description"].startswith("ops/deploy/rollout.py:")


def test_web_link_becomes_a_url_uri_with_line_anchors(client, corpus):
    got = items(client, {"query": "", "fullInput": "refund_payment"}, token(corpus, groups=["eng"]))
    refund = next(i for i in got if "refund.py" in i["name"])
    assert refund["uri"] == {"type": "url", "value": WEB_URL + "#L1-2"}


def test_other_groups_content_never_appears(client, corpus):
    body = {"query": "", "fullInput": "canary rollout invoice backoff"}
    seen = " ".join(i["description"] + i["content"] for i in items(client, body, token(corpus, groups=["eng"])))
    assert "rollout_canary" not in seen and "secret ops rollout plan" not in seen
    assert items(client, body, token(corpus, user="stranger")) == []


@pytest.mark.parametrize("options, header, sources", [
    ({"repos": "ops"}, None, {"ops"}),
    ({"sources": ["eng", "ops"]}, "ops", {"ops"}),
    ({}, "eng, web", {"eng", "web"}),
    ({"repos": ["eng"]}, "ops", set()),  # the two disagree: nothing
])
def test_scope_from_options_and_header(client, corpus, options, header, sources):
    tok = token(corpus, groups=["eng", "ops"])
    body = {"query": "", "fullInput": "invoice rollout backoff refund", "options": options}
    headers = {"X-Cairn-Sources": header} if header else {}
    got = items(client, body, tok, **headers)
    assert {i["description"].split("/")[0].split(" ")[0] for i in got} == sources


def test_total_content_stays_within_the_token_budget(corpus):
    small = corpus.settings.model_copy(update={"context_token_budget": 120})
    with TestClient(create_app(small, services=corpus)) as c:
        got = items(c, {"query": "", "fullInput": "retry backoff invoice refund"}, token(corpus, groups=["eng"]))
    assert got and sum(estimate_tokens(i["content"]) for i in got) <= 120


def test_limit_and_kinds_options_are_honoured(client, corpus):
    tok = token(corpus, groups=["eng", "ops"])
    got = items(client, {"query": "", "fullInput": "invoice rollout backoff refund", "options": {"limit": 1}}, tok)
    assert len(got) == 1
    assert items(client, {"query": "", "fullInput": "invoice", "options": {"kinds": "issue"}}, tok) == []


@pytest.mark.parametrize("body", [
    {"query": "", "fullInput": "x", "options": {"limit": 0}},
    {"query": "", "fullInput": "x", "options": {"limit": "many"}},
    {"query": "", "fullInput": "x", "options": {"kinds": ["spaceship"]}},
    {"query": 5, "fullInput": ["x"]},
])
def test_bad_requests_get_4xx_with_a_message(client, corpus, body):
    resp = client.post("/v1/context", json=body, headers=auth(token(corpus, groups=["eng"])))
    assert 400 <= resp.status_code < 500 and resp.json()["detail"]


def test_empty_input_gives_an_empty_array(client, corpus):
    assert items(client, {"query": "", "fullInput": "   "}, token(corpus, groups=["eng"])) == []
    assert items(client, {"query": "", "fullInput": "\ufeff\x00"}, token(corpus, groups=["eng"])) == []


@pytest.mark.parametrize("text", ["write me a haiku about autumn", "zzqxv flibbertigibbet quux", "null"])
def test_off_topic_nonsense_and_null_inputs_give_an_empty_array(client, corpus, text):
    tok = token(corpus, groups=["eng"])
    assert items(client, {"query": "", "fullInput": text}, tok) == []
    assert items(client, {"query": text, "fullInput": ""}, tok) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer cairn_not-a-real-token"},
                                     {"Authorization": "Basic abc"}])
def test_a_refused_token_is_one_item_that_says_how_to_fix_it(client, corpus, headers):
    """Continue renders a non-200 answer as an empty "HTTP Context Item": the refusal is an item instead,
    and nothing of the index is in it."""
    resp = client.post("/v1/context", json=CONTINUE_BODY, headers=headers)
    assert resp.status_code == 200 and resp.headers["X-Cairn-Error"] == "401"
    [item] = resp.json()
    assert "token" in item["name"] and "Authorization" in item["content"] and "Tokens page" in item["content"]
    assert "def " not in item["content"] and "uri" not in item


def test_context_queries_are_audited_with_a_query_id(client, corpus):
    resp = client.post("/v1/context", json=CONTINUE_BODY, headers=auth(token(corpus, user="dev", groups=["eng"])))
    entry = corpus and client.app.state.audit.query(resp.headers["X-Cairn-Query-Id"])
    assert entry.user == "dev" and entry.action == "context" and entry.scope == {"sources": ["eng"]}
    assert entry.result_count == len(resp.json()) and entry.query_text is None


@pytest.mark.parametrize("url, span, expected", [
    ("https://gitlab.example.com/g/p/-/blob/abc/a.py", (3, 9), "https://gitlab.example.com/g/p/-/blob/abc/a.py#L3-9"),
    ("https://github.com/o/r/blob/abc/a.py", (3, 9), "https://github.com/o/r/blob/abc/a.py#L3-L9"),
    ("https://github.com/o/r/blob/abc/a.py", (4, 4), "https://github.com/o/r/blob/abc/a.py#L4"),
    ("https://jira.example.com/browse/X-1#comment", (1, 2), "https://jira.example.com/browse/X-1#comment"),
    ("", (1, 2), ""),
])
def test_links_get_line_anchors(url, span, expected):
    assert link(url, "code", *span) == expected


def test_fence_outgrows_backticks_in_the_content():
    assert fence("a.md", "```py\nx\n```") == "````a.md\n```py\nx\n```\n````"
