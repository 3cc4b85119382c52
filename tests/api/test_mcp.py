"""The MCP server over a real socket, driven by the MCP SDK's own Streamable HTTP client."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest
from api_harness import auth, serve, token
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app

TOOLS = {"search", "grep", "read_file", "find_symbol", "list_sources"}


@pytest.fixture(scope="module")
def url(corpus):
    with serve(create_app(corpus.settings, services=corpus)) as base:
        yield base


@contextlib.asynccontextmanager
async def session(url: str, tok: str) -> AsyncIterator[ClientSession]:
    async with (httpx2.AsyncClient(headers=auth(tok), timeout=60) as http,
                streamable_http_client(url + "/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as s):
        await s.initialize()
        yield s


def run(url: str, tok: str, calls):
    """Run `calls(session)` in a fresh MCP session as `tok`; returns what it returns."""
    async def main():
        async with session(url, tok) as s:
            return await calls(s)
    return asyncio.run(main())


def structured(result) -> object:
    assert not result.is_error, result.content
    content = result.structured_content
    return content["result"] if set(content) == {"result"} else content


def test_missing_or_invalid_tokens_get_401_before_mcp(url, corpus):
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    for headers in ({}, auth("cairn_forged"), {"Authorization": "Basic dXNlcjpwdw=="}):
        resp = httpx.post(url + "/mcp", json=hello, headers={"Accept": "application/json, text/event-stream", **headers})
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer" and resp.json()["detail"]


def test_lists_tools_and_the_search_resource_template(url, corpus):
    async def calls(s):
        return await s.list_tools(), await s.list_resource_templates()
    tools, templates = run(url, token(corpus, groups=["eng"]), calls)
    assert {t.name for t in tools.tools} == TOOLS
    assert all(t.description for t in tools.tools)
    assert [t.uri_template for t in templates.resource_templates] == ["cairn://search/{query}"]


def test_every_tool_runs_for_a_reader(url, corpus):
    async def calls(s):
        return [await s.call_tool("search", {"query": "backoff delay with jitter", "limit": 5}),
                await s.call_tool("grep", {"pattern": "def backoff_delay("}),
                await s.call_tool("grep", {"pattern": r"render_\w+\(self", "regex": True}),
                await s.call_tool("find_symbol", {"name": "backoff_delay"}),
                await s.call_tool("read_file", {"source": "eng", "path": "pkg/retry.py", "start_line": 6,
                                                "end_line": 6}),
                await s.call_tool("list_sources", {}),
                await s.read_resource("cairn://search/retry%20backoff")]
    search, grep, regex, symbol, read, sources, resource = run(url, token(corpus, groups=["eng"]), calls)
    hits = structured(search)["hits"]
    assert hits[0]["path"] == "pkg/retry.py" and "backoff_delay" in hits[0]["symbol"] and structured(search)["query_id"]
    assert structured(grep)["matches"] == [{"document_id": "eng:pkg/retry.py", "source": "eng", "path": "pkg/retry.py",
                                            "line": 16, "text": "def backoff_delay(attempt, base=0.5):"}]
    assert [m["path"] for m in structured(regex)["matches"]] == ["billing/invoice.py"]
    assert [(d["path"], d["symbol"], d["line"]) for d in structured(symbol)] == [
        ("pkg/retry.py", "retry.backoff_delay", 16)]
    assert structured(read)["content"] == "def retry_with_backoff(call, attempts=5, base=0.5):"
    assert structured(read)["total_lines"] == 23
    assert {s["name"] for s in structured(sources)} == {"eng", "web"}
    text = resource.contents[0].text
    assert text.startswith("### eng/pkg/retry.py:") and "```pkg/retry.py" in text


def test_a_group_a_token_never_gets_group_b_content(url, corpus):
    async def calls(s):
        return [await s.call_tool("search", {"query": "rollout canary secret plan", "limit": 20}),
                await s.call_tool("search", {"query": "rollout canary", "sources": ["ops"]}),
                await s.call_tool("grep", {"pattern": "rollout_canary"}),
                await s.call_tool("grep", {"pattern": "canary", "sources": ["ops"]}),
                await s.call_tool("find_symbol", {"name": "rollout_canary"}),
                await s.call_tool("read_file", {"document_id": "ops:deploy/rollout.py"}),
                await s.call_tool("read_file", {"source": "ops", "path": "deploy/rollout.py"}),
                await s.call_tool("list_sources", {}),
                await s.read_resource("cairn://search/rollout%20canary%20secret")]
    *results, resource = run(url, token(corpus, groups=["eng"]), calls)
    for result in results:
        dump = json.dumps(result.structured_content) + " ".join(getattr(c, "text", "") for c in result.content)
        assert "rollout_canary" not in dump and "secret ops rollout" not in dump and '"ops"' not in dump
    assert results[5].is_error and results[6].is_error and "no document" in results[5].content[0].text
    assert "rollout_canary" not in resource.contents[0].text
    ops = run(url, token(corpus, groups=["ops"]), lambda s: s.call_tool("grep", {"pattern": "rollout_canary"}))
    assert [m["path"] for m in structured(ops)["matches"]] == ["deploy/rollout.py"]


@pytest.mark.parametrize("arguments, message", [
    ({"pattern": "(a+)+$", "regex": True}, "nested quantifiers"),
    ({"pattern": r"\d+", "regex": True}, "literal word"),
    ({"pattern": "x" * 301}, "1 to 300 characters"),
    ({"pattern": "[unclosed", "regex": True}, "invalid regular expression"),
    ({"pattern": "backoff", "kinds": ["spaceship"]}, "unknown kind"),
])
def test_grep_refuses_unsafe_or_unbounded_patterns(url, corpus, arguments, message):
    result = run(url, token(corpus, groups=["eng"]), lambda s: s.call_tool("grep", arguments))
    assert result.is_error and message in result.content[0].text


def test_plain_json_rpc_as_continue_sends_it(url, corpus):
    """Continue's TypeScript client: initialize, then tools/call, each a POST accepting JSON or SSE."""
    headers = {"Accept": "application/json, text/event-stream", **auth(token(corpus, groups=["eng"]))}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "continue", "version": "1.0"}}}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        init = http.post("/mcp", json=hello)
        assert init.status_code == 200 and init.json()["result"]["serverInfo"]["name"] == "cairn"
        version = {"MCP-Protocol-Version": init.json()["result"]["protocolVersion"]}
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=version)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "search", "arguments": {"query": "render_invoice"}}}
        body = http.post("/mcp", json=call, headers=version).json()
    assert body["result"]["structuredContent"]["hits"][0]["path"] == "billing/invoice.py"


def test_get_is_refused_rather_than_opening_a_stream_that_never_ends(url, corpus):
    headers = {"Accept": "text/event-stream", **auth(token(corpus, groups=["eng"]))}
    resp = httpx.get(url + "/mcp", headers=headers, timeout=10)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST" and resp.json()["detail"]


def test_an_empty_continue_input_and_off_topic_text_get_no_context(url, corpus):
    """Continue sends an empty input as `cairn://search/null`: no chunk, and the search tool says it abstained."""
    async def calls(s):
        return [await s.read_resource("cairn://search/null"),
                await s.read_resource("cairn://search/write%20me%20a%20haiku%20about%20autumn"),
                await s.call_tool("search", {"query": "zzqxv flibbertigibbet quux"})]
    null, haiku, nonsense = run(url, token(corpus, groups=["eng"]), calls)
    assert null.contents[0].text == "No results for 'null'."
    assert haiku.contents[0].text.startswith("No results for")
    assert structured(nonsense)["hits"] == [] and structured(nonsense)["abstained"] is True
