"""REST routes: search, sources, reindex and jobs."""
from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, Depends, Request

from api.auth import admin, principal
from api.errors import Conflict, NotFound
from api.schemas import (HitOut, JobOut, ReindexIn, SearchRequest, SearchResponse, SourceIn, SourceOut)
from indexer.documents import Access, Principal
from retrieval.permissions import Scope

router = APIRouter(prefix="/v1")


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, request: Request, who: Principal = Depends(principal)) -> SearchResponse:
    scope = Scope(sources=tuple(body.sources), path_prefixes=(body.path_prefix,) if body.path_prefix else (),
                  languages=tuple(body.languages), kinds=tuple(body.kinds))
    result = request.app.state.searcher.search(body.query, who, scope, limit=body.limit)
    query_id = str(uuid.uuid4())
    request.app.state.audit.record(who, "search", scope=scope, result_ids=[h.chunk_id for h in result.hits],
                                   query_id=query_id, query_text=body.query)
    hits = [HitOut(id=h.chunk_id, document_id=h.doc_id, source=h.source, path=h.path, title=h.title, url=h.url,
                   start_line=h.start_line, end_line=h.end_line, symbol=h.symbol, kind=h.kind,
                   language=h.language, score=h.score, snippet=h.snippet) for h in result.hits]
    return SearchResponse(query_id=query_id, hits=hits,
                          timings_ms={k: round(v * 1000, 2) for k, v in result.timings.items()})


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _source_out(row, catalog, show_access: bool) -> SourceOut:
    counts = catalog.counts(row.name)
    return SourceOut(name=row.name, kind=row.kind, state=row.state, location=row.config.get("location", ""),
                     ref=row.config.get("ref") or "", access=list(row.access) if show_access else None,
                     documents=counts["documents"], chunks=counts["chunks"],
                     last_success_at=_iso(row.last_success_at), last_error=row.last_error)


@router.get("/sources", response_model=list[SourceOut])
def list_sources(request: Request, who: Principal = Depends(principal)) -> list[SourceOut]:
    """Sources the caller may read something in (admins: all, with their access lists)."""
    catalog = request.app.state.services.catalog
    mine = set(who.principals())
    rows = [r for r in catalog.list_sources() if who.admin or mine & set(r.access)]
    return [_source_out(r, catalog, who.admin) for r in rows]


@router.post("/sources", response_model=SourceOut, status_code=201)
def add_source(body: SourceIn, request: Request, who: Principal = Depends(admin)) -> SourceOut:
    catalog = request.app.state.services.catalog
    if catalog.get_source(body.name) is not None:
        raise Conflict(f"a source named {body.name!r} already exists")
    access = Access.of(*body.access)
    catalog.upsert_source(body.name, body.kind, {"location": body.location, "ref": body.ref},
                          sorted(access.principals))
    request.app.state.audit.record(who, "sources.add", target=body.name)
    return _source_out(catalog.get_source(body.name), catalog, True)


@router.post("/sources/{name:path}/reindex", response_model=JobOut, status_code=202)
def reindex(name: str, request: Request, body: ReindexIn | None = None, who: Principal = Depends(admin)) -> JobOut:
    catalog = request.app.state.services.catalog
    if catalog.get_source(name) is None:
        raise NotFound(f"no source named {name!r}")
    job_id = request.app.state.jobs.submit(name, full=bool(body and body.full))
    request.app.state.audit.record(who, "sources.reindex", target=name)
    return _job_out(catalog.get_job(job_id))


def _job_out(job) -> JobOut:
    return JobOut(id=job.id, source=job.source, kind=job.kind, state=job.state, counts=job.counts or {},
                  error=job.error, created_at=_iso(job.created_at), started_at=_iso(job.started_at),
                  finished_at=_iso(job.finished_at))


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, _: Principal = Depends(admin)) -> JobOut:
    job = request.app.state.services.catalog.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return _job_out(job)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(request: Request, _: Principal = Depends(admin)) -> list[JobOut]:
    return [_job_out(j) for j in request.app.state.services.catalog.list_jobs(limit=100)]
