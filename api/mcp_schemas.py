"""The MCP tools' own result shapes (their outputSchema); search and read_file answer with the REST bodies."""
from __future__ import annotations

from pydantic import BaseModel


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


class SourceBrief(BaseModel):
    name: str
    kind: str
    state: str
    documents: int
    chunks: int
    last_success_at: str | None
