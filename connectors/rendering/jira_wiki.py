"""Jira wiki markup (Jira Server/Data Center, REST v2) to Markdown-ish text.

Markup is untrusted: every pattern runs in linear time (inline spans have bounded length, block
pairs are found by a forward scan), so a hostile ticket cannot make rendering quadratic."""
from __future__ import annotations

import re

from connectors.rendering.markdown import fence, table, tidy

# Inline spans longer than this are left as they are: the bound keeps every search linear.
SPAN = 500


def _spans(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("{SPAN}", str(SPAN)))


_WIKI_HEADING = re.compile(r"^\s*h([1-6])\.\s+(.*)$")
_WIKI_BLOCK_OPEN = _spans(r"\{(code|noformat)(?::([^}\n]{0,{SPAN}}))?\}")
_WIKI_QUOTE = "{quote}"
_WIKI_PANEL = _spans(r"\{(?:panel|color|tip|info|note|warning)(?::[^}]{0,{SPAN}})?\}")
_WIKI_LINK = _spans(r"\[([^|\]\n]{0,{SPAN}})\|([^\]\n]{1,{SPAN}})\]")
_WIKI_BARE_LINK = _spans(r"\[((?:https?|mailto):[^\]\s]{1,{SPAN}})\]")
_WIKI_MENTION = _spans(r"\[~(?:accountid:)?([^\]\n]{1,{SPAN}})\]")
_WIKI_LIST = re.compile(r"^\s*([*#-]+)\s+(.*)$")
_WIKI_MONO = _spans(r"\{\{(.{1,{SPAN}}?)\}\}")
_WIKI_EMPHASIS = _spans(r"(?<![\w*])([*_+^~-])(?=\S)(.{1,{SPAN}}?)(?<=\S)\1(?![\w*])")
_WIKI_IMAGE = _spans(r"!([^!\s|]{1,{SPAN}})(?:\|[^!]{0,{SPAN}})?!")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")


def jira_wiki_to_text(markup: str | None) -> str:
    """Render Jira wiki markup as Markdown-ish text: headings, code, lists and tables survive."""
    if not markup:
        return ""
    blocks: list[str] = []
    # NUL marks stashed code blocks below; it has no meaning in markup, so any in the input goes.
    text = _stash_code_blocks(markup.replace("\x00", "").replace("\r\n", "\n"), blocks)
    text = _quotes(text)
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
    rendered = _PLACEHOLDER.sub(lambda m: blocks[int(m.group(1))], rendered)
    return tidy(rendered)


def _stash_code_blocks(text: str, blocks: list[str]) -> str:
    """Replace each `{code:lang}...{code}` / `{noformat}...{noformat}` with a placeholder naming its
    fenced rendering in `blocks`. An opener with no closer after it stays text, and so does every
    later opener of that kind (one forward scan, never a search per opener to the end)."""
    out: list[str] = []
    pos = 0
    unclosed: set[str] = set()
    while (opener := _WIKI_BLOCK_OPEN.search(text, pos)) is not None:
        kind = opener.group(1)
        close = -1 if kind in unclosed else text.find("{" + kind + "}", opener.end())
        if close < 0:
            unclosed.add(kind)
            out.append(text[pos:opener.end()])
            pos = opener.end()
            continue
        language = (opener.group(2) or "").split("|")[0].strip() if kind == "code" else ""
        blocks.append(fence(text[opener.end():close], "" if "=" in language else language))
        out.append(text[pos:opener.start()] + f"\x00{len(blocks) - 1}\x00")
        pos = close + len(kind) + 2
    out.append(text[pos:])
    return "".join(out)


def _quotes(text: str) -> str:
    """`{quote}...{quote}` pairs, left to right, as `> ` lines; an unpaired last marker stays text."""
    parts = text.split(_WIKI_QUOTE)
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        if i + 1 < len(parts):
            out.append("\n".join("> " + line for line in parts[i].strip().split("\n")) + parts[i + 1])
        else:
            out.append(_WIKI_QUOTE + parts[i])
    return "".join(out)


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
