"""A merged item never shows lines of a chunk its caller may not read.

Hits are filtered per chunk inside both engines; merging nearby hits must not reach around that
filter. Here one line of a file (a chunk of its own) is readable by `group:finance` only, between two
chunks everyone in `group:eng` reads, one blank line on either side: eng gets two items without it,
finance one item with it, through the searcher, POST /v1/search, POST /v1/context and the MCP tool."""
from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.mcp_server import CairnTools
from api.tokens import TokenStore
from indexer.models import Access, Document, Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores import VectorPoint
from retrieval.permissions import Scope
from retrieval.searcher import build_searcher

TAX_PY = '''def tax_rate(order):
    """The tax rate of the order's country."""
    return order.country.tax_rate

FINANCE_ONLY_MARGIN = 0.42  # the margin on every invoice

def tax_total(order):
    """The tax of the order: its total times the tax rate."""
    return order.total * tax_rate(order)
'''
SECRET = "FINANCE_ONLY_MARGIN"
QUERY = "tax rate and tax total of an order"
ENG = Principal(user="dev", groups=frozenset({"eng"}))
FINANCE = Principal(user="cfo", groups=frozenset({"eng", "finance"}))


@pytest.fixture(scope="module")
def tax_index(tmp_path_factory, embedder):
    """billing/tax.py in three chunks (min_chunk_lines 1: the assignment is a chunk of its own), the
    middle one written again with a finance-only ACL into the catalog and both engines."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("merge-access") / "data", min_chunk_lines=1,
                        relevance_floor=0.0)
    svc = IndexServices.open(settings, embedder=embedder)
    svc.catalog.upsert_source("fin", "git", {"location": "https://git.example.com/fin.git"}, ["group:eng"])
    doc = Document(id="fin:billing/tax.py", source="fin", path="billing/tax.py", content=TAX_PY, version="1",
                   access=Access.of("group:eng"), language="python")
    svc.pipeline.apply_lexical([doc])
    svc.pipeline.embed_pending("fin")
    records = svc.catalog.get_chunks(svc.catalog.chunk_ids_for([doc.id])[doc.id])
    first, middle, last = sorted((r.to_chunk() for r in records.values()), key=lambda c: c.ordinal)
    assert [(c.start_line, c.end_line) for c in (first, middle, last)] == [(1, 3), (5, 5), (7, 9)]
    restricted = replace(middle, acl=tuple(Access.of("group:finance").acl()))
    svc.fulltext.delete("fin", [middle.id])
    svc.fulltext.upsert([restricted])
    svc.fulltext.commit()
    svc.vectors.delete([middle.id])
    svc.vectors.upsert([VectorPoint(restricted, svc.embedder.embed_documents([restricted.embed_text()])[0])])
    svc.catalog.replace_document(doc, [first, restricted, last])
    yield svc
    svc.close()


def spans(hits) -> list[tuple[int, int]]:
    return sorted((h.start_line, h.end_line) for h in hits)


def test_hits_around_an_unreadable_chunk_stay_apart_and_never_show_it(tax_index):
    searcher = build_searcher(tax_index)
    try:
        eng = searcher.search(QUERY, ENG, Scope(sources=("fin",)), limit=10).hits
        finance = searcher.search(QUERY, FINANCE, Scope(sources=("fin",)), limit=10).hits
    finally:
        searcher.close()
    assert spans(eng) == [(1, 3), (7, 9)]
    assert not any(SECRET in h.content or SECRET in h.snippet for h in eng)
    # The same hits for a reader of the middle chunk: one item, the file's own lines 1-9.
    assert spans(finance) == [(1, 9)] and len(finance[0].chunk_ids) == 3
    assert finance[0].content == TAX_PY.rstrip("\n")


def test_rest_context_and_mcp_never_show_an_unreadable_chunk(tax_index):
    tokens = TokenStore(tax_index.catalog.engine)
    eng, _ = tokens.create("dev", ["eng"])
    finance, _ = tokens.create("cfo", ["eng", "finance"])
    with TestClient(create_app(tax_index.settings, services=tax_index)) as client:
        def search(tok: str) -> dict:
            resp = client.post("/v1/search", json={"query": QUERY, "sources": ["fin"]},
                               headers={"Authorization": f"Bearer {tok}"})
            assert resp.status_code == 200, resp.text
            return resp.json()

        def context(tok: str) -> str:
            resp = client.post("/v1/context", json={"query": "", "fullInput": QUERY, "options": {"repos": ["fin"]}},
                               headers={"Authorization": f"Bearer {tok}"})
            assert resp.status_code == 200, resp.text
            return "\n".join(item["content"] for item in resp.json())

        hits = search(eng)["hits"]
        assert sorted((h["start_line"], h["end_line"]) for h in hits) == [(1, 3), (7, 9)]
        assert SECRET not in str(hits) and SECRET not in context(eng)
        tool = CairnTools(client.app).search(ENG, QUERY, 10, Scope(sources=("fin",)), None)
        assert SECRET not in str(tool.content) and SECRET not in str(tool.structured_content)
        assert "def tax_rate" in str(tool.content) and "def tax_total" in str(tool.content)
        [merged] = search(finance)["hits"]
        assert (merged["start_line"], merged["end_line"], len(merged["chunk_ids"])) == (1, 9, 3)
        assert SECRET in context(finance)
