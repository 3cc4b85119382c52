"""Self-service personal access tokens against a real OpenID provider (oidc-provider on loopback): people
signed in through the IdP create, use, list and revoke their own tokens; nobody else sees or revokes them
except admins; service tokens stay with `cairn tokens`."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from api_harness import ROLLOUT_PY, auth, index_document, serve, token
from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, free_socket, signed_in
from sqlalchemy import select

from api.app import create_app
from api.tokens import TokenStore
from indexer.catalog.schema import api_tokens
from indexer.models import Principal

UI = {"X-Cairn-UI": "1"}


@pytest.fixture(scope="module")
def site(corpus, tmp_path_factory) -> Iterator[tuple[str, LocalIdP]]:
    work = tmp_path_factory.mktemp("pat")
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    secret = work / "client-secret"
    secret.write_text(WEB_CLIENT_SECRET, encoding="utf-8")
    settings = corpus.settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_file": secret,
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0, "personal_token_max_days": 90})
    index_document(corpus, "idp-ops", "runbook.py", ROLLOUT_PY, ["idp:group:ops"])
    try:
        with serve(create_app(settings, services=corpus), sock) as url:
            yield url, idp
    finally:
        idp.stop()


def create(browser: httpx.Client, url: str, name: str, days: int = 30) -> httpx.Response:
    return browser.post(url + "/v1/me/tokens", json={"name": name, "expires_in_days": days}, headers=UI)


def search_sources(url: str, tok: str, query: str) -> set[str] | int:
    resp = httpx.post(url + "/v1/search", json={"query": query}, headers=auth(tok), timeout=60)
    return {h["source"] for h in resp.json()["hits"]} if resp.status_code == 200 else resp.status_code


def test_create_use_list_and_revoke_own_token(site, corpus):
    url, _idp = site
    alice = signed_in(url, "alice")
    # A cookie write without the page's header is refused (CSRF), and the lifetime is capped.
    assert alice.post(url + "/v1/me/tokens", json={"name": "x", "expires_in_days": 7}).status_code == 403
    too_long = create(alice, url, "forever", days=91)
    assert too_long.status_code == 400 and "CAIRN_PERSONAL_TOKEN_MAX_DAYS" in too_long.json()["detail"]
    assert create(alice, url, "   ").status_code == 422

    made = create(alice, url, "laptop VS Code", days=30)
    assert made.status_code == 201, made.text
    body = made.json()
    tok = body["token"]
    assert tok.startswith("cairn_") and body["state"] == "active" and body["name"] == "laptop VS Code"
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(days=29, hours=23) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)
    # Stored as its owner's, hashed, with no more than the owner holds.
    with corpus.catalog.engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == body["id"])).mappings().one()
    # (what it may read is its owner's as they are when each request arrives: indexer/identity)
    assert (row["subject"], row["user"], row["groups"], row["admin"]) == ("alice", "alice", [], True)
    assert tok not in str(dict(row))

    found = search_sources(url, tok, "retry with backoff")
    assert isinstance(found, set) and "eng" in found

    listed = alice.get(url + "/v1/me/tokens").json()
    assert [(t["id"], t["name"], t["state"]) for t in listed] == [(body["id"], "laptop VS Code", "active")]
    assert "token" not in listed[0]
    # The token itself lists its owner's tokens, but cannot mint more (a leaked one must not outlive itself).
    assert [t["id"] for t in httpx.get(url + "/v1/me/tokens", headers=auth(tok)).json()] == [body["id"]]
    assert httpx.post(url + "/v1/me/tokens", json={"name": "y", "expires_in_days": 7},
                      headers=auth(tok)).status_code == 403

    assert alice.delete(url + f"/v1/me/tokens/{body['id']}", headers=UI).status_code == 204
    assert search_sources(url, tok, "retry with backoff") == 401
    assert alice.get(url + "/v1/me/tokens").json()[0]["state"] == "revoked"
    assert alice.delete(url + f"/v1/me/tokens/{body['id']}", headers=UI).status_code == 404  # already revoked


def test_another_user_can_neither_see_nor_revoke_it_but_an_admin_can(site, corpus):
    url, _idp = site
    alice, bob = signed_in(url, "alice"), signed_in(url, "bob")
    mine = create(bob, url, "bob's agent").json()
    assert search_sources(url, mine["token"], "rollout canary") == {"idp-ops"}  # bob's IdP group ops
    theirs = create(alice, url, "alice's editor").json()

    assert theirs["id"] not in {t["id"] for t in bob.get(url + "/v1/me/tokens").json()}
    assert bob.delete(url + f"/v1/me/tokens/{theirs['id']}", headers=UI).status_code == 404
    assert bob.get(url + "/v1/tokens").status_code == 403  # the admin listing: bob is no admin
    assert bob.delete(url + f"/v1/tokens/{theirs['id']}", headers=UI).status_code == 403
    assert search_sources(url, theirs["token"], "retry with backoff") != 401  # still works

    everyone = {t["id"]: t for t in alice.get(url + "/v1/tokens").json()}  # alice is an admin (cairn-admins)
    assert everyone[mine["id"]]["subject"] == "bob" and everyone[mine["id"]]["kind"] == "personal"
    assert alice.delete(url + f"/v1/tokens/{mine['id']}", headers=UI).status_code == 204
    assert search_sources(url, mine["token"], "rollout canary") == 401
    assert bob.get(url + "/v1/me/tokens").json()[0]["state"] == "revoked"
    audit = [e for e in TokenStore(corpus.catalog.engine).list(subject="bob") if e.id == mine["id"]]
    assert audit[0].state() == "revoked"


def test_service_tokens_and_token_sessions_have_no_personal_tokens(site, corpus):
    url, _idp = site
    service = token(corpus, "ci-bot", ["eng"])
    assert httpx.get(url + "/v1/me/tokens", headers=auth(service)).status_code == 403
    # A web session opened with a service token is no person either.
    browser = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
    assert browser.post("/signin", data={"token": service, "next": "/"}, headers={"Origin": url}).status_code == 303
    assert browser.get("/v1/me/tokens").status_code == 403
    page = browser.get("/tokens")
    assert page.status_code == 200 and 'id="tokens-need-signin"' in page.text and 'id="new-token"' not in page.text
    # Admin revocation covers service tokens too.
    listed = {t["user"]: t for t in signed_in(url, "alice").get(url + "/v1/tokens").json()}
    assert listed["ci-bot"]["kind"] == "service" and listed["ci-bot"]["subject"] is None


def test_token_store_keeps_people_apart(corpus):
    store = TokenStore(corpus.catalog.engine)
    carol = Principal(user="carol", groups=frozenset({"eng"}))
    _tok, mine = store.create_personal("sub-carol", carol, "a", dt.timedelta(days=1))
    _tok, theirs = store.create_personal("sub-dave", Principal(user="dave"), "b", dt.timedelta(days=1))
    _svc, service = store.create("ci", ["eng"], name="ci")
    with pytest.raises(ValueError):
        store.create_personal("sub-carol", carol, "never", dt.timedelta(0))  # a personal token always expires
    assert (mine.subject, mine.user, mine.groups, mine.admin) == ("sub-carol", "carol", ("eng",), False)
    assert not store.revoke_own(theirs.id, "sub-carol") and not store.revoke_own(service.id, "sub-carol")
    assert [i.id for i in store.list(subject="sub-carol")] == [mine.id]
    assert store.revoke_all_of("sub-carol") == 1
    states = {i.id: i.state() for i in store.list()}
    assert (states[mine.id], states[theirs.id], states[service.id]) == ("revoked", "active", "active")
