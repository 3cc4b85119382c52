"""Web UI sign-in through a real OpenID provider (oidc-provider on loopback, tests/idp): the authorization
code + PKCE flow over real HTTP redirects, server-side sessions, sign-out, refused answers, key rotation."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from api_harness import ROLLOUT_PY, index_document, serve, token
from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, authorize, free_socket, new_key
from sqlalchemy import select

from api import oidc
from api.app import create_app
from api.oidc import OIDCError, Provider, pkce_pair
from indexer.catalog.schema import login_requests, sessions, users


@pytest.fixture(scope="module")
def site(corpus, tmp_path_factory) -> Iterator[tuple[object, str, LocalIdP]]:
    work = tmp_path_factory.mktemp("oidc")
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    secret = work / "client-secret"
    secret.write_text(WEB_CLIENT_SECRET + "\n", encoding="utf-8")
    settings = corpus.settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_file": secret,
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0})
    app = create_app(settings, services=corpus)
    # People who sign in through the IdP hold `idp:group:<g>`, never Cairn's own `group:<g>` (fail closed).
    index_document(corpus, "idp-ops", "runbook.py", ROLLOUT_PY, ["idp:group:ops"])
    try:
        with serve(app, sock) as url:
            yield app, url, idp
    finally:
        idp.stop()


def start(browser: httpx.Client, url: str, next_path: str = "/") -> str:
    """Cairn's sign-in button: returns the IdP authorization URL it redirects to."""
    resp = browser.get(url + "/signin/oidc", params={"next": next_path})
    assert resp.status_code == 303, resp.text[:300]
    assert "cairn_login" in resp.cookies
    return resp.headers["location"]


def sign_in(url: str, idp: LocalIdP, user: str, next_path: str = "/") -> tuple[httpx.Client, httpx.Response]:
    """A full sign-in in a fresh browser; returns the browser and Cairn's answer to the callback."""
    browser = httpx.Client(timeout=30, follow_redirects=False)
    callback = authorize(browser, start(browser, url, next_path), user, url + "/signin/callback")
    return browser, browser.get(callback)


def session_cookie(resp: httpx.Response) -> str:
    header = next(h for h in resp.headers.get_list("set-cookie") if h.startswith("cairn_session="))
    return header


def test_sign_in_opens_a_server_side_session_and_sign_out_ends_it(site, corpus):
    _app, url, idp = site
    browser, resp = sign_in(url, idp, "alice", "/?q=retry")
    assert resp.status_code == 303 and resp.headers["location"] == "/?q=retry"
    header = session_cookie(resp).lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "secure" not in header  # the public URL is http here
    cookie = browser.cookies["cairn_session"]
    # The cookie is a random id: no API token, no JWT, nothing the IdP issued; the catalog keeps its hash.
    assert not cookie.startswith("cairn_") and cookie.count(".") < 2 and len(cookie) >= 40
    with corpus.catalog.engine.connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id_hash == hashlib.sha256(cookie.encode()).hexdigest())
                           ).mappings().one()
        user = conn.execute(select(users).where(users.c.subject == "alice")).mappings().one()
        assert conn.execute(select(login_requests)).first() is None  # the sign-in under way was used up
    assert (row["kind"], row["user"], sorted(row["groups"]), row["admin"]) == ("oidc", "alice",
                                                                              ["cairn-admins", "eng"], True)
    assert (user["email"], user["email_verified"]) == ("alice@example.com", True)
    assert cookie not in str(dict(row)) and cookie not in str(dict(user))

    page = browser.get(url + "/")
    assert page.status_code == 200 and ">alice<" in page.text
    assert browser.get(url + "/admin").status_code == 200  # admin through the IdP group
    assert {s["name"] for s in browser.get(url + "/v1/sources").json()} == {"eng", "ops", "web", "idp-ops"}  # all

    out = browser.post(url + "/signout", headers={"Origin": url})
    assert out.status_code == 303
    end = urlsplit(out.headers["location"])  # the IdP's end_session_endpoint, coming back to /signin
    assert f"{end.scheme}://{end.netloc}" == idp.issuer
    assert parse_qs(end.query)["post_logout_redirect_uri"] == [url + "/signin"]
    # Ended server-side: the old cookie, replayed by anyone, opens nothing.
    replay = httpx.Client(base_url=url, cookies={"cairn_session": cookie}, timeout=30)
    assert replay.get("/v1/sources").status_code == 401
    assert replay.get("/", follow_redirects=False).headers["location"].startswith("/signin")
    with corpus.catalog.engine.connect() as conn:
        assert conn.execute(select(sessions).where(sessions.c.id_hash == row["id_hash"])).first() is None


