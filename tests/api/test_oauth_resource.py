"""Cairn as an OAuth 2.1 protected resource (MCP authorization, RFC 9728): its metadata, the challenge on
401, and the IdP's JWT access tokens — refused unless signed by the IdP for Cairn's resource and current,
accepted on /mcp and the REST API as the same user as a web session. End to end: the MCP SDK's own OAuth
client discovers the IdP from Cairn, registers, signs in (authorization code + PKCE + resource indicator)
at the real local IdP and calls the tools with the JWT it got."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import jwt
import pytest
from api_harness import ROLLOUT_PY, auth, index_document, serve, token
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, authorize, free_socket, new_key
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from api.app import create_app

HELLO = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def site(corpus, tmp_path_factory, monkeypatch_module) -> Iterator[tuple[object, str, LocalIdP]]:
    work = tmp_path_factory.mktemp("oauth")
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    monkeypatch_module.setenv("CAIRN_TEST_OIDC_SECRET", WEB_CLIENT_SECRET)
    settings = corpus.settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_env": "CAIRN_TEST_OIDC_SECRET",
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0})
    app = create_app(settings, services=corpus)
    index_document(corpus, "idp-ops", "runbook.py", ROLLOUT_PY, ["idp:group:ops"])
    try:
        with serve(app, sock) as url:
            yield app, url, idp
    finally:
        idp.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def claims(idp: LocalIdP, **changes) -> dict:
    now = int(time.time())
    return {"iss": idp.issuer, "aud": idp.resource, "sub": "bob", "iat": now, "exp": now + 300,
            "preferred_username": "bob", "email": "bob@example.com", "groups": ["ops"], "client_id": "x",
            "scope": "openid", **changes}


def rest(url: str, bearer: str) -> httpx.Response:
    return httpx.get(url + "/v1/sources", headers=auth(bearer), timeout=30)


def mcp(url: str, bearer: str | None) -> httpx.Response:
    headers = {**MCP_HEADERS, **(auth(bearer) if bearer else {})}
    return httpx.post(url + "/mcp", json=HELLO, headers=headers, timeout=30)


def test_protected_resource_metadata_names_the_idp_and_cairns_resource(site):
    _app, url, idp = site
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        meta = httpx.get(url + path, timeout=30).json()
        assert meta["resource"] == url + "/mcp" and meta["authorization_servers"] == [idp.issuer]
        assert meta["bearer_methods_supported"] == ["header"]
        assert set(meta["scopes_supported"]) == {"openid", "email", "profile", "groups"}


def test_without_an_idp_there_is_no_metadata_and_a_plain_challenge(corpus):
    with serve(create_app(corpus.settings, services=corpus)) as url:
        assert httpx.get(url + "/.well-known/oauth-protected-resource", timeout=30).status_code == 404
        assert mcp(url, None).headers["www-authenticate"] == "Bearer"


def test_401_answers_name_the_resource_metadata(site):
    _app, url, _idp = site
    expected = f'Bearer resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"'
    for answer in (mcp(url, None), httpx.get(url + "/v1/sources", timeout=30)):
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == expected
    for answer in (mcp(url, "cairn_forged"), rest(url, "cairn_forged")):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == expected + ', error="invalid_token"'


def _part(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(payload: dict) -> str:
    return f"{_part({'alg': 'none', 'typ': 'at+jwt'})}.{_part(payload)}."


def _hmac_with_public_key(idp: LocalIdP, payload: dict) -> str:
    """The algorithm-confusion attack: HS256 keyed with the IdP's public key, which anyone can fetch."""
    public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(idp.keys[0])).public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_part({'alg': 'HS256', 'kid': idp.keys[0]['kid']})}.{_part(payload)}"
    return f"{signing_input}.{_part(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


def test_jwt_access_tokens_are_refused_unless_issued_for_cairn_by_the_idp(site):
    _app, url, idp = site
    other_key = {**new_key(), "kid": idp.keys[0]["kid"]}  # same kid, not the IdP's key
    forged = {
        "wrong issuer": idp.sign(claims(idp, iss="http://127.0.0.1:1")),
        "wrong audience": idp.sign(claims(idp, aud=WEB_CLIENT_ID)),  # e.g. an ID token for the web client
        "another resource": idp.sign(claims(idp, aud="https://other.example/mcp")),
        "expired": idp.sign(claims(idp, iat=int(time.time()) - 900, exp=int(time.time()) - 600)),
        "bad signature": idp.sign(claims(idp), key=other_key),
        "alg none": _unsigned(claims(idp)),
        "hmac with the public key": _hmac_with_public_key(idp, claims(idp)),
        "unknown key": idp.sign(claims(idp), key=new_key()),
        "no subject": idp.sign({k: v for k, v in claims(idp).items() if k != "sub"}),
    }
    for name, bearer in forged.items():
        for answer in (rest(url, bearer), mcp(url, bearer)):
            assert answer.status_code == 401, name
            assert 'error="invalid_token"' in answer.headers["www-authenticate"], name
    good = idp.sign(claims(idp))  # the same claims, properly signed: accepted, as bob (idp:group:ops)
    assert {s["name"] for s in rest(url, good).json()} == {"idp-ops"}
    assert mcp(url, good).status_code == 200


