"""The docs cannot drift: every setting, route, MCP tool and CLI command is documented in its page under
docs/, README's commands exist, and every relative link in the docs resolves."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from api.app import create_app
from api.cli import app as cli_app
from indexer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Every Markdown file a reader can reach from README, whose links must resolve.
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "AGENTS.md", ROOT / "infra" / "README.md",
                *DOCS.glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
    return {_anchor(m) for m in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def test_every_setting_is_documented():
    configuration = _doc("configuration.md")
    missing = [name for name in Settings.model_fields if f"`CAIRN_{name.upper()}`" not in configuration]
    assert not missing


def test_every_route_is_documented(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    documented = {(m, _shape(p)) for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", _doc("api.md"))}
    routes = {(method.upper(), _shape(path)) for path, item in app.openapi()["paths"].items() for method in item}
    routes |= {("GET", "/metrics"), ("POST", "/mcp")}
    assert routes - documented == set()


def test_every_mcp_tool_is_documented(tmp_path):
    server = create_app(Settings(data_dir=tmp_path)).state.mcp
    tools = {tool.name for tool in asyncio.run(server.list_tools())}
    assert tools == {"search", "grep", "read_file", "find_symbol", "find_references", "list_sources", "history",
                     "related", "locate"}
    mcp = _doc("mcp.md")
    assert all(f"| `{name}` |" in mcp for name in tools)
    assert "cairn://search/{query}" in mcp


def _commands(command, prefix: tuple[str, ...] = ("cairn",)):
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield " ".join(prefix)
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*prefix, name))


def test_every_cli_command_is_documented():
    operating = _doc("operating.md")
    commands = set(_commands(get_command(cli_app)))
    assert {"cairn index", "cairn search", "cairn serve", "cairn sources add gitlab"} <= commands
    assert [c for c in sorted(commands) if f"`{c}" not in operating] == []


def test_readme_links_every_page_of_docs():
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)\)", README))
    assert linked, "README has no map of docs/"
    assert {f"docs/{p.name}" for p in DOCS.glob("*.md")} == linked
    assert all((ROOT / link).is_file() for link in linked)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        missing_anchor = (bool(anchor) and resolved.suffix == ".md" and resolved.is_file()
                          and anchor not in _anchors(resolved))
        if not resolved.exists() or missing_anchor:
            broken.append(target)
    assert broken == []


def test_readme_quick_start_commands_exist():
    """README's commands are make targets that make can plan (`make -n`: nothing is run)."""
    blocks = re.findall(r"(?ms)^```sh\n(.*?)^```", README)
    commands = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    for command in commands:
        proc = subprocess.run([*command.split(), "-n"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_eval_commands_name_real_scripts_and_options():
    """The evaluation commands in README (indented blocks) run scripts that exist and take every option given."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(re.findall(r"(?m)^    (.*)$", README)))
    options: dict[str, set[str]] = {}
    for line in text.splitlines():
        for script in re.findall(r"bench/\w+\.py", line):
            options.setdefault(script, set()).update(re.findall(r"(?<!\S)--[\w-]+", line))
    assert sorted(options) == ["bench/eval_locate.py", "bench/eval_report.py"]
    for script, used in options.items():
        proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert used and {option for option in used if option not in proc.stdout} == set(), script


def test_contributing_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"(?m)^([a-z][\w-]*):", makefile))
    used = set(re.findall(r"`make ([a-z][\w-]*)`", (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")))
    assert {"setup", "lint", "test", "bench"} <= used
    assert used - targets == set()
