"""Golden tests for `find_references` and `find_symbol` (MCP, Python SDK client) and GET /v1/references on
two real repositories in two permission groups: Python and JavaScript, with look-alikes in strings and comments."""
from __future__ import annotations

import asyncio
import json

import httpx
import httpx2
import pytest
from api_harness import auth, git_repo, serve, token
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import run_sync_job

INVOICE_PY = '''"""Invoices. Call render_total() to print; def render_total( here is prose, not code."""


def render_total(order):
    """Sum the order's lines."""
    return sum(line.amount for line in order.lines)


class Invoice:
    def render(self):
        # render_total(self) would count the header twice
        return render_total(self.order)
'''
SUMMARY_PY = '''from billing.invoice import render_total


def monthly(orders):
    return [render_total(o) for o in orders]
'''
EXPORT_PY = '''from billing import invoice


def export_all(orders, printer):
    printer.render_total(orders)
    return invoice.render_total(orders[0])
'''
CLI_PY = '''MESSAGE = "render_total() is documented in billing"


def main(obj):
    return obj.render_total()
'''
NOTES_PY = '''TEMPLATE = """
def fake_name(x):
    return x
"""
# def fake_name(y): in a comment
'''
TOTAL_JS = '''// renderTotal is exported for the page
export function renderTotal(items) {
  return items.reduce((a, b) => a + b, 0);
}

export class Cart {
  show() { return renderTotal(this.items) + " renderTotal()"; }
}
'''
AUDIT_PY = '''from billing.invoice import render_total


def audit(order):
    return render_total(order)
'''
SOURCE_ERROR = ("Error executing tool find_references: `sources` names a source you cannot read or that does not "
                "exist. The sources you can read are: ")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """Source `app` (group eng): billing, reports, tools and web files; source `lib` (group ops): one caller."""
    root = tmp_path_factory.mktemp("refs")
    services = IndexServices.open(Settings(data_dir=root / "data"), embedder=embedder)
    repos = {"app": git_repo(root / "app", {"billing/invoice.py": INVOICE_PY, "billing/summary.py": SUMMARY_PY,
                                            "reports/export.py": EXPORT_PY, "tools/cli.py": CLI_PY,
                                            "tools/notes.py": NOTES_PY, "web/total.js": TOTAL_JS}),
             "lib": git_repo(root / "lib", {"lib/audit.py": AUDIT_PY})}
    for name, group in (("app", "eng"), ("lib", "ops")):
        services.catalog.upsert_source(name, "git", {"location": str(repos[name]), "ref": ""}, [f"group:{group}"])
        run_sync_job(services, name)
    yield services
    services.close()


@pytest.fixture(scope="module")
def url(corpus):
    with serve(create_app(corpus.settings, services=corpus)) as base:
        yield base


def call(url: str, tok: str, name: str, arguments: dict) -> tuple[bool, object, str]:
    """One tool call with the Python SDK client: (is_error, structured content, text)."""
    async def main():
        async with (httpx2.AsyncClient(headers=auth(tok), timeout=60) as http,
                    Client(streamable_http_client(url + "/mcp", http_client=http)) as client):
            return await client.call_tool(name, arguments)
    result = asyncio.run(main())
    text = "\n".join(block.text for block in result.content if block.type == "text")
    content = result.structured_content or {}
    return bool(result.is_error), content.get("result", content), text


def rows(content) -> list[tuple[str, str, int, str, bool]]:
    return [(r["source"], r["path"], r["line"], r["symbol"], r["definition"]) for r in content["references"]]


def test_definition_first_then_callers_by_proximity_without_strings_or_comments(url, corpus):
    is_error, content, text = call(url, token(corpus, groups=["eng"]), "find_references", {"symbol": "render_total"})
    assert not is_error, text
    assert rows(content) == [
        ("app", "billing/invoice.py", 4, "invoice.render_total", True),  # the definition, not the docstring's
        ("app", "billing/invoice.py", 12, "invoice.Invoice.render", False),  # same file (the comment is left out)
        ("app", "billing/summary.py", 1, "summary", False),  # same folder: the import, then the call
        ("app", "billing/summary.py", 5, "summary.monthly", False),
        ("app", "reports/export.py", 5, "export.export_all", False),  # imports `invoice`: attribute calls count
        ("app", "reports/export.py", 6, "export.export_all", False),
        ("app", "tools/cli.py", 5, "cli.main", False),  # elsewhere; MESSAGE's string is no use
    ]
    assert content["truncated"] is False
    assert [r["context"] for r in content["references"]][:2] == ["def render_total(order):",
                                                                 "        return render_total(self.order)"]
    assert text.startswith("app:billing/invoice.py:4-4 definition of invoice.render_total\n```python\n"
                           "def render_total(order):\n```\n\napp:billing/invoice.py:12-12 in invoice.Invoice.render\n")


