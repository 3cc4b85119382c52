"""GET /v1/documents/{id} under the caller's ACL, and feedback on one's own search results."""
from __future__ import annotations

import pytest
from api_harness import RETRY_PY, auth, token
from fastapi.testclient import TestClient

from api.app import create_app
from indexer.models import ADMINS, Access, Document


@pytest.fixture(scope="module")
def client(corpus):
    with TestClient(create_app(corpus.settings, services=corpus)) as c:
        yield c


def test_a_reader_gets_the_full_text(client, corpus):
    resp = client.get("/v1/documents/eng:pkg/retry.py", headers=auth(token(corpus, groups=["eng"])))
    assert resp.status_code == 200
    doc = resp.json()
    assert (doc["source"], doc["path"], doc["language"], doc["kind"]) == ("eng", "pkg/retry.py", "python", "code")
    assert doc["content"] == RETRY_PY and (doc["start_line"], doc["end_line"], doc["total_lines"]) == (1, 23, 23)


def test_a_line_range(client, corpus):
    doc = client.get("/v1/documents/eng:pkg/retry.py", params={"start_line": 6, "end_line": 7},
                     headers=auth(token(corpus, groups=["eng"]))).json()
    assert doc["content"] == RETRY_PY.split("\n")[5] + "\n" + RETRY_PY.split("\n")[6]
    assert (doc["start_line"], doc["end_line"]) == (6, 7)


def test_unreadable_and_missing_documents_look_the_same(client, corpus):
    ops = auth(token(corpus, groups=["ops"]))
    hidden = client.get("/v1/documents/eng:pkg/retry.py", headers=ops)
    missing = client.get("/v1/documents/eng:pkg/nothing.py", headers=ops)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == missing.json()["error"] == "NotFound"
    stranger = auth(token(corpus, user="stranger"))
    assert client.get("/v1/documents/web:payments/refund.py", headers=stranger).status_code == 404
    assert client.get("/v1/documents/eng:pkg/retry.py").status_code == 401
    admin = auth(token(corpus, admin=True))
    assert client.get("/v1/documents/ops:deploy/rollout.py", headers=admin).status_code == 200


@pytest.mark.parametrize("params", [{"start_line": 500}, {"start_line": 5, "end_line": 2}, {"start_line": 0}])
def test_impossible_ranges_are_4xx(client, corpus, params):
    resp = client.get("/v1/documents/eng:pkg/retry.py", params=params, headers=auth(token(corpus, groups=["eng"])))
    assert 400 <= resp.status_code < 500 and resp.json()["detail"]


def test_document_acl_without_chunks_follows_the_source_or_fails_closed(services):
    services.catalog.upsert_source("s", "git", {"location": "/nowhere"}, ["group:a"])
    empty = Document(id="s:empty.py", source="s", path="empty.py", content="", version="1",
                     access=Access.of("group:a"))
    other = Document(id="s:other.py", source="s", path="other.py", content="", version="1",
                     access=Access.of("group:b"))
    services.catalog.replace_documents([(empty, [], None), (other, [], None)])
    assert services.catalog.document_acl("s:empty.py") == ("group:a", ADMINS)
    assert services.catalog.document_acl("s:other.py") == (ADMINS,)
    assert services.catalog.document_acl("s:absent.py") is None


def test_feedback_on_ones_own_query(client, corpus):
    alice = auth(token(corpus, user="alice", groups=["eng"]))
    found = client.post("/v1/search", json={"query": "backoff delay"}, headers=alice).json()
    hit = found["hits"][0]["id"]
    resp = client.post("/v1/feedback", json={"query_id": found["query_id"], "hit_id": hit, "useful": True,
                                             "comment": "exactly the function I needed"}, headers=alice)
    assert resp.status_code == 201 and resp.json()["user"] == "alice" and resp.json()["useful"] is True
    admin = auth(token(corpus, admin=True))
    listed = client.get("/v1/feedback", headers=admin).json()
    assert any(f["id"] == resp.json()["id"] and f["hit_id"] == hit for f in listed)
    assert client.get("/v1/feedback", headers=alice).status_code == 403


def test_feedback_on_someone_elses_query_or_an_unreturned_hit_is_refused(client, corpus):
    alice = auth(token(corpus, user="alice", groups=["eng"]))
    found = client.post("/v1/search", json={"query": "render_invoice"}, headers=alice).json()
    mallory = auth(token(corpus, user="mallory", groups=["eng"]))
    theirs = client.post("/v1/feedback", json={"query_id": found["query_id"], "hit_id": found["hits"][0]["id"],
                                               "useful": False}, headers=mallory)
    unreturned = client.post("/v1/feedback", json={"query_id": found["query_id"], "hit_id": "not-a-hit",
                                                   "useful": False}, headers=alice)
    unknown = client.post("/v1/feedback", json={"query_id": "no-such-query", "hit_id": "x", "useful": True},
                          headers=alice)
    assert theirs.status_code == unreturned.status_code == unknown.status_code == 404
    assert "of yours" in theirs.json()["detail"] and "did not return" in unreturned.json()["detail"]