def test_groups_come_from_the_idp_and_only_admin_groups_make_admins(site):
    """bob's IdP group ops is `idp:group:ops`: the source shared with it, not the one shared with Cairn's
    own `group:ops` (an IdP group that happens to share a name grants nothing)."""
    _app, url, idp = site
    browser, resp = sign_in(url, idp, "bob")
    assert resp.status_code == 303
    assert browser.get(url + "/admin").status_code == 403
    assert {s["name"] for s in browser.get(url + "/v1/sources").json()} == {"idp-ops"}
    hits = browser.post(url + "/ui/search", json={"query": "rollout canary"}, headers={"X-Cairn-UI": "1"}).json()
    assert hits["hits"] and {h["source"] for h in hits["hits"]} == {"idp-ops"}


def test_a_state_that_does_not_match_is_refused(site):
    _app, url, _idp = site
    browser = httpx.Client(timeout=30, follow_redirects=False)
    callback = authorize(browser, start(browser, url), "alice", url + "/signin/callback")
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = browser.get(f"{url}/signin/callback?{urlencode({**query, 'state': 'forged'})}")
    assert forged.status_code == 400 and "state" in forged.text
    assert "cairn_session" not in browser.cookies
    # The sign-in under way was used up by the refused answer: the genuine one cannot be replayed now.
    assert browser.get(callback).status_code == 400
    assert "cairn_session" not in browser.cookies


def test_an_answer_in_another_browser_or_an_idp_error_is_refused(site):
    _app, url, _idp = site
    browser = httpx.Client(timeout=30, follow_redirects=False)
    callback = authorize(browser, start(browser, url), "alice", url + "/signin/callback")
    other = httpx.Client(timeout=30, follow_redirects=False)  # login CSRF: the victim never started this
    refused = other.get(callback)
    assert refused.status_code == 400 and "cairn_session" not in other.cookies
    state = parse_qs(urlsplit(start(browser, url)).query)["state"][0]
    denied = browser.get(url + "/signin/callback", params={"error": "access_denied", "state": state})
    assert denied.status_code == 401 and "access_denied" in denied.text
    assert "cairn_session" not in browser.cookies


def _code(idp: LocalIdP, provider: Provider, state: str, nonce: str, challenge: str) -> str:
    browser = httpx.Client(timeout=30, follow_redirects=False)
    callback = authorize(browser, provider.authorization_url(state, nonce, challenge), "alice",
                         provider.redirect_uri)
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == [state]
    return query["code"][0]


def test_nonce_and_pkce_verifier_mismatches_are_refused(site):
    app, _url, idp = site
    provider = Provider(app.state.settings)
    verifier, challenge = pkce_pair()
    code = _code(idp, provider, "s1", "the-nonce", challenge)
    with pytest.raises(OIDCError, match="nonce"):
        provider.sign_in(code, verifier, "another-nonce")
    code = _code(idp, provider, "s2", "the-nonce", challenge)
    with pytest.raises(OIDCError, match="refused the authorization code"):
        provider.sign_in(code, pkce_pair()[0], "the-nonce")  # the IdP checks the verifier (PKCE)
    code = _code(idp, provider, "s3", "the-nonce", challenge)
    assert provider.sign_in(code, verifier, "the-nonce").username == "alice"  # the same, all matching


