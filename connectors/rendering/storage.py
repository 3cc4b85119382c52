"""Confluence storage format (XHTML with ac:/ri: elements) to Markdown: headings, code blocks, tables kept.

Bodies are untrusted: elements nested deeper than MAX_DEPTH are dropped as elements (their text
stays, in the deepest kept element), so rendering never recurses without bound."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from connectors.rendering.markdown import fence, table, tidy

_VOID = frozenset({"br", "hr", "img", "col", "input", "meta", "link", "ri:page", "ri:user", "ri:attachment",
                   "ri:url", "ri:blog-post", "ri:space", "ac:emoticon"})
_BLOCKS = frozenset({"p", "div", "section", "article", "ac:layout", "ac:layout-section", "ac:layout-cell",
                     "ac:rich-text-body", "ac:task-list", "ac:task-body", "span"})
_SKIP = frozenset({"ac:parameter", "ac:image", "script", "style", "ac:placeholder"})
MAX_DEPTH = 48


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[_Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find(self, tag: str) -> _Node | None:
        for child in self.children:
            if isinstance(child, _Node):
                if child.tag == tag:
                    return child
                found = child.find(tag)
                if found:
                    return found
        return None

    def param(self, name: str) -> str:
        for child in self.children:
            if isinstance(child, _Node) and child.tag == "ac:parameter" and child.attrs.get("ac:name") == name:
                return child.text().strip()
        return ""


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("root")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if len(self.stack) > MAX_DEPTH:
            return
        node = _Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if len(self.stack) > MAX_DEPTH:
            return
        self.stack[-1].children.append(_Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA["):
            self.stack[-1].children.append(data[6:])


def storage_to_markdown(xhtml: str | None) -> str:
    """Render a Confluence storage-format body as Markdown: headings, code blocks and tables kept."""
    if not xhtml:
        return ""
    builder = _TreeBuilder()
    builder.feed(_defuse(xhtml))
    builder.close()
    return tidy(_blocks(builder.root, 0))


_CLOSERS = {"<![CDATA[": "]]>", "<!--": "-->"}


def _defuse(xhtml: str) -> str:
    """Escape every `<` that opens no complete tag, comment or CDATA section.

    html.parser rescans the rest of the input for each tag it cannot close (`<a <a <a ...` takes
    quadratic time: 48 kB ran 46 s). Well-formed storage XHTML never has a raw `<` inside a tag,
    so this changes nothing for it. One forward scan: each closer's next position is cached."""
    out: list[str] = []
    pos = 0
    cache: dict[str, int] = {}  # closer -> its first position after the last search (-1: none left)

    def after(closer: str, start: int) -> int:
        at = cache.get(closer)
        if at is None or -1 < at < start:
            at = cache[closer] = xhtml.find(closer, start)
        return at

    while (lt := xhtml.find("<", pos)) >= 0:
        out.append(xhtml[pos:lt])
        opener = next((o for o in _CLOSERS if xhtml.startswith(o, lt)), "")
        if opener:
            end = after(_CLOSERS[opener], lt + len(opener))
            stop = end + len(_CLOSERS[opener]) if end >= 0 else -1
        else:
            end = after(">", lt + 1)
            nested = xhtml.find("<", lt + 1, end) if end >= 0 else -1
            stop = end + 1 if end >= 0 and nested < 0 else -1
        if stop < 0:
            out.append("&lt;")
            pos = lt + 1
        else:
            out.append(xhtml[lt:stop])
            pos = stop
    out.append(xhtml[pos:])
    return "".join(out)


