"""Markdown documents (docs, tickets, pages) rendered safely for the document view: raw HTML is escaped,
links are checked by markdown-it (no `javascript:`), images become links (the page loads nothing from
elsewhere), fenced code is highlighted by pygments, and every top-level block names the source lines
it came from so #L anchors mark the rendered text too."""
from __future__ import annotations

import functools
import html
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from api.highlight import highlight_lines

RENDERED_KINDS = ("issue", "merge_request", "page")  # written in Markdown by the connectors


def is_markdown(kind: str, language: str, path: str) -> bool:
    return language == "markdown" or kind in RENDERED_KINDS or path.lower().endswith((".md", ".markdown"))


def _highlight(code: str, lang: str, _attrs: str) -> str:
    return "\n".join(highlight_lines(code, lang, "")) + "\n"


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """An image as a link to it, labelled with its alt text: nothing is fetched by the page."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    return f'<a class="image-link" href="{src}" rel="noopener noreferrer">[image: {html.escape(alt)}]</a>'


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                   "highlight": _highlight}).enable(["table", "strikethrough"])
    md.add_render_rule("image", _image)
    return md


def render_markdown(text: str) -> str:
    """The document as HTML; blocks at the top level carry `data-lines="first-last"` (1-based)."""
    md = _parser()
    env: EnvType = {}
    tokens = md.parse(text, env)
    for token in tokens:
        if token.level == 0 and token.map and token.nesting >= 0 and token.type != "inline":
            token.attrSet("data-lines", f"{token.map[0] + 1}-{max(token.map[0] + 1, token.map[1])}")
        for child in token.children or []:
            if child.type == "link_open":
                child.attrSet("rel", "noopener noreferrer")
    return md.renderer.render(tokens, md.options, env)
