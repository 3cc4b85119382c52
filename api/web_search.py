"""The search page: a dense, paged result list (each hit with a few numbered context lines, query terms
marked), facets counted by the index under the caller's permissions, and an empty state listing the
sources the caller may read."""
from __future__ import annotations

import hashlib
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from api.highlight import highlight_lines, query_terms, stylesheet
from api.observability import remember_principal
from api.routes import search as api_search
from api.schemas import HitOut, SearchRequest
from api.web_pages import page, to_signin, viewer
from indexer.catalog.schema import ChunkRecord
from indexer.identifiers import code_tokens
from indexer.models import Principal
from retrieval.facets import facet_counts
from retrieval.permissions import Scope

router = APIRouter(include_in_schema=False)

PER_PAGE = 20
MAX_RESULTS = 100  # the most one search returns (SearchRequest.limit)
CONTEXT_LINES = 4  # lines of each hit shown in the list
# What people ask Cairn, one of each shape the query analysis understands.
EXAMPLES = ("where do we retry failed HTTP requests?", "parse_config", "how is an invoice total computed",
            "src/auth/", 'Traceback (most recent call last):\n  File "app/jobs.py", line 42, in run\nKeyError: \'user\'')


class UISearchIn(SearchRequest):
    """/v1/search's body plus the page wanted (its `limit` is the page's business here)."""

    page: int = Field(default=1, ge=1, le=MAX_RESULTS // PER_PAGE)


def recent_key(who: Principal) -> str:
    """A stable, opaque name for the caller's recent searches in this browser's localStorage."""
    identity = f"sub:{who.subject}" if who.subject else f"user:{who.user}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@router.get("/")
def search_page(request: Request) -> Response:
    who = viewer(request)
    if who is None:
        return to_signin(request)
    facets = facet_counts(request.app.state.services.fulltext, None, who, Scope(),
                          request.app.state.stale_sources.current())
    return page(request, "search.html", who, sources=facets["source"], kinds=facets["kind"],
                examples=EXAMPLES, recent_key=recent_key(who))


@router.post("/ui/search")
def ui_search(body: UISearchIn, request: Request, who: Principal = Depends(remember_principal)) -> dict:
    """One page of /v1/search (same permission filter, audit and query_id) with each hit's context lines
    as highlighted HTML, and the facet counts of the query."""
    first = (body.page - 1) * PER_PAGE
    asked = SearchRequest(**body.model_dump(exclude={"page", "limit"}), limit=MAX_RESULTS)
    result = api_search(asked, request, who)
    shown = result.hits[first:first + PER_PAGE]
    terms = query_terms(body.query)
    chunks = request.app.state.services.catalog.get_chunks([h.id for h in shown])
    scope = Scope(sources=tuple(body.sources), path_prefixes=(body.path_prefix,) if body.path_prefix else (),
                  languages=tuple(body.languages), kinds=tuple(body.kinds))
    facets = with_results(facet_counts(request.app.state.services.fulltext, body.query, who, scope,
                                       request.app.state.stale_sources.current()), result.hits)
    return {"query_id": result.query_id, "abstained": result.abstained, "timings_ms": result.timings_ms,
            "page": body.page, "per_page": PER_PAGE, "first": first + 1,
            "has_more": len(result.hits) > first + PER_PAGE, "facets": facets,
            "hits": [_hit(h, chunks.get(h.id), terms) for h in shown]}


def with_results(facets: dict[str, list[tuple[str, int]]], hits: list[HitOut]) -> dict[str, list[tuple[str, int]]]:
    """The index's counts (chunks matching the query's words) raised to the results' own counts where
    those are higher: a hit found by meaning alone still has its source, kind and language offered."""
    out = {}
    for field, counted in facets.items():
        found: dict[str, int] = {}
        for hit in hits:
            value = getattr(hit, field)
            if value:
                found[value] = found.get(value, 0) + 1
        merged = dict(counted)
        for value, count in found.items():
            merged[value] = max(count, merged.get(value, 0))
        out[field] = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return out


def document_href(doc_id: str, start: int, end: int) -> str:
    """The document view of a hit, its lines marked through the #L anchor (the page adds `?q=` so the query's
    terms are marked there too: the answer never echoes the query)."""
    anchor = f"#L{start}" if start == end else f"#L{start}-L{end}"
    return f"/documents/{quote(doc_id, safe='/:')}{anchor}"


def _hit(hit: HitOut, chunk: ChunkRecord | None, terms: frozenset[str]) -> dict:
    return {"id": hit.id, "document_id": hit.document_id, "source": hit.source, "path": hit.path,
            "title": hit.title, "url": hit.url, "start_line": hit.start_line, "end_line": hit.end_line,
            "symbol": hit.symbol, "kind": hit.kind, "language": hit.language,
            "href": document_href(hit.document_id, hit.start_line, hit.end_line),
            "lines": context_lines(chunk, terms) if chunk is not None else []}


def context_lines(chunk: ChunkRecord, terms: frozenset[str], size: int = CONTEXT_LINES) -> list[dict]:
    """The `size` lines of the chunk holding the most query terms (the first lines without any), each
    with its line number and highlighted HTML (the whole chunk is highlighted, so a window opening
    inside a string or comment is coloured right)."""
    lines = chunk.content.split("\n")
    hits = [len(terms.intersection(code_tokens(line))) for line in lines]
    start = max(range(max(1, len(lines) - size + 1)), key=lambda i: (sum(hits[i:i + size]), -i))
    while start < len(lines) - 1 and not lines[start].strip() and hits[start] == 0:
        start += 1  # no window opens on a blank line
    html = highlight_lines(chunk.content, chunk.language, chunk.path, terms)
    return [{"n": chunk.start_line + i, "html": html[i] if i < len(html) else ""}
            for i in range(start, min(len(lines), start + size))]


@router.get("/ui/highlight.css")
def highlight_css() -> Response:
    return Response(stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})
