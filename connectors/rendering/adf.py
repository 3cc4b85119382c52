"""Atlassian Document Format (Jira Cloud REST v3, Confluence) to Markdown-ish text.

ADF arrives as untrusted JSON: any field may have any type, and nesting may be arbitrarily deep.
Nodes nested deeper than MAX_DEPTH keep their text but lose their structure (no recursion past it)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.rendering.markdown import fence, table, tidy

MAX_DEPTH = 48  # block and inline nesting rendered with structure; deeper content becomes plain text


def adf_to_text(node: Any) -> str:
    """Render an ADF document (or any node, or a plain string) as Markdown-ish text."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    return tidy(_adf_block(node, 0))


def _adf_children(node: Mapping[str, Any]) -> list[Any]:
    content = node.get("content")
    return content if isinstance(content, list) else []


def _attrs(node: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, Mapping) else {}


def _number(value: Any, default: int, low: int, high: int) -> int:
    """An integer attribute clamped to [low, high]; `default` when it is not a number at all."""
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError, OverflowError):
        return default


def _plain_text(node: Any) -> str:
    """Every `text` under a node, in order, without recursion (for content nested past MAX_DEPTH)."""
    out: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Mapping):
            if current.get("type") == "text":
                out.append(str(current.get("text", "")))
            stack.extend(reversed(_adf_children(current)))
    return " ".join(out)


def _adf_inline(nodes: Iterable[Any], depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        return " ".join(_plain_text(node) for node in nodes)
    out: list[str] = []
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        kind, attrs = node.get("type"), _attrs(node)
        if kind == "text":
            out.append(_adf_marked(str(node.get("text", "")), node.get("marks") or []))
        elif kind == "hardBreak":
            out.append("\n")
        elif kind == "mention":
            out.append(str(attrs.get("text") or "@" + str(attrs.get("id", ""))))
        elif kind == "emoji":
            out.append(str(attrs.get("text") or attrs.get("shortName") or ""))
        elif kind in ("inlineCard", "blockCard", "embedCard"):
            out.append(str(attrs.get("url", "")))
        elif kind == "status":
            out.append(f"[{attrs.get('text', '')}]")
        elif kind == "date":
            out.append(_adf_date(attrs.get("timestamp")))
        else:
            out.append(_adf_inline(_adf_children(node), depth + 1))
    return "".join(out)


def _adf_marked(text: str, marks: Any) -> str:
    marks = marks if isinstance(marks, list) else []
    kinds = {m.get("type"): _attrs(m) for m in marks if isinstance(m, Mapping)}
    if "code" in kinds:
        text = f"`{text}`"
    href = kinds.get("link", {}).get("href")
    return f"{text} ({href})" if href and href != text else text


def _adf_date(stamp: Any) -> str:
    try:
        return datetime.fromtimestamp(int(stamp) / 1000, UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError):
        return ""


def _adf_block(node: Any, depth: int) -> str:
    if not isinstance(node, Mapping):
        return ""
    if depth > MAX_DEPTH:
        text = _plain_text(node)
        return text + "\n\n" if text else ""
    kind, attrs, children = node.get("type"), _attrs(node), _adf_children(node)
    if kind == "heading":
        level = _number(attrs.get("level"), 1, 1, 6)
        return f"{'#' * level} {_adf_inline(children)}\n\n"
    if kind == "paragraph":
        return _adf_inline(children) + "\n\n"
    if kind == "codeBlock":
        return fence(_adf_inline(children), str(attrs.get("language") or "")) + "\n\n"
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        return _adf_list(node, depth) + "\n"
    if kind == "blockquote":
        inner = tidy("".join(_adf_block(c, depth + 1) for c in children))
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n")) + "\n\n"
    if kind == "rule":
        return "---\n\n"
    if kind == "table":
        return _adftable(node, depth) + "\n\n"
    if kind in ("panel", "expand", "nestedExpand", "layoutSection", "layoutColumn", "doc", "bodiedExtension"):
        title = f"**{attrs['title']}**\n\n" if kind in ("expand", "nestedExpand") and attrs.get("title") else ""
        return title + "".join(_adf_block(c, depth + 1) for c in children)
    if kind in ("mediaSingle", "mediaGroup", "media", "extension"):
        return ""
    inline = _adf_inline([node])
    return inline + "\n\n" if inline else ""


def _adf_list(node: Mapping[str, Any], depth: int) -> str:
    """Items at the left margin; an item's further lines (nested lists too) indented under it."""
    ordered = node.get("type") == "orderedList"
    start = _number(_attrs(node).get("order") or 1, 1, 0, 10**9)
    lines: list[str] = []
    for i, item in enumerate(_adf_children(node)):
        if not isinstance(item, Mapping):
            continue
        marker = f"{start + i}." if ordered else "-"
        if item.get("type") in ("taskItem", "decisionItem"):
            done = _attrs(item).get("state") in ("DONE", "DECIDED")
            lines.append(f"- [{'x' if done else ' '}] {_adf_inline(_adf_children(item))}")
            continue
        inner = tidy("".join(_adf_block(c, depth + 1) for c in _adf_children(item)))
        first, *rest = [line for line in inner.split("\n") if line] or [""]
        lines.append(f"{marker} {first}")
        lines += [f"  {line}" for line in rest]
    return "\n".join(lines) + "\n"


def _adftable(node: Mapping[str, Any], depth: int) -> str:
    rows: list[list[str]] = []
    header = False
    for r, row in enumerate(_adf_children(node)):
        cells = _adf_children(row) if isinstance(row, Mapping) else []
        if r == 0:
            header = bool(cells) and all(isinstance(c, Mapping) and c.get("type") == "tableHeader" for c in cells)
        rows.append([tidy("".join(_adf_block(b, depth + 1) for b in _adf_children(c))) for c in cells
                     if isinstance(c, Mapping)])
    return table(rows, header)
