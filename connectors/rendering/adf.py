"""Atlassian Document Format (Jira Cloud REST v3, Confluence) to Markdown-ish text."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.rendering.markdown import fence, table, tidy


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


def _adf_inline(nodes: Iterable[Any]) -> str:
    out: list[str] = []
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        kind, attrs = node.get("type"), node.get("attrs") or {}
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
            out.append(_adf_inline(_adf_children(node)))
    return "".join(out)


def _adf_marked(text: str, marks: list[Any]) -> str:
    kinds = {m.get("type"): m.get("attrs") or {} for m in marks if isinstance(m, Mapping)}
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
    kind, attrs, children = node.get("type"), node.get("attrs") or {}, _adf_children(node)
    if kind == "heading":
        level = min(max(int(attrs.get("level") or 1), 1), 6)
        return f"{'#' * level} {_adf_inline(children)}\n\n"
    if kind == "paragraph":
        return _adf_inline(children) + "\n\n"
    if kind == "codeBlock":
        return fence(_adf_inline(children), str(attrs.get("language") or "")) + "\n\n"
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        return _adf_list(node, depth) + "\n"
    if kind == "blockquote":
        inner = tidy("".join(_adf_block(c, depth) for c in children))
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n")) + "\n\n"
    if kind == "rule":
        return "---\n\n"
    if kind == "table":
        return _adftable(node) + "\n\n"
    if kind in ("panel", "expand", "nestedExpand", "layoutSection", "layoutColumn", "doc", "bodiedExtension"):
        title = f"**{attrs['title']}**\n\n" if kind in ("expand", "nestedExpand") and attrs.get("title") else ""
        return title + "".join(_adf_block(c, depth) for c in children)
    if kind in ("mediaSingle", "mediaGroup", "media", "extension"):
        return ""
    inline = _adf_inline([node])
    return inline + "\n\n" if inline else ""


def _adf_list(node: Mapping[str, Any], depth: int) -> str:
    """Items at the left margin; an item's further lines (nested lists too) indented under it."""
    ordered = node.get("type") == "orderedList"
    start = int((node.get("attrs") or {}).get("order") or 1)
    lines: list[str] = []
    for i, item in enumerate(_adf_children(node)):
        if not isinstance(item, Mapping):
            continue
        marker = f"{start + i}." if ordered else "-"
        if item.get("type") in ("taskItem", "decisionItem"):
            done = (item.get("attrs") or {}).get("state") in ("DONE", "DECIDED")
            lines.append(f"- [{'x' if done else ' '}] {_adf_inline(_adf_children(item))}")
            continue
        inner = tidy("".join(_adf_block(c, depth + 1) for c in _adf_children(item)))
        first, *rest = [line for line in inner.split("\n") if line] or [""]
        lines.append(f"{marker} {first}")
        lines += [f"  {line}" for line in rest]
    return "\n".join(lines) + "\n"


def _adftable(node: Mapping[str, Any]) -> str:
    rows: list[list[str]] = []
    header = False
    for r, row in enumerate(_adf_children(node)):
        cells = _adf_children(row) if isinstance(row, Mapping) else []
        if r == 0:
            header = bool(cells) and all(isinstance(c, Mapping) and c.get("type") == "tableHeader" for c in cells)
        rows.append([tidy("".join(_adf_block(b, 0) for b in _adf_children(c))) for c in cells
                     if isinstance(c, Mapping)])
    return table(rows, header)
