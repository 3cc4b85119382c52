"""What MCP tools answer a model with: code as fenced blocks headed `source:path:start-end`, within a token budget.

The structured content keeps the tools' JSON shapes (their outputSchema); the text content is for the model,
which reads fenced code under a location better than JSON with escaped newlines."""
from __future__ import annotations

from collections.abc import Sequence

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from api.continue_provider import LINE_KINDS, fence
from api.mcp_schemas import Definition, HistoryOut, ReferenceOut, RelatedOut, SourceBrief
from api.schemas import DocumentOut, HitOut
from indexer.languages import detect_language
from retrieval.grep import GrepMatch
from retrieval.hits import Candidate
from retrieval.packing import estimate_tokens, pack, truncate


def reply(structured: BaseModel | Sequence[BaseModel], text: str) -> CallToolResult:
    """A tool result: `text` for the model, and the structured content the tool's outputSchema describes
    (a list is wrapped as {"result": [...]}, as the SDK wraps a function returning a list)."""
    if isinstance(structured, BaseModel):
        content = structured.model_dump(mode="json")
    else:
        content = {"result": [item.model_dump(mode="json") for item in structured]}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


def location(source: str, path: str, start: int, end: int) -> str:
    return f"{source}:{path}:{start}-{end}"


def code_block(head: str, language: str, content: str) -> str:
    """The header line, then the content fenced with its language (a fence longer than any inside it)."""
    return f"{head}\n{fence(language, content)}"


def search_text(query_id: str, hits: Sequence[HitOut], cands: Sequence[Candidate], max_tokens: int) -> str:
    """The hits' whole text (nearby hits of a file come merged) as code blocks, best first, while they fit `max_tokens`;
    the hits left out are still named by location, so nothing is dropped without a word."""
    if not hits:
        return f"No results. (query_id {query_id})"
    shown = _pack_blocks(cands, max_tokens)
    parts = [code_block(_head(c), c.language, c.content) for c in shown]
    left = [h for h in hits if not any(_covers(c, h) for c in shown)]
    if left:
        parts.append(f"Not shown within max_tokens={max_tokens} (open them with read_file): "
                     + ", ".join(location(h.source, h.path, h.start_line, h.end_line) for h in left))
    parts.append(f"query_id {query_id}")
    return "\n\n".join(parts)


def within_budget(matches: Sequence[GrepMatch], max_tokens: int | None) -> tuple[list[GrepMatch], bool]:
    """The leading matches whose rendered blocks fit `max_tokens`, and whether any were left out."""
    if max_tokens is None:
        return list(matches), False
    used = 0
    kept: list[GrepMatch] = []
    for index, match in enumerate(matches):
        opens = index == 0 or not _continues(matches[index - 1], match)
        cost = estimate_tokens(match.text) + 1 + (_overhead(match.source, match.path) if opens else 0)
        if used + cost > max_tokens:
            return kept, True
        used += cost
        kept.append(match)
    return kept, False


def grep_text(matches: Sequence[GrepMatch], truncated: bool, max_tokens: int | None) -> str:
    """Matching lines as code blocks, one per run of consecutive lines of a document."""
    parts = []
    for run in _runs(matches):
        first, last = run[0], run[-1]
        parts.append(code_block(location(first.source, first.path, first.line, last.line),
                                detect_language(first.path), "\n".join(m.text for m in run)))
    if truncated:
        budget = f" or within max_tokens={max_tokens}" if max_tokens is not None else ""
        parts.append(f"More matches exist than were returned (limit{budget}): narrow the pattern or the scope.")
    return "\n\n".join(parts) or "No matching lines."


def budget_document(doc: DocumentOut, max_tokens: int | None) -> DocumentOut:
    """The document cut to its longest prefix of whole lines that fits `max_tokens` with its header."""
    if max_tokens is None:
        return doc
    head = location(doc.source, doc.path, doc.start_line, doc.end_line)
    cand = Candidate(chunk_id=doc.id, doc_id=doc.id, source=doc.source, path=doc.path, start_line=doc.start_line,
                     end_line=doc.end_line, content=doc.content)
    cut = truncate(cand, max(max_tokens - estimate_tokens(code_block(head, doc.language, "")) - 1, 1))
    if cut is None:
        return doc.model_copy(update={"content": "", "end_line": doc.start_line - 1})
    return doc.model_copy(update={"content": cut.content, "end_line": cut.end_line})


def document_text(doc: DocumentOut) -> str:
    head = location(doc.source, doc.path, doc.start_line, doc.end_line)
    if doc.title and doc.kind not in LINE_KINDS:
        head += f" {doc.title}"
    text = code_block(head, doc.language, doc.content)
    if doc.end_line < doc.total_lines:
        text += (f"\n\nLines {doc.start_line}-{doc.end_line} of {doc.total_lines}: call read_file with "
                 f"start_line={doc.end_line + 1} for more.")
    return text


