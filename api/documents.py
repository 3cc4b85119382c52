"""Document reads under the caller's ACL, result feedback, and the admin views of feedback and audit."""
from __future__ import annotations

from collections.abc import Collection

from fastapi import APIRouter, Depends, Query, Request

from api.audit import AuditEntry, FeedbackRecord
from api.auth import admin, principal
from api.errors import BadRequest, NotFound
from api.schemas import AuditOut, DocumentOut, FeedbackIn, FeedbackOut
from indexer.catalog import Catalog
from indexer.models import Principal
from retrieval.permissions import readable

router = APIRouter(prefix="/v1")


def read_document(catalog: Catalog, who: Principal, doc_id: str, start_line: int | None = None,
                  end_line: int | None = None, *, stale: Collection[str]) -> DocumentOut:
    """The document's text (or a 1-based inclusive line range of it) if the caller may read it.
    `stale`: sources whose restricted documents are not served (`StaleSources.current()`).

    A document the caller may not read is reported exactly like one that does not exist."""
    acl = catalog.document_acl(doc_id)
    doc = catalog.get_document(doc_id) if acl is not None else None
    if acl is None or doc is None or not readable(acl, doc.source, who, stale):
        raise NotFound(f"no document {doc_id!r}")
    lines = doc.content.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start another
    first = max(1, start_line or 1)
    last = min(len(lines), end_line or len(lines))
    if first > len(lines) or last < first:
        raise BadRequest(f"document {doc_id!r} has {len(lines)} lines; there is no line range {first}-{last}")
    whole = first == 1 and last == len(lines)
    return DocumentOut(id=doc.id, source=doc.source, path=doc.path, title=doc.title, kind=doc.kind,
                       language=doc.language, url=doc.url, version=doc.version, start_line=first, end_line=last,
                       total_lines=len(lines), content=doc.content if whole else "\n".join(lines[first - 1:last]))


@router.get("/documents/{doc_id:path}", response_model=DocumentOut)
def get_document(doc_id: str, request: Request, start_line: int | None = Query(default=None, ge=1),
                 end_line: int | None = Query(default=None, ge=1),
                 who: Principal = Depends(principal)) -> DocumentOut:
    """Full text of a document the caller may read; `start_line`/`end_line` cut a range."""
    return read_document(request.app.state.services.catalog, who, doc_id, start_line, end_line,
                         stale=request.app.state.stale_sources.current())


def _feedback_out(row: FeedbackRecord) -> FeedbackOut:
    return FeedbackOut(id=row.id, at=row.at.isoformat(), query_id=row.query_id, hit_id=row.hit_id, user=row.user,
                       useful=row.useful, comment=row.comment)


@router.post("/feedback", response_model=FeedbackOut, status_code=201)
def add_feedback(body: FeedbackIn, request: Request, who: Principal = Depends(principal)) -> FeedbackOut:
    """Useful / not useful on one hit of one of the caller's own queries (by `query_id`)."""
    row = request.app.state.audit.add_feedback(who, body.query_id, body.hit_id, body.useful, body.comment)
    return _feedback_out(row)


@router.get("/feedback", response_model=list[FeedbackOut])
def list_feedback(request: Request, limit: int = Query(default=100, ge=1, le=1000),
                  _: Principal = Depends(admin)) -> list[FeedbackOut]:
    return [_feedback_out(r) for r in request.app.state.audit.feedback(limit)]


def _audit_out(row: AuditEntry) -> AuditOut:
    return AuditOut(id=row.id, at=row.at.isoformat(), user=row.user, admin=row.admin, action=row.action,
                    target=row.target, scope=row.scope, result_count=row.result_count, query_id=row.query_id,
                    query_text=row.query_text)


@router.get("/audit", response_model=list[AuditOut])
def list_audit(request: Request, limit: int = Query(default=100, ge=1, le=1000),
               action: str | None = Query(default=None, max_length=64),
               _: Principal = Depends(admin)) -> list[AuditOut]:
    """Newest audit entries: searches (who, scope, result count) and admin actions."""
    return [_audit_out(r) for r in request.app.state.audit.entries(limit, action)]
