"""Jira wiki markup (Jira Server/Data Center, REST v2) to Markdown-ish text."""
from __future__ import annotations

import re

from connectors.rendering.markdown import fence, table, tidy

_WIKI_HEADING = re.compile(r"^\s*h([1-6])\.\s+(.*)$")
_WIKI_BLOCK = re.compile(r"\{(code|noformat)(?::([^}]*))?\}(.*?)\{\1\}", re.DOTALL)
_WIKI_QUOTE = re.compile(r"\{quote\}(.*?)\{quote\}", re.DOTALL)
_WIKI_PANEL = re.compile(r"\{(?:panel|color|tip|info|note|warning)(?::[^}]*)?\}")
_WIKI_LINK = re.compile(r"\[([^|\]\n]*)\|([^\]\n]+)\]")
_WIKI_BARE_LINK = re.compile(r"\[((?:https?|mailto):[^\]\s]+)\]")
_WIKI_MENTION = re.compile(r"\[~(?:accountid:)?([^\]\n]+)\]")
_WIKI_LIST = re.compile(r"^\s*([*#-]+)\s+(.*)$")
_WIKI_MONO = re.compile(r"\{\{(.+?)\}\}")
_WIKI_EMPHASIS = re.compile(r"(?<![\w*])([*_+^~-])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_WIKI_IMAGE = re.compile(r"!([^!\s|]+)(?:\|[^!]*)?!")


def jira_wiki_to_text(markup: str | None) -> str:
    """Render Jira wiki markup as Markdown-ish text: headings, code, lists and tables survive."""
    if not markup:
        return ""
    blocks: list[str] = []

    def stash(match: re.Match[str]) -> str:
        language = (match.group(2) or "").split("|")[0].strip() if match.group(1) == "code" else ""
        if "=" in language:
            language = ""
        blocks.append(fence(match.group(3), language))
        return f"\x00{len(blocks) - 1}\x00"

    text = _WIKI_BLOCK.sub(stash, markup.replace("\r\n", "\n"))
    text = _WIKI_QUOTE.sub(lambda m: "\n".join("> " + line for line in m.group(1).strip().split("\n")), text)
    out: list[str] = []
    rows: list[list[str]] = []
    header = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("|"):
            header = header or (not rows and stripped.startswith("||"))
            rows.append([_wiki_inline(c) for c in re.split(r"\|\|?", stripped.strip("|"))])
            continue
        if rows:
            out.append(table(rows, header))
            rows, header = [], False
        out.append(_wiki_line(line))
    if rows:
        out.append(table(rows, header))
    rendered = "\n".join(out)
    rendered = re.sub(r"\x00(\d+)\x00", lambda m: blocks[int(m.group(1))], rendered)
    return tidy(rendered)


def _wiki_line(line: str) -> str:
    heading = _WIKI_HEADING.match(line)
    if heading:
        return f"{'#' * int(heading.group(1))} {_wiki_inline(heading.group(2))}"
    if line.strip().startswith("bq. "):
        return "> " + _wiki_inline(line.strip()[4:])
    if line.strip() == "----":
        return "\n---\n"
    item = _WIKI_LIST.match(line)
    if item and (set(item.group(1)) <= {"*", "#"} or item.group(1) == "-"):
        marks = item.group(1)
        marker = "1." if marks.endswith("#") else "-"
        return f"{'  ' * (len(marks) - 1)}{marker} {_wiki_inline(item.group(2))}"
    return _wiki_inline(line)


def _wiki_inline(text: str) -> str:
    text = _WIKI_PANEL.sub("", text)
    text = _WIKI_MONO.sub(r"`\1`", text)
    text = _WIKI_MENTION.sub(r"@\1", text)
    text = _WIKI_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})" if m.group(1) else m.group(2), text)
    text = _WIKI_BARE_LINK.sub(r"\1", text)
    text = _WIKI_IMAGE.sub(r"[image: \1]", text)
    return _WIKI_EMPHASIS.sub(r"\2", text).strip()
