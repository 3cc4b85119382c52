"""Request and response bodies of the REST API (pydantic at the edge)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MAX_QUERY_CHARS = 20_000


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: int = Field(default=10, ge=1, le=100)
    sources: list[str] = Field(default_factory=list, max_length=100)
    path_prefix: str = Field(default="", max_length=1000)
    languages: list[str] = Field(default_factory=list, max_length=50)
    kinds: list[str] = Field(default_factory=list, max_length=10)


class HitOut(BaseModel):
    id: str
    document_id: str
    source: str
    path: str
    title: str
    url: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    snippet: str


class SearchResponse(BaseModel):
    query_id: str
    hits: list[HitOut]
    timings_ms: dict[str, float]


class SourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
    kind: Literal["git"] = "git"
    location: str = Field(min_length=1, max_length=2000)
    ref: str = Field(default="", max_length=255)
    access: list[str] = Field(default_factory=list, max_length=1000)


class SourceOut(BaseModel):
    name: str
    kind: str
    state: str
    location: str
    ref: str
    access: list[str] | None = None  # shown to admins only
    documents: int
    chunks: int
    last_success_at: str | None
    last_error: str | None


class ReindexIn(BaseModel):
    full: bool = False


class JobOut(BaseModel):
    id: str
    source: str
    kind: str
    state: str
    counts: dict
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