def test_personal_api_tokens_keep_working(site, corpus):
    _app, url, _idp = site
    tok = token(corpus, user="svc", groups=["eng"])
    assert rest(url, tok).status_code == 200 and mcp(url, tok).status_code == 200


class Memory:
    """The MCP SDK's TokenStorage, in memory; keeps what the flow stored for the test to inspect."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def test_an_mcp_sdk_client_signs_in_at_the_idp_and_calls_cairn_with_its_jwt(site):
    app, url, idp = site
    redirect_uri = "http://127.0.0.1:9/callback"  # never contacted: the "browser" stops there
    storage = Memory()
    sent_to: list[str] = []
    answer: dict[str, str] = {}
    browser = httpx.Client(timeout=30, follow_redirects=False)

    async def redirect_handler(authorization_url: str) -> None:
        sent_to.append(authorization_url)  # what a real client opens in the user's browser
        callback = await asyncio.to_thread(authorize, browser, authorization_url, "alice", redirect_uri)
        answer.update({k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()})

    async def callback_handler():
        from mcp.client.auth import AuthorizationCodeResult
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

    oauth = OAuthClientProvider(
        server_url=url + "/mcp",
        client_metadata=OAuthClientMetadata(client_name="cairn test agent", redirect_uris=[redirect_uri],
                                            grant_types=["authorization_code"], response_types=["code"]),
        storage=storage, redirect_handler=redirect_handler, callback_handler=callback_handler)

    async def main():
        async with (httpx2.AsyncClient(auth=oauth, timeout=60) as http,
                    streamable_http_client(url + "/mcp", http_client=http) as (read, write),
                    ClientSession(read, write) as s):
            await s.initialize()
            tools = await s.list_tools()
            found = await s.call_tool("search", {"query": "retry with backoff"})
            return {t.name for t in tools.tools}, found

    tools, found = asyncio.run(main())
    assert "search" in tools and not found.is_error
    # The flow asked the IdP for a token for Cairn's resource (RFC 8707), with PKCE, and got a JWT bound to it.
    asked = parse_qs(urlsplit(sent_to[0]).query)
    assert asked["resource"] == [url + "/mcp"] and asked["code_challenge_method"] == ["S256"]
    assert storage.client is not None and storage.client.client_id  # registered itself (RFC 7591)
    access = storage.tokens.access_token
    seen = jwt.decode(access, options={"verify_signature": False})
    assert seen["aud"] == url + "/mcp" and seen["iss"] == idp.issuer and seen["sub"] == "alice"
    hits = found.structured_content["hits"]
    assert hits and {h["source"] for h in hits} <= {"eng", "web", "ops", "idp-ops"}
    # The same user as her web session: alice, an admin through her IdP group, sees every source.
    assert {s["name"] for s in rest(url, access).json()} == {"eng", "ops", "web", "idp-ops"}
    assert app.state.oidc.access_token_identity(access).subject == "alice"
    # Her first request with the JWT recorded her as a sign-in would (she never opened the web UI).
    assert app.state.identity.people.get("alice").email == "alice@example.com"


def test_an_unverified_email_never_names_a_user(tmp_path, monkeypatch):
    """An email the IdP did not verify names nobody (preferred_username still does): accounts are linked by
    verified email, so an unverified one must never stand for a person."""
    from api.oidc import OIDCError, Provider
    from indexer.settings import Settings

    monkeypatch.setenv("IDP_TEST_SECRET", "s3cret-for-the-test")
    provider = Provider(Settings(data_dir=tmp_path, oidc_issuer="https://idp.example", oidc_client_id="cairn",
                                 oidc_client_secret_env="IDP_TEST_SECRET"))
    claims = {"sub": "42", "email": "alice@example.com"}
    with pytest.raises(OIDCError, match="verified email"):
        provider.identity(claims | {"email_verified": False})
    with pytest.raises(OIDCError, match="verified email"):
        provider.identity(claims)
    assert provider.identity(claims | {"email_verified": True}).username == "alice@example.com"
    assert provider.identity(claims | {"preferred_username": "al"}).username == "al"
