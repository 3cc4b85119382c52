"""Facet counts for a search page: per source, kind and language, how many chunks the caller may read
match the query, counted by the full-text engine under the same permission filter as the search."""
from __future__ import annotations

import dataclasses
from collections.abc import Collection

from indexer.models import Principal
from indexer.stores import FullTextIndex
from retrieval.permissions import Scope, build_filter, searched
from retrieval.query_analysis import analyse

FACETS = ("source", "kind", "language")
_SCOPE_FIELD = {"source": "sources", "kind": "kinds", "language": "languages"}


def facet_counts(fulltext: FullTextIndex, text: str | None, principal: Principal | None, scope: Scope,
                 stale: Collection[str]) -> dict[str, list[tuple[str, int]]]:
    """Per facet, (value, chunks) pairs, most chunks first. `text` None counts every readable chunk.

    Each facet is counted under the scope without its own restriction (the others apply), so picking a
    language still offers the other languages with their counts. The kind facet counts every kind (so
    `commit` is offered); the others count what the search covers (`searched`: no commits unless asked)."""
    query = analyse(text).lexical if text else None
    out: dict[str, list[tuple[str, int]]] = {}
    for field in FACETS:
        own = dataclasses.replace(scope, **{_SCOPE_FIELD[field]: ()})
        own = own if field == "kind" else searched(own)
        counts = fulltext.facet_counts(query, build_filter(principal, own, stale), field)
        out[field] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return out
