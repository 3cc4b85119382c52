"""Facet counts: per source, kind and language, the chunks a caller may read that match the query,
counted by the real tantivy index under the same filter as the search."""
from __future__ import annotations

import pytest

from indexer.models import PUBLIC, Access, Chunk, Principal
from indexer.stores.fulltext import TantivyIndex
from retrieval.facets import facet_counts
from retrieval.permissions import Scope, build_filter


def chunk(n: int, content: str, acl: str, source: str, kind: str = "code", language: str = "python") -> Chunk:
    path = f"f{n}.txt"
    return Chunk(doc_id=f"{source}:{path}", source=source, path=path, ordinal=0, start_line=1, end_line=1,
                 content=content, symbol="", kind=kind, language=language, acl=tuple(Access.of(acl).acl()))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    ix = TantivyIndex(tmp_path_factory.mktemp("facets") / "ft")
    ix.upsert([chunk(1, "ledger balance", "group:eng", "eng"),
               chunk(2, "ledger entries", "group:eng", "eng", kind="doc", language="markdown"),
               chunk(3, "ledger rollout", "group:ops", "ops", kind="doc", language="rst"),
               chunk(4, "canary rollout", "group:ops", "ops"),
               chunk(5, "public ledger", PUBLIC, "pub", language="go")])
    ix.commit()
    yield ix
    ix.close()


ENG = Principal(user="alice", groups=frozenset({"eng"}))
OPS = Principal(user="bob", groups=frozenset({"ops"}))
ADMIN = Principal(user="root", admin=True)


@pytest.mark.parametrize(("who", "text", "scope", "expected"), [
    (ENG, "ledger", Scope(), {"source": [("eng", 2), ("pub", 1)], "kind": [("code", 2), ("doc", 1)],
                              "language": [("go", 1), ("markdown", 1), ("python", 1)]}),
    (OPS, "ledger", Scope(), {"source": [("ops", 1), ("pub", 1)], "kind": [("code", 1), ("doc", 1)],
                              "language": [("go", 1), ("rst", 1)]}),
    (ADMIN, "ledger", Scope(), {"source": [("eng", 2), ("ops", 1), ("pub", 1)], "kind": [("code", 2), ("doc", 2)],
                                "language": [("go", 1), ("markdown", 1), ("python", 1), ("rst", 1)]}),
    (ENG, None, Scope(), {"source": [("eng", 2), ("pub", 1)], "kind": [("code", 2), ("doc", 1)],
                          "language": [("go", 1), ("markdown", 1), ("python", 1)]}),
    # a facet is counted without its own restriction, under the others'
    (ENG, "ledger", Scope(kinds=("doc",)), {"source": [("eng", 1)], "kind": [("code", 2), ("doc", 1)],
                                            "language": [("markdown", 1)]}),
    (ENG, "ledger", Scope(sources=("ops",)), {"source": [("eng", 2), ("pub", 1)], "kind": [], "language": []}),
    (ENG, "rollout", Scope(), {"source": [], "kind": [], "language": []}),
])
def test_facets_count_only_what_the_caller_may_read(index, who, text, scope, expected):
    assert facet_counts(index, text, who, scope, stale=()) == expected


def test_a_stale_sources_restricted_chunks_are_not_counted(index):
    assert facet_counts(index, "ledger", ADMIN, Scope(), stale={"eng"})["source"] == [("ops", 1), ("pub", 1)]


def test_nobody_counts_nothing(index):
    assert facet_counts(index, "ledger", None, Scope(), stale=()) == {"source": [], "kind": [], "language": []}


def test_only_keyword_fields_are_facets(index):
    with pytest.raises(ValueError, match="not a facet field"):
        index.facet_counts(None, build_filter(ENG), "content")
