"""`locate` for a caller: the files a task or a bug report needs, with line ranges and evidence, over REST and MCP."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth import principal
from api.history import history_index
from api.mcp_render import code_block, location
from api.schemas import MAX_QUERY_CHARS
from indexer.models import Principal
from retrieval.locate import DEFAULT_BUDGET_SECONDS, LocatedFile, LocateResult, Locator
from retrieval.packing import estimate_tokens
from retrieval.permissions import Scope

router = APIRouter(prefix="/v1")
MAX_BUDGET_SECONDS = 30.0


class LocateRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The task or the bug report.")
    limit: int = Field(default=10, ge=1, le=100)
    sources: list[str] = Field(default_factory=list, max_length=100)
    path_prefix: str = Field(default="", max_length=1000)
    languages: list[str] = Field(default_factory=list, max_length=50)
    budget_seconds: float = Field(default=DEFAULT_BUDGET_SECONDS, gt=0, le=MAX_BUDGET_SECONDS,
                                  description="Time budget of the retrieval; steps that would start later are skipped.")


class LocatedFileOut(BaseModel):
    document_id: str
    source: str
    path: str
    language: str
    url: str
    start_line: int  # the line range that matters most in the file (1-based, inclusive)
    end_line: int
    score: float
    symbol: str
    evidence: list[str]  # why the file was chosen, strongest first
    tokens: int  # estimated tokens of the line range


class LocateOut(BaseModel):
    query_id: str
    files: list[LocatedFileOut]
    steps: list[str]  # the retrieval steps that ran within the budget
    truncated: bool  # the budget stopped the retrieval before every step ran
    tokens: int  # estimated tokens of every file's line range
    timings_ms: dict[str, float]


def locate_answer(state: Any, who: Principal, query: str, scope: Scope, limit: int, budget: float,
                  action: str = "locate") -> tuple[LocateOut, LocateResult]:
    """The files `who` may read that `query` needs (the structured answer, and the result with the ranges' text)."""
    services = state.services
    locator = Locator(state.searcher, services.catalog, services.fulltext, state.stale_sources, history_index(state))
    found = locator.locate(query, who, scope, limit=limit, budget=budget)
    query_id = str(uuid.uuid4())
    state.audit.record(who, action, scope=scope, result_ids=[f.document_id for f in found.files], query_id=query_id,
                       query_text=query)
    files = [LocatedFileOut(**{name: getattr(f, name) for name in LocatedFileOut.model_fields if name != "evidence"},
                            evidence=list(f.evidence)) for f in found.files]
    out = LocateOut(query_id=query_id, files=files, steps=found.steps, truncated=found.truncated, tokens=found.tokens,
                    timings_ms={k: round(v * 1000, 2) for k, v in found.timings.items()})
    return out, found


@router.post("/locate", response_model=LocateOut)
def post_locate(body: LocateRequest, request: Request, who: Principal = Depends(principal)) -> LocateOut:
    """The files (with line ranges and evidence) that a task or bug report needs, among those the caller may read."""
    scope = Scope(sources=tuple(body.sources), path_prefixes=(body.path_prefix,) if body.path_prefix else (),
                  languages=tuple(body.languages))
    out, _ = locate_answer(request.app.state, who, body.query, scope, body.limit, body.budget_seconds)
    return out


def locate_text(out: LocateOut, files: Sequence[LocatedFile], max_tokens: int) -> str:
    """Each file's range as a fenced block headed `source:path:start-end` with its evidence, best first, while
    the blocks fit `max_tokens` (the first is cut to fit); the files left out are named with their evidence."""
    if not files:
        return f"No files found in the sources you can read. (query_id {out.query_id})"
    parts, left, used = [], [], 0
    for f in files:
        head = f"{_head(f)}\nWhy: {'; '.join(f.evidence)}"
        block = code_block(head, f.language, f.content)
        cost = estimate_tokens(block) + 1
        if used + cost <= max_tokens:
            parts.append(block)
            used += cost
        elif not parts:
            room = max_tokens - estimate_tokens(code_block(head, f.language, "")) - 2
            kept = _lines_within(f.content, room)
            parts.append(code_block(head, f.language, kept) if kept else head)
            used = max_tokens
        else:
            left.append(f"{_head(f)} ({'; '.join(f.evidence[:2])})")
    if left:
        parts.append(f"Not shown within max_tokens={max_tokens} (open them with read_file):\n" + "\n".join(left))
    if out.truncated:
        parts.append(f"The time budget ended the search after the steps: {', '.join(out.steps)}.")
    parts.append(f"query_id {out.query_id}")
    return "\n\n".join(parts)


def _head(f: LocatedFile) -> str:
    head = location(f.source, f.path, f.start_line, f.end_line)
    return f"{head} {f.symbol}" if f.symbol else head


def _lines_within(text: str, max_tokens: int) -> str:
    kept, used = [], 0
    for line in text.split("\n"):
        used += estimate_tokens(line) + 1
        if used > max_tokens:
            break
        kept.append(line)
    return "\n".join(kept)

