"""The MCP server over a real socket, driven by the official MCP SDKs' own clients (Python, and TypeScript on
the machine's Node.js) under the newest protocol version and older ones."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
from api_harness import INVOICE_PY, RETRY_PY, auth, serve, token
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app
from api.schemas import SearchResponse
from retrieval.packing import estimate_tokens

TOOLS = {"search", "grep", "read_file", "find_symbol", "find_references", "list_sources", "history", "related",
         "locate"}
NEWEST = "2026-07-28"
TS_CLIENT = Path(__file__).resolve().parents[1] / "mcp_client"


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
    assert null.contents[0].text == haiku.contents[0].text == "No results."
    assert structured(nonsense)["hits"] == [] and structured(nonsense)["abstained"] is True


# --- both official SDK clients, newest and older protocol versions ---------------------------------------------

EVERY_TOOL = [("search", {"query": "backoff delay with jitter", "limit": 5}),
              ("grep", {"pattern": "def backoff_delay("}),
              ("read_file", {"source": "eng", "path": "pkg/retry.py", "start_line": 16, "end_line": 16}),
              ("find_symbol", {"name": "backoff_delay"}),
              ("find_references", {"symbol": "backoff_delay"}),
              ("list_sources", {}),
              ("history", {"path": "pkg/retry.py"}),
              ("related", {"item": "eng:pkg/retry.py"}),
              ("locate", {"query": "backoff_delay sleeps too long between retry attempts", "budget_seconds": 30})]
LINE_16 = "eng:pkg/retry.py:16-16\n```python\ndef backoff_delay(attempt, base=0.5):\n```"


def call_as(url: str, tok: str, calls, mode: str = NEWEST):
    """The Python SDK's Client (`mode`: a 2026 version pinned, or "legacy" for the initialize handshake):
    the negotiated version, tools/list, and each call's result as plain data."""
    async def main():
        async with (httpx2.AsyncClient(headers=auth(tok), timeout=60) as http,
                    Client(streamable_http_client(url + "/mcp", http_client=http), mode=mode) as client):
            tools = await client.list_tools()
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
            return {"protocolVersion": client.protocol_version,
                    "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools],
                    "results": [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in results]}
    return asyncio.run(main())


