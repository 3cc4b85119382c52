"""What a real `cairn serve` writes to its log: one request line per request at INFO by default (request
id, method, route template, status, duration, user), and never a query's words, whichever way the query
came (REST, Continue, the web UI's URLs and search, MCP, a webhook's ?secret=)."""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import httpx
import pytest
from api_harness import build_corpus, token

from api.log_setup import QueryScrubber

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))  # reuse the `cairn serve` subprocess

from crash_harness import Server

# Words no document, path or setting holds: any of them in the log came from a request.
WORDS = ("zanzibarquokka", "quixoticpelican", "mauveplatypus", "ochrewombat", "cobaltnarwhal", "saffronyak",
         "umberibex", "tealmarmot")
REQUEST_LINE = re.compile(r"INFO api\.observability: request id=(?P<id>\S+) method=(?P<method>\S+) "
                          r"route=(?P<route>\S+) status=(?P<status>\d+) duration_ms=\S+ user=(?P<user>\S+)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("logged")
    settings, services = build_corpus(root, embedder)
    tok = token(services, user="alice", groups=["eng"])
    services.close()
    served = Server(settings.data_dir, tok, root / "serve.log").start()
    yield served
    served.stop()


def _mcp_search(http: httpx.Client, query: str) -> dict:
    """Continue's plain JSON-RPC over the Streamable HTTP transport: initialize, then tools/call."""
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    init = http.post("/mcp", json=hello)
    assert init.status_code == 200, init.text
    version = {"MCP-Protocol-Version": init.json()["result"]["protocolVersion"]}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search", "arguments": {"query": query}}}
    answer = http.post("/mcp", json=call, headers=version)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def _every_way_to_search(base: str, tok: str) -> list[tuple[str, str, int]]:
    """Searches carrying the WORDS through every interface; returns (method, route, status) of each."""
    bearer = {"Authorization": f"Bearer {tok}", "Accept": "application/json, text/event-stream"}
    sent: list[tuple[str, str, int]] = []
    with httpx.Client(base_url=base, headers=bearer, timeout=60) as api:
        for route, body in (("/v1/search", {"query": f"retry {WORDS[0]} backoff"}),
                            ("/v1/context", {"query": "", "fullInput": f"how does {WORDS[1]} retry"})):
            sent.append(("POST", route, api.post(route, json=body).status_code))
        sent.append(("GET", "/v1/search", api.get("/v1/search", params={"q": WORDS[2]}).status_code))  # 405
        assert "hits" in _mcp_search(api, f"backoff {WORDS[3]}")["structuredContent"]
        sent.append(("POST", "/mcp", 200))
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as web:
        sent.append(("GET", "/", web.get("/", params={"q": WORDS[4]}).status_code))  # not signed in: to /signin
        signin = web.post("/signin", data={"token": tok, "next": f"/?q={WORDS[4]}"}, headers={"Origin": base})
        assert signin.status_code == 303, signin.text
        sent.append(("POST", "/signin", 303))
        sent.append(("GET", "/", web.get("/", params={"q": WORDS[5]}).status_code))
        sent.append(("GET", "/documents/{doc_id:path}",
                     web.get("/documents/eng:pkg/retry.py", params={"q": WORDS[6], "line": 3}).status_code))
        sent.append(("POST", "/ui/search", web.post("/ui/search", json={"query": WORDS[7]},
                                                    headers={"X-Cairn-UI": "1"}).status_code))
        sent.append(("POST", "/v1/webhooks/{source}",  # a webhook's secret in its URL (refused: none is set)
                     web.post(f"/v1/webhooks/eng?secret={WORDS[0]}", json={}).status_code))
    return sent


def test_no_query_word_reaches_the_log_and_every_request_has_its_line(server):
    before = server.log.stat().st_size
    sent = _every_way_to_search(server.base, server.token)
    answered = [status for _, _, status in sent]
    assert answered == [200, 200, 405, 200, 303, 303, 200, 200, 200, 401], sent
    with httpx.Client(base_url=server.base, timeout=60) as http:
        ping = http.get("/healthz", headers={"X-Request-ID": "ops-check-42"})
    assert ping.headers["x-request-id"] == "ops-check-42"
    server.stop()  # flushes and closes the log; what follows reads every line the server wrote
    log = server.log.read_bytes()[before:].decode("utf-8", "replace")

    leaked = [line for line in log.splitlines() if any(w in line.lower() for w in WORDS)]
    assert leaked == [], leaked
    lines = [m.groupdict() for m in map(REQUEST_LINE.search, log.splitlines()) if m]
    seen = [(line["method"], line["route"], int(line["status"])) for line in lines]
    for request in sent:
        assert request in seen, (request, seen)
    assert {"method": "GET", "route": "/healthz", "status": "200", "user": "-", "id": "ops-check-42"} in lines
    users = {line["route"]: line["user"] for line in lines if line["status"] == "200"}
    assert users["/v1/search"] == users["/mcp"] == users["/documents/{doc_id:path}"] == users["/ui/search"] == "alice"
    ids = [line["id"] for line in lines]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids if i != "ops-check-42")


@pytest.mark.parametrize(("line", "logged"), [
    ('HTTP Request: GET https://jira.example.com/rest/api/2/search?jql=text~"zanzibarquokka" "HTTP/1.1 200 OK"',
     'HTTP Request: GET https://jira.example.com/rest/api/2/search?[query] "HTTP/1.1 200 OK"'),
    ('127.0.0.1:5 - "GET /?q=zanzibarquokka HTTP/1.1" 200', '127.0.0.1:5 - "GET /?[query] HTTP/1.1" 200'),
    ("500 Server Error for url: http://h:8/v1/webhooks/x?secret=zanzibarquokka)",
     "500 Server Error for url: http://h:8/v1/webhooks/x?[query]"),
    ("retry? 3/4? a ? b : c", "retry? 3/4? a ? b : c"),  # no URL, nothing cut
])
def test_a_third_party_line_loses_its_query_string(line, logged):
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "%s", (line,), None)
    assert QueryScrubber("%(message)s").format(record) == logged


def test_a_traceback_naming_a_url_loses_its_query_string():
    try:
        raise ValueError("cannot fetch https://confluence.example.com/rest/api/content?cql=zanzibarquokka")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = QueryScrubber("%(message)s").format(record)
    assert "zanzibarquokka" not in text and "content?[query]" in text