def _pack_blocks(cands: Sequence[Candidate], max_tokens: int) -> list[Candidate]:
    """The retrieval packer over the rendered blocks: each costs its content plus its header and fences."""
    if not cands:
        return []
    overhead = max(estimate_tokens(code_block(_head(c), c.language, "")) for c in cands) + 1
    return pack(cands, max_tokens, lambda text: estimate_tokens(text) + overhead)


def _head(cand: Candidate) -> str:
    head = location(cand.source, cand.path, cand.start_line, cand.end_line)
    if cand.symbol:
        head += f" {cand.symbol}"
    if cand.title and cand.kind not in LINE_KINDS:
        head += f" {cand.title}"
    return head


def _covers(cand: Candidate, hit: HitOut) -> bool:
    return cand.doc_id == hit.document_id and cand.start_line <= hit.start_line <= cand.end_line


def _overhead(source: str, path: str) -> int:
    return estimate_tokens(code_block(location(source, path, 1, 1), detect_language(path), "")) + 2


def _continues(before: GrepMatch, match: GrepMatch) -> bool:
    return before.document_id == match.document_id and match.line == before.line + 1


def _runs(matches: Sequence[GrepMatch]) -> list[list[GrepMatch]]:
    runs: list[list[GrepMatch]] = []
    for match in matches:
        if runs and _continues(runs[-1][-1], match):
            runs[-1].append(match)
        else:
            runs.append([match])
    return runs



def definitions_text(definitions: Sequence[Definition]) -> str:
    lines = [f"{location(d.source, d.path, d.start_line, d.end_line)} {d.symbol} ({d.language or 'text'}), "
             f"defined at line {d.line}" for d in definitions]
    return "\n".join(lines) or "No definition found in the sources you can read."


def references_within(refs: Sequence[ReferenceOut], max_tokens: int | None) -> tuple[list[ReferenceOut], bool]:
    """The leading references whose rendered blocks fit `max_tokens`, and whether any were left out."""
    if max_tokens is None:
        return list(refs), False
    used = 0
    for index, ref in enumerate(refs):
        used += estimate_tokens(_reference_block(ref)) + 1
        if used > max_tokens:
            return list(refs[:index]), True
    return list(refs), False


def references_text(refs: Sequence[ReferenceOut], truncated: bool, max_tokens: int | None) -> str:
    """One block per reference, headed by its location and what it is: the definition, or the caller."""
    parts = [_reference_block(r) for r in refs]
    if truncated:
        budget = f" or within max_tokens={max_tokens}" if max_tokens is not None else ""
        parts.append(f"More references exist than were returned (limit{budget}): narrow with sources or "
                     "path_prefix.")
    return "\n\n".join(parts) or "No definition or use found in the sources you can read."


def _reference_block(ref: ReferenceOut) -> str:
    what = f"definition of {ref.symbol}" if ref.definition else f"in {ref.symbol or 'top-level code'}"
    return code_block(f"{location(ref.source, ref.path, ref.line, ref.line)} {what}", ref.language, ref.context)


def sources_text(sources: Sequence[SourceBrief]) -> str:
    lines = [f"{s.name} ({s.kind}, {s.state}): {s.documents} documents, {s.chunks} chunks, last synced "
             f"{s.last_success_at or 'never'}" for s in sources]
    return "\n".join(lines) or "No sources you can read."


def history_text(out: HistoryOut, path: str, max_tokens: int) -> str:
    """Each commit headed `source:commit:<sha>` with its date, author and link, its message fenced, the tickets and
    merge requests it references, and (for a path) its diff of that path fenced as `diff`."""
    parts = []
    for c in out.commits:
        head = " ".join(x for x in (f"{c.source}:commit:{c.sha[:12]}", c.date, c.author, c.url) if x)
        if c.references:
            head += f"\nReferences: {', '.join(c.references)}"
        block = code_block(head, "text", c.message)
        if c.hunks:
            block += "\n" + code_block(f"{c.source}:{path} in {c.sha[:12]}", "diff", c.hunks)
        parts.append(block)
    if out.truncated:
        parts.append(f"Diff hunks were cut to stay within max_tokens={max_tokens}: narrow the path or raise max_tokens.")
    return "\n\n".join(parts) or "No commits found in the history you can read."


def related_text(out: RelatedOut) -> str:
    """One line per linked item: kind, location, title, why it is linked, link."""
    lines = [f"{i.kind} {i.source}:{i.path} {i.title} ({i.via})" + (f" {i.url}" if i.url else "") for i in out.items]
    if not lines:
        return f"Nothing linked to {out.subject!r} in the sources you can read."
    keys = f" (following {', '.join(out.keys)})" if out.keys else ""
    return f"Linked to {out.subject}{keys}:\n" + "\n".join(lines)