def _blocks(node: _Node, depth: int) -> str:
    return "".join(_block(c, depth) if isinstance(c, _Node) else _collapse(c) for c in node.children)


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _block(node: _Node, depth: int) -> str:
    tag = node.tag
    if tag in _SKIP:
        return ""
    if re.fullmatch(r"h[1-6]", tag):
        return f"\n\n{'#' * int(tag[1])} {_inline(node).strip()}\n\n"
    if tag == "ac:structured-macro":
        return _macro(node, depth)
    if tag == "pre":
        return "\n\n" + fence(node.text()) + "\n\n"
    if tag in ("ul", "ol"):
        return "\n\n" + _html_list(node, depth) + "\n\n"
    if tag == "table":
        return "\n\n" + _htmltable(node) + "\n\n"
    if tag == "blockquote":
        inner = tidy(_blocks(node, depth))
        return "\n\n" + "\n".join(f"> {line}" if line else ">" for line in inner.split("\n")) + "\n\n"
    if tag == "hr":
        return "\n\n---\n\n"
    if tag == "br":
        return "\n"
    if tag == "ac:task":
        done = (node.find("ac:task-status") or _Node("x")).text().strip() == "complete"
        body = node.find("ac:task-body")
        return f"\n- [{'x' if done else ' '}] {tidy(_blocks(body, depth)) if body else ''}"
    if tag == "ac:task-status":
        return ""
    if tag in _BLOCKS:
        return "\n\n" + _blocks(node, depth) + "\n\n"
    return _inline(node)


def _inline(node: _Node) -> str:
    tag = node.tag
    if tag in _SKIP:
        return ""
    if tag == "code":
        return f"`{node.text()}`"
    if tag == "a":
        text, href = _collapse(node.text()).strip(), node.attrs.get("href", "")
        return f"{text} ({href})" if href and href != text else text or href
    if tag == "ac:link":
        target = node.find("ri:page") or node.find("ri:blog-post") or node.find("ri:user") or node.find("ri:attachment")
        body = node.find("ac:plain-text-link-body") or node.find("ac:link-body")
        label = (body.text() if body else "").strip()
        name = (target.attrs.get("ri:content-title") or target.attrs.get("ri:filename")
                or target.attrs.get("ri:username") or target.attrs.get("ri:account-id", "")) if target else ""
        return label or name
    if tag == "ac:emoticon":
        return node.attrs.get("ac:emoji-fallback") or ""
    if tag == "ac:structured-macro":
        return _macro(node, 0)
    if tag == "br":
        return "\n"
    return "".join(_inline(c) if isinstance(c, _Node) else _collapse(c) for c in node.children)


def _macro(node: _Node, depth: int) -> str:
    name = node.attrs.get("ac:name", "")
    if name in ("code", "noformat"):
        body = node.find("ac:plain-text-body")
        return "\n\n" + fence(body.text() if body else "", node.param("language")) + "\n\n"
    if name == "jira":
        return node.param("key")
    if name == "status":
        return f"[{node.param('title')}]"
    if name in ("toc", "children", "recently-updated", "attachments", "pagetree", "contentbylabel"):
        return ""
    body = node.find("ac:rich-text-body")
    title = node.param("title")
    inner = _blocks(body, depth) if body else ""
    return f"\n\n{'**' + title + '**' if title else ''}\n\n{inner}\n\n"


def _html_list(node: _Node, depth: int) -> str:
    ordered = node.tag == "ol"
    lines: list[str] = []
    items = [c for c in node.children if isinstance(c, _Node) and c.tag == "li"]
    for i, item in enumerate(items, 1):
        nested = [c for c in item.children if isinstance(c, _Node) and c.tag in ("ul", "ol")]
        own = _Node("li", children=[c for c in item.children if not (isinstance(c, _Node) and c.tag in ("ul", "ol"))])
        text = " ".join(tidy(_blocks(own, depth)).split("\n")).strip()
        lines.append(f"{'  ' * depth}{f'{i}.' if ordered else '-'} {text}")
        lines += [_html_list(n, depth + 1) for n in nested]
    return "\n".join(lines)


def _htmltable(node: _Node) -> str:
    rows: list[list[str]] = []
    header = False

    def walk(n: _Node) -> None:
        nonlocal header
        for child in n.children:
            if not isinstance(child, _Node):
                continue
            if child.tag == "tr":
                cells = [c for c in child.children if isinstance(c, _Node) and c.tag in ("td", "th")]
                if not rows:
                    header = bool(cells) and all(c.tag == "th" for c in cells)
                rows.append([tidy(_blocks(c, 0)).replace("\n", " ") for c in cells])
            elif child.tag != "table":
                walk(child)

    walk(node)
    return table(rows, header)
