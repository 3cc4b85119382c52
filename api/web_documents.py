"""The document view: a document the caller may read (the API's own check, `read_document`), highlighted
with line numbers and #L10-L20 anchors, or rendered from Markdown (docs, tickets, pages)."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.documents import read_document
from api.errors import BadRequest, NotFound
from api.highlight import highlight_lines, query_terms
from api.markdown_view import is_markdown, render_markdown
from api.web_pages import not_found, page, to_signin, viewer

router = APIRouter(include_in_schema=False)

VIEWS = ("source", "rendered")
PROSE_KINDS = ("doc", "text", "issue", "merge_request", "page")  # long lines wrap in the source view


@router.get("/documents/{doc_id:path}")
def document_page(doc_id: str, request: Request, line: int | None = Query(default=None, ge=1),
                  end: int | None = Query(default=None, ge=1), q: str = Query(default="", max_length=20_000),
                  view: str = "") -> Response:
    """`line`/`end` mark a range from the server (links older than the #L anchors); `view` picks the
    source or the rendered Markdown of a document that has both."""
    who = viewer(request)
    if who is None:
        return to_signin(request)
    try:
        doc = read_document(request.app.state.services.catalog, who, doc_id,
                            stale=request.app.state.stale_sources.current())
    except (NotFound, BadRequest):
        return not_found(request, who, f"document {doc_id!r}")
    renderable = is_markdown(doc.kind, doc.language, doc.path)
    shown = view if view in VIEWS else ("rendered" if renderable else "source")
    if shown == "rendered" and not renderable:
        shown = "source"
    terms = query_terms(q) if q else None
    lines = highlight_lines(doc.content, doc.language, doc.path, terms) if shown == "source" else []
    first = line or 0
    return page(request, "document.html", who, doc=doc, lines=lines, first=first, last=max(first, end or first), q=q,
                view=shown, renderable=renderable, prose=doc.kind in PROSE_KINDS,
                rendered=render_markdown(doc.content) if shown == "rendered" else "")
