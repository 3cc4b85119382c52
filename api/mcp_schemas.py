"""The MCP tools' own result shapes (their outputSchema); search and read_file answer with the REST bodies,
GET /v1/references with find_references' shape."""
from __future__ import annotations

from pydantic import BaseModel

from retrieval.references import Reference


class GrepLine(BaseModel):
    document_id: str
    source: str
    path: str
    line: int
    text: str


class GrepOut(BaseModel):
    matches: list[GrepLine]
    truncated: bool


class Definition(BaseModel):
    document_id: str
    source: str
    path: str
    symbol: str
    line: int
    start_line: int
    end_line: int
    language: str
    url: str


class ReferenceOut(BaseModel):
    """A definition (`definition` true, `symbol` the defined symbol) or a use (`symbol` the caller holding it)."""

    document_id: str
    source: str
    path: str
    line: int
    symbol: str
    definition: bool
    context: str
    language: str
    url: str


class ReferencesOut(BaseModel):
    references: list[ReferenceOut]
    truncated: bool


def reference_out(ref: Reference) -> ReferenceOut:
    return ReferenceOut(**{name: getattr(ref, name) for name in ReferenceOut.model_fields})


class SourceBrief(BaseModel):
    name: str
    kind: str
    state: str
    documents: int
    chunks: int
    last_success_at: str | None


class CommitOut(BaseModel):
    document_id: str
    source: str
    sha: str
    date: str
    author: str
    message: str
    url: str
    references: list[str]
    paths: list[str]
    hunks: str  # the diff of the asked path in this commit ("" for a text query)


class HistoryOut(BaseModel):
    commits: list[CommitOut]
    truncated: bool  # diff hunks were cut or left out to stay within max_tokens


class LinkedOut(BaseModel):
    kind: str
    document_id: str
    source: str
    path: str
    title: str
    url: str
    via: str


class RelatedOut(BaseModel):
    subject: str
    keys: list[str]  # the Jira keys and merge requests followed
    items: list[LinkedOut]