def test_id_tokens_are_checked_before_anyone_is_signed_in(site):
    app, _url, idp = site
    provider = Provider(app.state.settings)
    now = int(time.time())
    good = {"iss": idp.issuer, "aud": WEB_CLIENT_ID, "sub": "alice", "iat": now, "exp": now + 300, "nonce": "n"}
    assert provider.id_token_claims(idp.sign(good), "n")["sub"] == "alice"
    bad = {
        "issuer": {**good, "iss": "http://127.0.0.1:1"},
        "audience": {**good, "aud": "another-client"},
        "expired": {**good, "iat": now - 900, "exp": now - 600},  # past the 60 s of clock skew
        "no nonce": {k: v for k, v in good.items() if k != "nonce"},
        "azp": {**good, "aud": [WEB_CLIENT_ID, "other"], "azp": "other"},
    }
    for name, claims in bad.items():
        try:
            provider.id_token_claims(idp.sign(claims), "n")
        except OIDCError:
            continue
        pytest.fail(f"an ID token with {name} was accepted")
    skewed = {**good, "iat": now + 30, "exp": now - 30}  # within the skew on both sides
    assert provider.id_token_claims(idp.sign(skewed), "n")["sub"] == "alice"


def test_signing_keys_rotate(site, monkeypatch):
    """A sign-in whose ID token is signed with a key Cairn has not seen makes it read the keys again;
    the retired key is refused once it is gone from the provider's JWKS."""
    app, url, idp = site
    assert sign_in(url, idp, "alice")[1].status_code == 303  # the first key is cached now
    old = idp.keys[0]
    idp.restart([new_key()])
    time.sleep(max(0.0, app.state.oidc.jwks.fetched_at + oidc.JWKS_MIN_REFETCH - time.monotonic()) + 0.2)
    browser, resp = sign_in(url, idp, "bob")
    assert resp.status_code == 303 and browser.get(url + "/v1/sources").status_code == 200
    assert set(app.state.oidc.jwks.keys) == {idp.keys[0]["kid"]}
    now = int(time.time())
    retired = idp.sign({"iss": idp.issuer, "aud": WEB_CLIENT_ID, "sub": "alice", "iat": now, "exp": now + 60,
                        "nonce": "n"}, key=old)
    with pytest.raises(OIDCError, match="does not publish"):
        app.state.oidc.id_token_claims(retired, "n")


def test_token_sign_in_keeps_working_without_the_token_in_the_cookie(site, corpus):
    _app, url, _idp = site
    tok = token(corpus, user="svc", groups=["eng"])
    browser = httpx.Client(timeout=30, follow_redirects=False)
    page = browser.get(url + "/signin")
    assert 'id="signin-oidc"' in page.text and 'id="token"' in page.text
    resp = browser.post(url + "/signin", data={"token": tok, "next": "/"}, headers={"Origin": url})
    assert resp.status_code == 303
    cookie = browser.cookies["cairn_session"]
    assert tok not in cookie and not cookie.startswith("cairn_")
    assert browser.get(url + "/v1/sources").status_code == 200
    out = browser.post(url + "/signout", headers={"Origin": url})
    assert out.headers["location"] == "/signin"  # a token session has nothing to end at the IdP
    assert httpx.get(url + "/v1/sources", cookies={"cairn_session": cookie}).status_code == 401


def test_a_session_opened_with_a_token_ends_when_the_token_is_revoked(site, corpus):
    app, url, _idp = site
    tok = token(corpus, user="svc2", groups=["eng"])
    browser = httpx.Client(timeout=30, follow_redirects=False)
    browser.post(url + "/signin", data={"token": tok, "next": "/"}, headers={"Origin": url})
    assert browser.get(url + "/v1/sources").status_code == 200
    token_id = app.state.tokens.resolve_with_id(tok)[0]
    assert app.state.tokens.revoke(token_id)
    assert browser.get(url + "/v1/sources").status_code == 401

