"""Continue's `http` context provider at POST /v1/context: search, pack for a budget, render items."""
from __future__ import annotations

import logging
import posixpath
import re
import uuid

from fastapi import APIRouter, HTTPException, Request, Response

from api.auth import principal
from api.schemas import MAX_QUERY_CHARS, ContextItem, ContextItemUri, ContextOptions, ContextRequest
from indexer.models import Principal
from retrieval.hits import Candidate, Hit
from retrieval.packing import estimate_tokens, pack
from retrieval.permissions import Scope
from retrieval.query_analysis import QueryError
from retrieval.search import HybridSearcher

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")

SOURCES_HEADER = "x-cairn-sources"
DEFAULT_LIMIT = 10
LINE_KINDS = ("code", "doc", "text")  # kinds whose chunks are line spans of a file
_BACKTICKS = re.compile(r"`{3,}")


def as_list(value: list[str] | str | None) -> list[str]:
    """Continue options hold lists or comma-separated strings; both become a clean list."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


def requested_sources(options: ContextOptions, header: str | None) -> tuple[list[str], bool]:
    """Sources from `options.repos`/`options.sources` and the X-Cairn-Sources header.

    Both given: only sources named in both. Returns (sources, possible); `possible` is False
    when the two disagree completely, so nothing must be searched."""
    configured = as_list(options.repos) + as_list(options.sources)
    from_header = as_list(header)
    if configured and from_header:
        both = [s for s in dict.fromkeys(configured) if s in set(from_header)]
        return both, bool(both)
    return list(dict.fromkeys(configured or from_header)), True


def link(url: str, kind: str, start: int, end: int) -> str:
    """The web link with a line anchor (GitLab `#L3-9`, otherwise GitHub style `#L3-L9`)."""
    if not url or "#" in url or kind not in LINE_KINDS or start < 1:
        return url
    if "/-/blob/" in url:
        return f"{url}#L{start}-{end}" if end > start else f"{url}#L{start}"
    return f"{url}#L{start}-L{end}" if end > start else f"{url}#L{start}"


def fence(path: str, content: str) -> str:
    """A fenced block whose info string is the relative path, as Continue's own file items are;
    the fence is longer than any backtick run inside the content."""
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(content)), default=2)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{path}\n{content}\n{marks}"


def to_item(cand: Candidate) -> ContextItem:
    lines = f"{cand.start_line}-{cand.end_line}"
    if cand.kind in LINE_KINDS:
        name = f"{posixpath.basename(cand.path) or cand.path} ({lines})"
        description = f"{cand.source}/{cand.path}:{lines} {cand.symbol}".strip()
    else:
        name = cand.title or cand.path
        description = f"{cand.source} {cand.path}: {cand.title}".strip()
    uri = link(cand.url, cand.kind, cand.start_line, cand.end_line)
    return ContextItem(name=name, description=description, content=fence(cand.path, cand.content),
                       uri=ContextItemUri(type="url", value=uri) if uri else None)


def candidates(hits: list[Hit]) -> list[Candidate]:
    """Hits with their whole text (the search merged nearby hits of one file into one item already)."""
    return [Candidate(chunk_id=h.chunk_id, doc_id=h.doc_id, source=h.source, path=h.path, start_line=h.start_line,
                      end_line=h.end_line, content=h.content, symbol=h.symbol, kind=h.kind, language=h.language,
                      title=h.title, url=h.url, score=h.score, members=h.chunk_ids) for h in hits]


def budgeted(cands: list[Candidate], token_budget: int) -> list[Candidate]:
    """Pack the items so their rendered contents (each fenced) fit the budget."""
    if not cands:
        return []
    overhead = max(estimate_tokens(fence(c.path, "")) for c in cands) + 1
    return pack(cands, token_budget, lambda text: estimate_tokens(text) + overhead)


def search_hits(searcher: HybridSearcher, text: str, who: Principal, scope: Scope, limit: int) -> list[Hit]:
    """Hits for a chat message; a message with nothing searchable in it (only punctuation, only
    an @-mention's leftovers) gives no hits rather than an error Continue would not show."""
    if not text:
        return []
    try:
        return searcher.search(text, who, scope, limit=limit).hits
    except QueryError:
        return []


AUTH_HELP = ("Put a valid Cairn token in Continue's config: under the `http` context provider, "
             "`requestOptions: {headers: {Authorization: \"Bearer cairn_…\"}}`. Create one on Cairn's Tokens page "
             "(or ask an admin for `cairn tokens create`); a revoked or expired token needs a new one.")


def refusal_item(status: int, detail: str) -> ContextItem:
    """Continue shows a non-200 answer as an empty item titled "HTTP Context Item"; a refused token is
    answered with one item that says what is wrong and how to fix it instead."""
    what = "Cairn did not accept the token" if status == 401 else "Cairn refused the request"
    return ContextItem(name=f"{what} ({status})", description=f"{what}: {detail}",
                       content=f"{what}: {detail}.\n\n{AUTH_HELP}")


@router.post("/context", response_model=list[ContextItem], response_model_exclude_none=True)
def context(body: ContextRequest, request: Request, response: Response) -> list[ContextItem]:
    """Continue's `http` context provider: searches `fullInput` (or `query`) and answers with an
    array of context items whose total content stays within `context_token_budget` tokens. A missing,
    invalid or refused token answers 200 with one item explaining it (header X-Cairn-Error says which)."""
    try:
        who = principal(request)
    except HTTPException as exc:
        if exc.status_code not in (401, 403):
            raise
        response.headers["X-Cairn-Error"] = str(exc.status_code)
        return [refusal_item(exc.status_code, str(exc.detail))]
    request.state.principal = who  # for the request log (api/observability.py)
    text = ((body.fullInput or "").strip() or (body.query or "").strip())[:MAX_QUERY_CHARS]
    options = body.options or ContextOptions()
    sources, possible = requested_sources(options, request.headers.get(SOURCES_HEADER))
    scope = Scope(sources=tuple(sources), path_prefixes=(options.path_prefix,) if options.path_prefix else (),
                  languages=tuple(as_list(options.languages)), kinds=tuple(as_list(options.kinds)))
    query_id = str(uuid.uuid4())
    response.headers["X-Cairn-Query-Id"] = query_id
    app = request.app
    hits = search_hits(app.state.searcher, text if possible else "", who, scope, options.limit or DEFAULT_LIMIT)
    packed = budgeted(candidates(hits), app.state.settings.context_token_budget)
    app.state.audit.record(who, "context", scope=scope, result_ids=[c.chunk_id for c in packed],
                           query_id=query_id, query_text=text)
    log.info("context query %s: %d hits, %d items", query_id, len(hits), len(packed))
    return [to_item(c) for c in packed]