def ts_call_as(url: str, tok: str, calls, version: str):
    """The official TypeScript SDK client (tests/mcp_client) on the machine's Node.js, the same way."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the TypeScript SDK client (tests/mcp_client) needs it")
    if not (TS_CLIENT / "node_modules" / "@modelcontextprotocol" / "client").is_dir():
        pytest.fail("tests/mcp_client has no node_modules: run `make setup` (npm ci --prefix tests/mcp_client)")
    proc = subprocess.run([node, str(TS_CLIENT / "client.mjs"), url + "/mcp", version], check=False, capture_output=True,
                          text=True, timeout=120, input=json.dumps([{"name": n, "arguments": a} for n, a in calls]),
                          env={**os.environ, "CAIRN_TOKEN": tok})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def texts(result: dict) -> str:
    return "\n".join(block["text"] for block in result["content"] if block["type"] == "text")


@pytest.mark.parametrize("sdk, version", [("python", NEWEST), ("python", "2025-11-25"),
                                          ("typescript", NEWEST), ("typescript", "2025-06-18")])
def test_both_sdk_clients_list_and_call_every_tool(url, corpus, sdk, version):
    tok = token(corpus, groups=["eng"])
    if sdk == "python":
        out = call_as(url, tok, EVERY_TOOL, mode=version if version == NEWEST else "legacy")
    else:
        out = ts_call_as(url, tok, EVERY_TOOL, version)
    assert out["protocolVersion"] == version
    assert {t["name"] for t in out["tools"]} == TOOLS
    assert all(t["annotations"]["readOnlyHint"] is True for t in out["tools"])
    search, grep, read, symbol, references, sources, history, related, located = out["results"]
    assert not any(r.get("isError") for r in out["results"]), [texts(r) for r in out["results"]]
    assert search["structuredContent"]["hits"][0]["path"] == "pkg/retry.py"
    assert texts(search).startswith("eng:pkg/retry.py:") and "\n```python\n" in texts(search)
    assert grep["structuredContent"]["matches"][0]["line"] == 16 and texts(grep) == LINE_16
    assert read["structuredContent"]["content"] == "def backoff_delay(attempt, base=0.5):"
    assert texts(read) == LINE_16 + "\n\nLines 16-16 of 23: call read_file with start_line=17 for more."
    assert [d["line"] for d in symbol["structuredContent"]["result"]] == [16]
    assert texts(symbol) == "eng:pkg/retry.py:16-23 retry.backoff_delay (python), defined at line 16"
    first = references["structuredContent"]["references"][0]
    assert (first["line"], first["definition"]) == (16, True)
    assert texts(references).startswith(LINE_16.replace("16-16", "16-16 definition of retry.backoff_delay"))
    assert {s["name"] for s in sources["structuredContent"]["result"]} == {"eng", "web"}
    # the corpus indexes no history (tests/api/test_history.py does): empty answers, in the outputSchema's shape
    assert history["structuredContent"] == {"commits": [], "truncated": False}
    assert texts(history) == "No commits found in the history you can read."
    assert related["structuredContent"] == {"subject": "eng:pkg/retry.py", "keys": [], "items": []}
    best = located["structuredContent"]["files"][0]
    assert best["path"] == "pkg/retry.py" and "defines `backoff_delay` named in the text" in best["evidence"]
    assert texts(located).startswith(f"eng:pkg/retry.py:{best['start_line']}-{best['end_line']} ")


def test_the_2026_wire_needs_no_handshake_but_its_routing_headers(url, corpus):
    """2026-07-28: each POST carries its own envelope; server/discover answers; Mcp-Method/Mcp-Name must
    match the body; list results carry cache hints; no subscriptions/listen stream is opened."""
    meta = {"io.modelcontextprotocol/protocolVersion": NEWEST, "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": NEWEST,
               **auth(token(corpus, groups=["eng"]))}

    def post(method, routing, params=None):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}
        return httpx.post(url + "/mcp", json=body, headers={**headers, **routing}, timeout=60)

    discover = post("server/discover", {"Mcp-Method": "server/discover"})
    assert discover.status_code == 200 and NEWEST in discover.json()["result"]["supportedVersions"]
    assert discover.json()["result"]["capabilities"]["tools"] == {"listChanged": False}
    listed = post("tools/list", {"Mcp-Method": "tools/list"}).json()["result"]
    assert listed["ttlMs"] > 0 and listed["cacheScope"] == "public" and {t["name"] for t in listed["tools"]} == TOOLS
    call = {"name": "list_sources", "arguments": {}}
    answered = post("tools/call", {"Mcp-Method": "tools/call", "Mcp-Name": "list_sources"}, call)
    assert answered.status_code == 200 and not answered.json()["result"]["isError"]
    assert post("tools/list", {}).status_code == 400
    # No subscription stream: one would never end on a stateless node with nothing to announce.
    listen = post("subscriptions/listen", {"Mcp-Method": "subscriptions/listen"}, {"notifications": {"toolsListChanged": True}})
    assert listen.status_code == 404 and listen.json()["error"]["code"] == -32601
    assert post("tools/call", {"Mcp-Method": "tools/call"}, call).status_code == 400


# --- agent-friendly tools ---------------------------------------------------------------------------------------

def test_every_tool_is_titled_read_only_and_closed_world(url, corpus):
    tools = call_as(url, token(corpus, groups=["eng"]), [])["tools"]
    for tool in tools:
        assert tool["title"] and tool["annotations"]["title"] == tool["title"], tool["name"]
        assert tool["annotations"]["readOnlyHint"] is True and tool["annotations"]["openWorldHint"] is False
    budgeted = {t["name"] for t in tools if "max_tokens" in t["inputSchema"]["properties"]}
    assert budgeted == {"search", "grep", "read_file", "find_references", "history", "locate"}


@pytest.mark.parametrize("name, arguments, same_as", [
    ("search", {"query": "backoff", "sources": "eng"}, {"query": "backoff", "sources": ["eng"]}),
    ("search", {"query": "backoff", "sources": "eng, web"}, {"query": "backoff", "sources": ["eng", "web"]}),
    ("search", {"query": "backoff", "sources": '["eng"]'}, {"query": "backoff", "sources": ["eng"]}),
    ("search", {"query": "backoff", "limit": "null", "kinds": "null", "path_prefix": "", "max_tokens": None},
     {"query": "backoff"}),
    ("grep", {"pattern": "backoff", "languages": "python", "limit": "5"},
     {"pattern": "backoff", "languages": ["python"], "limit": 5}),
    ("read_file", {"document_id": "null", "source": "eng", "path": "pkg/retry.py", "start_line": "null",
                   "end_line": "", "max_tokens": "null"}, {"source": "eng", "path": "pkg/retry.py"}),
    ("find_symbol", {"name": "backoff_delay", "sources": "eng", "kinds": "undefined"},
     {"name": "backoff_delay", "sources": ["eng"]}),
])
def test_common_argument_slips_are_coerced(url, corpus, name, arguments, same_as):
    slipped, meant = call_as(url, token(corpus, groups=["eng"]), [(name, arguments), (name, same_as)])["results"]
    assert not slipped.get("isError"), texts(slipped)
    strip = (lambda r: {**r, "query_id": ""}) if name == "search" else (lambda r: r)
    assert strip(slipped["structuredContent"]) | {"timings_ms": {}} == strip(meant["structuredContent"]) | {"timings_ms": {}}


@pytest.mark.parametrize("name, arguments, message", [
    ("search", {"query": "backoff", "limit": 500},
     "Invalid arguments for search: `limit` must be an integer from 1 to 100 (got 500)."),
    ("search", {"limit": 5}, "Invalid arguments for search: `query` is required: send a string of 1 to 20000 characters."),
    ("search", {"query": "backoff", "sources": [1, 2]},
     'Invalid arguments for search: `sources` must be a list of strings such as ["name"] (at most 100) (got 1).'),
    ("grep", {"pattern": "backoff", "regex": "maybe"},
     'Invalid arguments for grep: `regex` must be true or false (got "maybe").'),
    ("read_file", {"source": "eng", "path": "pkg/retry.py", "max_tokens": 5},
     "Invalid arguments for read_file: `max_tokens` must be an integer from 100 to 100000 (got 5)."),
    ("search", {"query": "backoff", "source": "eng"},
     "search takes no argument 'source'; it takes: query, limit, sources, path_prefix, languages, kinds, max_tokens."),
])
def test_bad_arguments_get_one_line_tool_errors_saying_what_to_send(url, corpus, name, arguments, message):
    result = call_as(url, token(corpus, groups=["eng"]), [(name, arguments)])["results"][0]
    assert result["isError"] is True and texts(result) == message
    assert "pydantic" not in texts(result) and "validation error" not in texts(result)


def test_unknown_and_unreadable_sources_get_the_same_error_naming_the_readable_ones(url, corpus):
    eng, ops = token(corpus, groups=["eng"]), token(corpus, groups=["ops"])
    scoped = [("search", {"query": "rollout canary", "sources": ["{}"]}), ("grep", {"pattern": "canary", "sources": ["{}"]}),
              ("find_symbol", {"name": "rollout_canary", "sources": ["{}"]}),
              ("read_file", {"source": "{}", "path": "deploy/rollout.py"})]

    def results(tok, source):
        calls = [(n, json.loads(json.dumps(a).replace("{}", source))) for n, a in scoped]
        return [(r.get("isError"), texts(r)) for r in call_as(url, tok, calls)["results"]]

    unreadable, unknown = results(eng, "ops"), results(eng, "nope")
    assert unreadable == unknown  # word for word: nothing tells `ops` exists
    for is_error, text in unreadable:
        assert is_error and "The sources you can read are: eng, web." in text and "ops" not in text
        assert "rollout_canary" not in text
    assert results(ops, "nope")[0][1].endswith("The sources you can read are: ops.")
    readable = results(ops, "ops")
    assert not any(is_error for is_error, _ in readable) and "deploy/rollout.py" in readable[0][1]


def test_text_is_fenced_code_under_its_location_and_structured_content_keeps_its_shape(url, corpus):
    search, = call_as(url, token(corpus, groups=["eng"]), [("search", {"query": "render_invoice", "limit": 3})])["results"]
    hits = search["structuredContent"]["hits"]
    assert set(search["structuredContent"]) == set(SearchResponse.model_fields) and hits[0]["snippet"]
    text = texts(search)
    assert text.startswith("eng:billing/invoice.py:1-5 invoice.InvoiceRenderer\n```python\n" + INVOICE_PY + "```\n")
    assert text.endswith(f"query_id {search['structuredContent']['query_id']}")


def test_max_tokens_bounds_the_code_returned(url, corpus):
    calls = [("read_file", {"source": "eng", "path": "pkg/retry.py", "max_tokens": 100}),
             ("search", {"query": "backoff retry invoice canary refund", "limit": 10, "max_tokens": 100}),
             ("grep", {"pattern": "backoff", "case_sensitive": False, "max_tokens": 100}),
             ("grep", {"pattern": "backoff", "case_sensitive": False})]
    read, search, grep, unbounded = call_as(url, token(corpus, groups=["eng"]), calls)["results"]
    doc = read["structuredContent"]
    assert 1 < doc["end_line"] < doc["total_lines"] == 23 and estimate_tokens(texts(read).split("\n\nLines ")[0]) <= 100
    assert doc["content"] == "\n".join(RETRY_PY.split("\n")[:doc["end_line"]])  # whole lines, from the first
    assert texts(read).endswith(f"call read_file with start_line={doc['end_line'] + 1} for more.")
    code, _, rest = texts(search).partition("\n\nNot shown within max_tokens=100 (open them with read_file): ")
    assert estimate_tokens(code) <= 100 and rest, "the hits that did not fit are named"
    blocks = [(m[1], int(m[2]), int(m[3])) for m in re.finditer(r"^(\S+):(\d+)-(\d+).*\n```", code, re.MULTILINE)]
    named = rest.split("\n\n")[0].split(", ")
    for hit in search["structuredContent"]["hits"]:  # every hit is either in a block or named, never both
        where = f"{hit['source']}:{hit['path']}"
        shown = any(at == where and start <= hit["start_line"] <= end for at, start, end in blocks)
        assert shown != (f"{where}:{hit['start_line']}-{hit['end_line']}" in named), where
    assert grep["structuredContent"]["truncated"] is True and not unbounded["structuredContent"]["truncated"]
    assert 0 < len(grep["structuredContent"]["matches"]) < len(unbounded["structuredContent"]["matches"])
    assert estimate_tokens(texts(grep).split("\n\nMore matches")[0]) <= 100