def test_javascript_references_and_their_callers(url, corpus):
    _, content, _ = call(url, token(corpus, groups=["eng"]), "find_references", {"symbol": "Cart.renderTotal"})
    assert rows(content) == [("app", "web/total.js", 2, "total.renderTotal", True),
                             ("app", "web/total.js", 7, "total.Cart.show", False)]


def test_a_caller_sees_only_the_references_in_sources_they_may_read(url, corpus):
    eng, ops, both = (token(corpus, groups=g) for g in (["eng"], ["ops"], ["eng", "ops"]))
    assert not any(r[0] == "lib" for r in rows(call(url, eng, "find_references", {"symbol": "render_total"})[1]))
    assert rows(call(url, ops, "find_references", {"symbol": "render_total"})[1]) == [
        ("lib", "lib/audit.py", 1, "audit", False), ("lib", "lib/audit.py", 5, "audit.audit", False)]
    everything = rows(call(url, both, "find_references", {"symbol": "render_total"})[1])
    assert everything[0][4] and ("lib", "lib/audit.py", 5, "audit.audit", False) in everything
    # lib/audit.py imports billing.invoice: it ranks with the importers, before tools/cli.py
    assert everything.index(("lib", "lib/audit.py", 5, "audit.audit", False)) < everything.index(
        ("app", "tools/cli.py", 5, "cli.main", False))


def test_a_scope_naming_an_unreadable_source_is_the_usual_error(url, corpus):
    eng = token(corpus, groups=["eng"])
    unreadable = call(url, eng, "find_references", {"symbol": "render_total", "sources": ["lib"]})
    unknown = call(url, eng, "find_references", {"symbol": "render_total", "sources": "nope"})
    assert unreadable == unknown == (True, {}, SOURCE_ERROR + "app.")
    assert call(url, eng, "find_references", {"symbol": "render_total()"}) == (
        True, {}, ("Error executing tool find_references: give a symbol name such as `render_invoice` or "
                   "`Catalog.get_chunks`"))


def test_scope_limit_and_max_tokens_narrow_the_answer(url, corpus):
    eng = token(corpus, groups=["eng"])
    _, content, _ = call(url, eng, "find_references", {"symbol": "render_total", "path_prefix": "reports/"})
    assert [r[1:3] for r in rows(content)] == [("reports/export.py", 5), ("reports/export.py", 6)]
    _, content, text = call(url, eng, "find_references", {"symbol": "render_total", "limit": 2})
    assert len(content["references"]) == 2 and content["truncated"] is True
    assert text.endswith("narrow with sources or path_prefix.")
    _, content, text = call(url, eng, "find_references", {"symbol": "render_total", "max_tokens": 100})
    assert 1 <= len(content["references"]) < 7 and content["truncated"] is True


def test_find_symbol_reports_definitions_never_text_in_strings_or_comments(url, corpus):
    eng = token(corpus, groups=["eng"])
    is_error, content, text = call(url, eng, "find_symbol", {"name": "fake_name"})
    assert not is_error and content == [] and text == "No definition found in the sources you can read."
    _, content, text = call(url, eng, "find_symbol", {"name": "render_total"})
    assert [(d["path"], d["line"], d["start_line"], d["end_line"], d["symbol"]) for d in content] == [
        ("billing/invoice.py", 4, 4, 6, "invoice.render_total")]
    assert text == "app:billing/invoice.py:4-6 invoice.render_total (python), defined at line 4"


def test_rest_route_answers_the_same_under_the_same_acl(url, corpus):
    eng, ops = token(corpus, groups=["eng"]), token(corpus, groups=["ops"])
    mcp = call(url, eng, "find_references", {"symbol": "render_total"})[1]
    resp = httpx.get(url + "/v1/references", params={"symbol": "render_total"}, headers=auth(eng), timeout=30)
    assert resp.status_code == 200 and resp.json() == mcp
    resp = httpx.get(url + "/v1/references", params={"symbol": "render_total", "sources": "app"}, headers=auth(ops),
                     timeout=30)
    assert resp.status_code == 200 and resp.json() == {"references": [], "truncated": False}
    resp = httpx.get(url + "/v1/references", params={"symbol": "a b"}, headers=auth(eng), timeout=30)
    assert resp.status_code == 400 and "symbol name" in json.dumps(resp.json())
    assert httpx.get(url + "/v1/references", params={"symbol": "x"}, timeout=30).status_code == 401
