"""The REST API in-process: auth everywhere it should be, search under permissions, sources and jobs."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import TokenStore
from workers.jobs import run_sync_job


@pytest.fixture
def indexed(services, make_repo):
    eng, ops = make_repo("eng"), make_repo("ops")
    eng.write("billing/invoice.py", "def render_invoice(order):\n    return f'invoice {order.id}'\n")
    ops.write("deploy/rollout.py", "def rollout_canary(service):\n    return 'canary invoice rollout'\n")
    eng.commit(), ops.commit()
    for name, repo, access in (("eng", eng, ["group:eng"]), ("ops", ops, ["group:ops"])):
        services.catalog.upsert_source(name, "git", {"location": str(repo.root), "ref": ""}, access)
        run_sync_job(services, name)
    return services


@pytest.fixture
def client(settings, indexed):
    with TestClient(create_app(settings, services=indexed)) as c:
        yield c


def token(services, user="u", groups=(), admin=False, **kw):
    return TokenStore(services.catalog.engine).create(user, list(groups), admin=admin, **kw)[0]


def auth(tok):
    return {"Authorization": f"Bearer {tok}"}


def test_health_needs_no_token_everything_else_does(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/v1/search", json={"query": "x"}).status_code == 401
    assert client.get("/v1/sources").status_code == 401
    assert client.get("/v1/sources", headers=auth("cairn_not-a-real-token")).status_code == 401


@pytest.mark.parametrize("query, abstained", [("render_invoice", False), ("write me a haiku about autumn", True),
                                               ("null", True)])
def test_search_says_when_it_abstained(client, indexed, query, abstained):
    eng = auth(token(indexed, groups=["eng"]))
    body = client.post("/v1/search", json={"query": query}, headers=eng).json()
    assert body["abstained"] is abstained and bool(body["hits"]) is not abstained


def test_search_returns_only_the_callers_sources(client, indexed):
    eng = token(indexed, groups=["eng"])
    body = client.post("/v1/search", json={"query": "invoice", "limit": 20}, headers=auth(eng)).json()
    assert body["query_id"] and {h["source"] for h in body["hits"]} == {"eng"}
    hit = body["hits"][0]
    assert hit["path"] == "billing/invoice.py" and hit["start_line"] == 1 and "render_invoice" in hit["snippet"]
    both = token(indexed, groups=["eng", "ops"])
    body = client.post("/v1/search", json={"query": "invoice", "limit": 20}, headers=auth(both)).json()
    assert {h["source"] for h in body["hits"]} == {"eng", "ops"}
    nobody = token(indexed, user="stranger")
    assert client.post("/v1/search", json={"query": "invoice"}, headers=auth(nobody)).json()["hits"] == []


def test_sources_listing_is_filtered_and_admin_sees_access(client, indexed):
    rows = client.get("/v1/sources", headers=auth(token(indexed, groups=["ops"]))).json()
    assert [(r["name"], r["access"]) for r in rows] == [("ops", None)]
    rows = client.get("/v1/sources", headers=auth(token(indexed, admin=True))).json()
    assert {r["name"]: r["access"] for r in rows} == {"eng": ["group:eng"], "ops": ["group:ops"]}
    assert all(r["documents"] == 1 and r["chunks"] >= 1 for r in rows)


def test_revoked_and_expired_tokens_fail(client, indexed):
    store = TokenStore(indexed.catalog.engine)
    tok, info = store.create("u", ["eng"])
    assert client.get("/v1/sources", headers=auth(tok)).status_code == 200
    store.revoke(info.id)
    assert client.get("/v1/sources", headers=auth(tok)).status_code == 401
    expired, _ = store.create("u", ["eng"], expires_in=dt.timedelta(seconds=-1))
    assert client.get("/v1/sources", headers=auth(expired)).status_code == 401


def test_tokens_are_stored_hashed(indexed):
    tok, _ = TokenStore(indexed.catalog.engine).create("u", [])
    with indexed.catalog.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("select * from api_tokens"))
    assert tok not in dump and tok[len("cairn_"):] not in dump


@pytest.mark.parametrize("payload", [{}, {"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "limit": 1000},
                                     {"query": "x", "kinds": ["spaceship"]}, {"query": "x", "path_prefix": "../etc"},
                                     {"query": "x" * 20001}])
def test_bad_search_payloads_get_4xx_with_a_message(client, indexed, payload):
    resp = client.post("/v1/search", json=payload, headers=auth(token(indexed, groups=["eng"])))
    assert 400 <= resp.status_code < 500 and resp.json()["detail"]


def test_admin_routes_need_admin(client, indexed, make_repo):
    user = auth(token(indexed, groups=["eng"]))
    assert client.post("/v1/sources/eng/reindex", headers=user).status_code == 403
    assert client.post("/v1/sources", json={"name": "x", "location": "/tmp"}, headers=user).status_code == 403


def test_admin_adds_a_source_and_watches_its_job_finish(client, indexed, make_repo):
    repo = make_repo("new")
    repo.write("queue/worker.py", "def drain_queue(q):\n    return [item for item in q]\n")
    repo.commit()
    admin = auth(token(indexed, admin=True))
    created = client.post("/v1/sources", json={"name": "new", "location": str(repo.root), "access": ["group:eng"]},
                          headers=admin)
    assert created.status_code == 201 and created.json()["access"] == ["group:eng"]
    assert client.post("/v1/sources", json={"name": "new", "location": str(repo.root)}, headers=admin).status_code == 409
    job = client.post("/v1/sources/new/reindex", json={}, headers=admin).json()
    deadline = time.monotonic() + 120
    while job["state"] not in ("succeeded", "partial", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}", headers=admin).json()
    assert job["state"] == "succeeded" and job["counts"]["files_changed"] == 1
    hits = client.post("/v1/search", json={"query": "drain_queue", "sources": ["new"]},
                       headers=auth(token(indexed, groups=["eng"]))).json()["hits"]
    assert hits[0]["path"] == "queue/worker.py"
    assert client.post("/v1/sources/missing/reindex", json={}, headers=admin).status_code == 404


def _v1_routes(app) -> list[tuple[str, str]]:
    """(method, path with every parameter filled) of each /v1 route the app serves."""
    out = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/v1/"):
            filled = "/".join("x" if part.startswith("{") else part for part in path.split("/"))
            out += [(method.upper(), filled) for method in sorted(operations)]
    return out


def test_every_error_has_the_documented_shape(client, indexed):
    """401, 403 and 404 answer {"error", "detail"} like every other error (docs/api.md), on every /v1 route."""
    routes = _v1_routes(client.app)
    assert len(routes) > 15
    user = auth(token(indexed, groups=["eng"]))
    for method, path in routes:
        if path == "/v1/context":  # Continue's route answers a refusal as an item (test_continue.py)
            continue
        resp = client.request(method, path)
        assert resp.status_code == 401, (method, path)
        assert resp.json()["error"] == "Unauthorized" and resp.json()["detail"], (method, path)
        if not path.startswith("/v1/webhooks/"):  # webhooks authenticate by the source's secret
            assert resp.headers.get("www-authenticate", "").startswith("Bearer"), (method, path)
        resp = client.request(method, path, headers=user, json={})
        if resp.status_code >= 400:
            body = resp.json()
            assert set(body) == {"error", "detail"} and body["error"] and body["detail"], (method, path, body)
    assert client.post("/v1/sources/eng/reindex", headers=user).json()["error"] == "Forbidden"
    assert client.get("/v1/no-such-route", headers=user).json() == {"error": "NotFound", "detail": "Not Found"}


def test_api_docs_need_a_token_and_load_nothing_from_the_internet(client, indexed):
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs", follow_redirects=False).headers["location"] == "/signin?next=%2Fdocs"
    user = auth(token(indexed, groups=["eng"]))
    assert "/v1/search" in client.get("/openapi.json", headers=user).json()["paths"]
    page = client.get("/docs", headers=user).text
    assert "/docs/assets/swagger-ui-bundle.js" in page and "http://" not in page and "https://" not in page
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize("language", ["python", "Python", "PY", ".py", " python3 "])
def test_language_filters_are_case_insensitive_with_aliases(client, indexed, language):
    body = {"query": "invoice", "limit": 20, "languages": [language]}
    hits = client.post("/v1/search", json=body, headers=auth(token(indexed, groups=["eng"]))).json()["hits"]
    assert [h["path"] for h in hits] == ["billing/invoice.py"]
    body["languages"] = ["golang"]
    assert client.post("/v1/search", json=body, headers=auth(token(indexed, groups=["eng"]))).json()["hits"] == []
