"""Commit history and linked items for a caller: the `history` and `related` answers, over REST and MCP."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from api.auth import principal
from api.errors import BadRequest
from api.mcp_schemas import CommitOut, HistoryOut, LinkedOut, RelatedOut
from indexer.models import Principal
from retrieval.history import HistoryError, HistoryIndex
from retrieval.related import related

router = APIRouter(prefix="/v1")


def history_index(state: Any) -> HistoryIndex:
    """The index as `history` and `related` read it (the services of the active generation)."""
    services = state.services
    return HistoryIndex(services.catalog, services.fulltext, state.settings, services.pipeline.secrets)


def history_answer(state: Any, who: Principal, path: str, text: str, sources: Sequence[str], limit: int,
                   max_tokens: int | None) -> HistoryOut:
    """Commits touching `path` and/or matching `text` that `who` may read, newest first, with the path's hunks."""
    budget = max_tokens or state.settings.context_token_budget
    try:
        found = history_index(state).history(who, path, text, sources, limit, budget, state.stale_sources.current())
    except HistoryError as exc:
        raise BadRequest(str(exc)) from None
    commits = [CommitOut(document_id=c.document_id, source=c.source, sha=c.sha, date=c.date, author=c.author,
                         message=c.message, url=c.url, references=list(c.references), paths=list(c.paths),
                         hunks=c.hunks) for c in found.commits]
    state.audit.record(who, "history", result_ids=[c.document_id for c in commits], query_text=path or text)
    return HistoryOut(commits=commits, truncated=found.truncated)


def related_answer(state: Any, who: Principal, item: str, limit: int) -> RelatedOut:
    """The items linked to `item` that `who` may read."""
    try:
        found = related(history_index(state), who, item, limit, state.stale_sources.current())
    except HistoryError as exc:
        raise BadRequest(str(exc)) from None
    state.audit.record(who, "related", result_ids=[i.document_id for i in found.items], query_text=item)
    return RelatedOut(subject=found.subject, keys=found.keys, items=[LinkedOut(**vars(i)) for i in found.items])


@router.get("/history", response_model=HistoryOut)
def get_history(request: Request, path: str = Query(default="", max_length=1000),
                text: str = Query(default="", max_length=300), source: list[str] = Query(default=[], max_length=100),
                limit: int = Query(default=10, ge=1, le=100),
                max_tokens: int | None = Query(default=None, ge=100, le=100_000),
                who: Principal = Depends(principal)) -> HistoryOut:
    """Commits of git sources the caller may read that touch `path` (a file or a folder) and/or whose message
    contains `text`, newest first; with a path, that path's diff in each, within `max_tokens`."""
    return history_answer(request.app.state, who, path, text, source, limit, max_tokens)


@router.get("/related", response_model=RelatedOut)
def get_related(request: Request, item: str = Query(min_length=1, max_length=300),
                limit: int = Query(default=30, ge=1, le=100), who: Principal = Depends(principal)) -> RelatedOut:
    """Tickets, merge requests, commits, pages and files linked to `item` (a Jira key, `group/project!3`, a
    commit sha or a document id) that the caller may read."""
    return related_answer(request.app.state, who, item, limit)
