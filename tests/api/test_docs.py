"""The README documents every setting, every API route and every MCP tool."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

from api.app import create_app
from indexer.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_setting_is_documented():
    missing = [name for name in Settings.model_fields if f"`CAIRN_{name.upper()}`" not in README]
    assert not missing


def test_every_route_is_documented(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    documented = {(m, _shape(p)) for m, p in re.findall(r"`(GET|POST|PUT|DELETE) (/[^`\s]*)`", README)}
    routes = {(method.upper(), _shape(path)) for path, item in app.openapi()["paths"].items() for method in item}
    routes |= {("GET", "/metrics"), ("POST", "/mcp")}
    assert routes - documented == set()


def test_every_mcp_tool_is_documented(tmp_path):
    server = create_app(Settings(data_dir=tmp_path)).state.mcp
    tools = {tool.name for tool in asyncio.run(server.list_tools())}
    assert tools == {"search", "grep", "read_file", "find_symbol", "list_sources"}
    assert all(f"| `{name}` |" in README for name in tools)
    assert "cairn://search/{query}" in README
