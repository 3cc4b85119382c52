"""Fuzzing every HTTP entry point against a live server: never a 5xx.

The published OpenAPI schema drives schemathesis, operation by operation, with valid (POSITIVE)
and invalid (NEGATIVE) inputs. What the schema does not describe is fuzzed by hand from the same
kind of strategies: the MCP endpoint (JSON-RPC, tool arguments shaped by each tool's own input
schema, plus junk) and the web UI's JSON and form endpoints. A test pins the list of routes outside
the schema, so a new one cannot slip past the fuzzing unnoticed."""
from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from api_harness import auth, serve, token
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from starlette.routing import Mount, Route

from api.app import create_app

PER_OPERATION = 25  # examples per schema operation and generation mode: bounded to about a minute
EXTRA = 200  # examples for each hand-fuzzed group (MCP, web UI)
FUZZ = settings(deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
TRIED: Counter[str] = Counter()

# Routes outside the OpenAPI schema, and the test below that fuzzes each (or why it needs none).
OUTSIDE_SCHEMA = {
    ("POST", "/mcp"): "test_fuzzed_mcp_requests_never_get_a_server_error",
    ("GET", "/mcp"): "test_fuzzed_mcp_requests_never_get_a_server_error",
    ("DELETE", "/mcp"): "test_fuzzed_mcp_requests_never_get_a_server_error",
    ("POST", "/ui/search"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/ui/admin/state"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/documents/{doc_id:path}"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/signin"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("POST", "/signin"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("POST", "/signout"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/signin/oidc"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/signin/callback"): "test_fuzzed_web_ui_requests_never_get_a_server_error",
    ("GET", "/"): "no input besides the session cookie (fuzzed with the other pages)",
    ("GET", "/admin"): "no input besides the session cookie (fuzzed with the other pages)",
    ("GET", "/tokens"): "no input besides the session cookie (fuzzed with the other pages)",
    ("GET", "/ui/highlight.css"): "a constant stylesheet",
    ("GET", "/metrics"): "no input",
    ("GET", "/openapi.json"): "no input besides the token (tests/api/test_app.py)",
    ("GET", "/docs"): "no input besides the token (tests/api/test_app.py)",
}


@pytest.fixture(scope="module")
def url(corpus):
    # The per-token rate limit is off here: the fuzzer sends hundreds of requests a minute on one token, and a
    # 429 would hide what a route does with the input (the limit has its own tests in test_limits.py).
    settings = corpus.settings.model_copy(update={"rate_limit_per_minute": 0})
    with serve(create_app(settings, services=corpus)) as base:
        yield base


@pytest.fixture(scope="module")
def headers(corpus) -> dict[str, str]:
    """An admin token reaches every route's body; the corpus is this module's own."""
    return auth(token(corpus, user="fuzzer", groups=["eng"], admin=True))


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nfuzzed requests:", dict(TRIED), "total", sum(TRIED.values()))


def _operations(url: str, headers: dict[str, str]) -> list:
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers)
    return [result.ok() for result in schema.get_all_operations()]


def _routes(routes: list) -> list:
    """Every route, with those of included routers (FastAPI keeps them behind `original_router`)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out.extend(_routes(inner.routes) if inner is not None else [route])
    return out


def test_every_route_is_in_the_schema_or_fuzzed_by_hand(corpus):
    app = create_app(corpus.settings, services=corpus)
    in_schema = {(m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item}
    outside: set[tuple[str, str]] = set()
    for route in _routes(app.router.routes):
        if isinstance(route, Mount):  # static files
            continue
        if isinstance(route, Route):
            methods = route.methods or {"GET", "POST", "DELETE"}  # the MCP route takes any method
            outside |= {(m, route.path) for m in methods if m != "HEAD"}
    outside = {(m, p) for m, p in outside if (m, p.replace(":path}", "}")) not in in_schema}
    assert outside == set(OUTSIDE_SCHEMA)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error(url, headers, mode):
    operations = _operations(url, headers)
    assert len(operations) >= 16  # search, sources, jobs, context, documents, feedback, audit, backup...
    seen: Counter[int] = Counter()
    without_inputs: list[str] = []
    for operation in operations:
        @settings(FUZZ, max_examples=PER_OPERATION)
        @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
        def check(case) -> None:
            response = case.call(base_url=url, headers=headers, timeout=60)
            seen[response.status_code] += 1
            TRIED[f"schema {mode.value}"] += 1
            assert response.status_code < 500, (f"{case.method} {case.formatted_path}: {response.status_code} "
                                                f"{response.content[:300]!r}")
        try:
            check()
        except Unsatisfiable:  # an operation without inputs has no invalid form (GET /healthz, GET /v1/sources)
            assert mode is GenerationMode.NEGATIVE, operation.label
            without_inputs.append(operation.label)
    # GET /healthz, GET /v1/sources, and routes whose only input is a path string any value of which is valid
    # (GET /v1/jobs/{job_id}, POST /v1/jobs/{job_id}/cancel, DELETE /v1/sources/{name},
    # POST /v1/sources/{name}/permissions, GET /v1/users/{user}, DELETE /v1/users/{user}/links/{realm},
    # DELETE /v1/me/tokens/{token_id}, DELETE /v1/tokens/{token_id}), GET /v1/users, GET /v1/me/tokens, and the
    # two protected resource metadata routes. /scim/v2 reads SCIM JSON itself (the schema declares no body):
    # tests/api/test_scim.py fuzzes it with a SCIM secret.
    without_inputs = [label for label in without_inputs if " /scim/v2/" not in label]
    assert len(without_inputs) <= 14, without_inputs
    assert sum(seen.values()) >= (len(operations) - len(without_inputs)) * PER_OPERATION // 2  # really exercised


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20)
TEXT = st.text(max_size=200) | st.sampled_from(["(", "[a-", "\\", ".*" * 50, "a" * 5000, "\x00", "../../etc/passwd",
                                                "eng:src/retry.py", "%2e%2e/", "' OR 1=1 --", "\ud800"])


PLAIN = TEXT.map(lambda t: t.encode("utf-8", "replace").decode())  # what a URL or a form can carry
# What an HTTP client can send at all: h11 refuses header values with surrounding whitespace.
COOKIE = PLAIN.filter(lambda t: t.isascii() and t.isprintable() and t == t.strip())


def _value(spec: dict) -> st.SearchStrategy:
    """A value for one tool argument: usually of its declared type, sometimes anything at all."""
    kinds = [spec.get("type")] + [s.get("type") for s in spec.get("anyOf", [])]
    typed = [{"string": TEXT, "integer": st.integers(-10**12, 10**12), "boolean": st.booleans(),
              "number": st.floats(allow_nan=False) | st.integers(-10**12, 10**12),
              "array": st.lists(TEXT, max_size=120), "null": st.none()}[k] for k in kinds if k]
    return st.one_of(*typed, JSON) if typed else JSON


def _mcp_calls(tools: list[dict]) -> st.SearchStrategy:
    def call(tool: dict) -> st.SearchStrategy:
        props = tool["inputSchema"].get("properties", {})
        args = st.fixed_dictionaries({}, optional={name: _value(spec) for name, spec in props.items()})
        return st.builds(lambda a, extra: {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                           "params": {"name": tool["name"], "arguments": {**extra, **a}}},
                         args, st.dictionaries(st.text(max_size=8), JSON, max_size=2))
    junk = st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "id": JSON,
                                  "method": st.sampled_from(["tools/call", "tools/list", "resources/read",
                                                             "initialize", "ping", "nope"]) | st.text(max_size=20),
                                  "params": JSON})
    return st.one_of(*[call(t) for t in tools], junk, JSON)


def test_fuzzed_mcp_requests_never_get_a_server_error(url, headers):
    mcp = {**headers, "Accept": "application/json, text/event-stream"}
    listed = httpx.post(url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=mcp, timeout=60)
    assert "result" in listed.json(), listed.text[:500]
    tools = listed.json()["result"]["tools"]
    assert {t["name"] for t in tools} >= {"search", "grep", "read_file", "find_symbol", "list_sources"}

    @settings(FUZZ, max_examples=EXTRA)
    @given(message=_mcp_calls(tools), raw=st.none() | st.binary(max_size=200),
           method=st.sampled_from(["POST", "POST", "POST", "GET", "DELETE"]))
    def check(message, raw, method) -> None:
        TRIED["mcp"] += 1
        body = raw if raw is not None else json.dumps(message).encode()  # a lone surrogate becomes `\ud800`
        with httpx.stream(method, url + "/mcp", content=body, timeout=60,
                          headers={**mcp, "Content-Type": "application/json"}) as response:
            assert response.status_code < 500, (message, raw, response.status_code)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return  # GET opens the server's event stream, which stays open: the status is the answer
            response.read()
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
            error = response.json().get("error") if isinstance(response.json(), dict) else None
            assert not error or error.get("code") != -32603, (message, error)  # no internal error inside either
    check()


def test_fuzzed_web_ui_requests_never_get_a_server_error(url, headers):
    search = st.fixed_dictionaries({}, optional={"query": TEXT, "limit": st.integers(-5, 200) | JSON,
                                                  "sources": st.lists(TEXT, max_size=3) | JSON,
                                                  "path_prefix": TEXT, "languages": st.lists(TEXT, max_size=3),
                                                  "kinds": st.lists(TEXT, max_size=3)})
    requests = st.one_of(
        st.builds(lambda b: ("POST", "/ui/search", {"content": json.dumps(b).encode(),
                                                    "headers": {"Content-Type": "application/json"}}), search | JSON),
        st.builds(lambda _: ("GET", "/ui/admin/state", {}), st.none()),
        st.builds(lambda p: ("GET", "/documents/" + quote(p.encode("utf-8", "surrogatepass"), safe="/:"), {}),
                  st.text(max_size=80)),
        st.builds(lambda n: ("GET", "/signin", {"params": {"next": n}}), PLAIN),
        st.builds(lambda b, o: ("POST", "/signin", {"content": b, "headers": {"Origin": o}}),
                  st.binary(max_size=300) | PLAIN.map(lambda t: f"token={t}&next={t}".encode()),
                  st.sampled_from([url, "http://evil.example", "", "\x00"])),
        st.builds(lambda o: ("POST", "/signout", {"headers": {"Origin": o}}), st.sampled_from([url, "http://e.x", ""])),
        st.builds(lambda n: ("GET", "/signin/oidc", {"params": {"next": n}}), PLAIN),
        st.builds(lambda c, s, e, login: ("GET", "/signin/callback", {"params": {"code": c, "state": s, "error": e},
                                                                      "cookies": {"cairn_login": login}}),
                  PLAIN, PLAIN, PLAIN, COOKIE),
        st.builds(lambda c: ("GET", "/", {"cookies": {"cairn_session": c}}), COOKIE),
        st.builds(lambda c: ("GET", "/admin", {"cookies": {"cairn_session": c}}), COOKIE),
    )

    @settings(FUZZ, max_examples=EXTRA)
    @given(request=requests, signed_in=st.booleans())
    def check(request, signed_in) -> None:
        TRIED["web ui"] += 1
        method, path, options = request
        sent = {**options, "headers": {**(headers if signed_in else {}), **options.get("headers", {})}}
        sent["headers"] = {k: v for k, v in sent["headers"].items() if v and v.isascii() and v.isprintable() and v == v.strip()}
        with httpx.Client(base_url=url, timeout=60, cookies=sent.pop("cookies", None)) as client:
            response = client.request(method, path, follow_redirects=False, **sent)
        assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    check()
