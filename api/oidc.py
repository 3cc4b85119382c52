"""The organization's OpenID provider as Cairn sees it: discovery, signing keys (JWKS, refetched when a
token names a key not seen yet), the authorization-code + PKCE exchange, and the validation of ID tokens
and of JWT access tokens issued for Cairn's resource. Signatures are checked by PyJWT (with
`cryptography`); only asymmetric algorithms are accepted, never `none` nor an HMAC.

Who a token names is an Identity here (subject, names, the groups claim); the Principal a request acts
as is resolved from it when the request arrives (indexer/identity: linked accounts, synced memberships,
the IdP's groups as `idp:group:<g>`)."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt

from indexer.settings import Settings

log = logging.getLogger(__name__)

# Asymmetric signatures only: `none` and HMAC (which would let a public key act as a shared secret) never.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
JWKS_MAX_AGE = 3600.0  # keys are read again at least this often (a retired key stops being accepted)
JWKS_MIN_REFETCH = 5.0  # an unknown `kid` refetches the keys at most this often (no refetch storms)
HTTP_TIMEOUT = 10.0
MCP_PATH = "/mcp"


class OIDCError(Exception):
    """A sign-in or token the provider's rules refuse, or a provider Cairn cannot use; a short message."""


def public_base(settings: Settings) -> str:
    """The URL users and clients reach Cairn at, without a trailing slash."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def resource_uri(settings: Settings) -> str:
    """Cairn's OAuth resource identifier (RFC 8707): its MCP endpoint's URL. JWT access tokens must be
    issued for it (`aud`), whether they are sent to /mcp or to the REST API."""
    return public_base(settings) + MCP_PATH


def client_secret(settings: Settings) -> str | None:
    """The client secret from its file or environment variable (never from the configuration itself);
    None for a public client."""
    if settings.oidc_client_secret_file is not None:
        try:
            secret = settings.oidc_client_secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise OIDCError(f"cannot read CAIRN_OIDC_CLIENT_SECRET_FILE: {exc.strerror}") from exc
        if not secret:
            raise OIDCError("CAIRN_OIDC_CLIENT_SECRET_FILE is empty")
        return secret
    if settings.oidc_client_secret_env:
        secret = os.environ.get(settings.oidc_client_secret_env, "").strip()
        if not secret:
            raise OIDCError(f"environment variable {settings.oidc_client_secret_env} (CAIRN_OIDC_CLIENT_SECRET_ENV) "
                            "is unset or empty")
        return secret
    return None


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


class JWKS:
    """The provider's signing keys by `kid`, cached; a token naming an unknown key refetches them (key
    rotation), at most every JWKS_MIN_REFETCH seconds."""

    def __init__(self, uri: str, http: httpx.Client) -> None:
        self.uri = uri
        self.http = http
        self.keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}  # kid -> key and the alg it declares
        self.fetched_at = 0.0
        self.lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            resp = self.http.get(self.uri)
            resp.raise_for_status()
            found = resp.json().get("keys", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise OIDCError(f"cannot read the identity provider's signing keys: {type(exc).__name__}") from exc
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for data in found:
            if data.get("use", "sig") != "sig" or data.get("kty") not in ("RSA", "EC", "OKP"):
                continue
            try:
                keys[str(data.get("kid", ""))] = (jwt.PyJWK(data), data.get("alg"))
            except jwt.PyJWTError:
                log.warning("ignoring a signing key the identity provider published that cannot be used")
        self.keys = keys
        self.fetched_at = time.monotonic()

    def key(self, kid: str) -> tuple[jwt.PyJWK, str | None]:
        with self.lock:
            age = time.monotonic() - self.fetched_at
            if not self.fetched_at or age > JWKS_MAX_AGE or (kid not in self.keys and age > JWKS_MIN_REFETCH):
                self._fetch()
            found = self.keys.get(kid)
        if found is None:
            raise OIDCError("token signed with a key the identity provider does not publish")
        return found


@dataclass(frozen=True)
class Identity:
    """Who a validated token or sign-in names."""

    subject: str
    username: str
    email: str
    email_verified: bool
    groups: tuple[str, ...]
    admin: bool
    groups_sent: bool = True  # False: the token had no groups claim (the last sign-in's groups apply)


class Provider:
    """One OpenID provider (from Settings): discovered lazily, then cached."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        if not settings.oidc_client_id:
            raise OIDCError("CAIRN_OIDC_ISSUER is set but CAIRN_OIDC_CLIENT_ID is not")
        self.issuer = settings.oidc_issuer  # compared as a string, exactly (OIDC Discovery 4.3)
        self.client_id = settings.oidc_client_id
        self.secret = client_secret(settings)
        self.scopes = settings.oidc_scopes
        self.groups_claim = settings.oidc_groups_claim
        self.admin_groups = frozenset(settings.admin_groups)
        self.leeway = settings.oidc_clock_skew_seconds
        self.resource = resource_uri(settings)
        self.redirect_uri = public_base(settings) + "/signin/callback"
        self.http = http or httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._metadata: dict[str, Any] | None = None
        self._jwks: JWKS | None = None
        self.lock = threading.Lock()

    # -- discovery

    def metadata(self) -> dict[str, Any]:
        with self.lock:
            if self._metadata is None:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    resp = self.http.get(url)
                    resp.raise_for_status()
                    found = resp.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise OIDCError(f"cannot read the identity provider's discovery document: "
                                    f"{type(exc).__name__}") from exc
                if found.get("issuer") != self.issuer:
                    raise OIDCError(f"the discovery document names issuer {found.get('issuer')!r}, "
                                    f"not CAIRN_OIDC_ISSUER {self.issuer!r}")
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not found.get(field):
                        raise OIDCError(f"the identity provider's discovery document has no {field}")
                self._metadata = found
                self._jwks = JWKS(found["jwks_uri"], self.http)
            return self._metadata

    @property
    def jwks(self) -> JWKS:
        self.metadata()
        assert self._jwks is not None
        return self._jwks

    # -- the authorization-code flow

    def authorization_url(self, state: str, nonce: str, challenge: str) -> str:
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": self.scopes, "state": state, "nonce": nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        return f"{self.metadata()['authorization_endpoint']}?{urlencode(params)}"

    def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code (client authenticated if confidential)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier, "client_id": self.client_id}
        headers = {"Accept": "application/json"}
        if self.secret is not None:  # client_secret_basic (RFC 6749 2.3.1: both parts form-encoded first)
            pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            resp = self.http.post(self.metadata()["token_endpoint"], data=data, headers=headers)
        except httpx.HTTPError as exc:
            raise OIDCError(f"cannot reach the identity provider's token endpoint: {type(exc).__name__}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", f"HTTP {resp.status_code}") if isinstance(body, dict) else resp.status_code
            raise OIDCError(f"the identity provider refused the authorization code ({error})")
        if not body.get("id_token"):
            raise OIDCError("the identity provider returned no ID token (is `openid` among CAIRN_OIDC_SCOPES?)")
        return body

    def userinfo(self, access_token: str) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not endpoint or not access_token:
            return {}
        try:
            resp = self.http.get(endpoint, headers={"Authorization": f"Bearer {access_token}",
                                                    "Accept": "application/json"})
            if resp.status_code != 200:
                raise OIDCError(f"the identity provider's userinfo endpoint answered HTTP {resp.status_code}")
            found = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OIDCError(f"cannot read the identity provider's userinfo: {type(exc).__name__}") from exc
        return found if isinstance(found, dict) else {}

    def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider, if it offers it (discovery's end_session_endpoint)."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except OIDCError:
            return None
        if not endpoint:
            return None
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    # -- tokens

    def decode(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a JWT this provider signed for `audience`, or OIDCError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OIDCError("not a JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OIDCError(f"token algorithm {alg!r} is not accepted")
        key, declared = self.jwks.key(str(header.get("kid", "")))
        if declared and declared != alg:
            raise OIDCError("token algorithm does not match its key")
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=self.issuer,
                              leeway=self.leeway, options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise OIDCError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise OIDCError("token not issued for this audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise OIDCError("token from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise OIDCError("token signature invalid") from exc
        except jwt.PyJWTError as exc:
            raise OIDCError(f"token invalid: {exc}") from exc

    def id_token_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Validates an ID token (OIDC Core 3.1.3.7): signature, iss, aud (and azp), exp, iat, nonce."""
        claims = self.decode(id_token, self.client_id)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OIDCError("ID token issued to another party (azp)")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
            raise OIDCError("ID token nonce does not match this sign-in")
        return claims

    def access_token_identity(self, token: str) -> Identity:
        """A JWT access token the provider issued for Cairn's resource (RFC 9068), as an Identity."""
        return self.identity(self.decode(token, self.resource))

    def identity(self, claims: dict[str, Any]) -> Identity:
        verified_email = claims.get("email") if claims.get("email_verified") is True else None
        username = claims.get("preferred_username") or verified_email  # an unverified email names nobody
        if not isinstance(username, str) or not username.strip():
            raise OIDCError("the identity provider sent neither preferred_username nor a verified email for "
                            "this user")
        raw = claims.get(self.groups_claim)
        groups = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        names = tuple(sorted({g.strip() for g in groups if isinstance(g, str) and g.strip()}))
        email = claims.get("email") if isinstance(claims.get("email"), str) else ""
        return Identity(subject=str(claims["sub"]), username=username.strip(), email=email or "",
                        email_verified=claims.get("email_verified") is True, groups=names,
                        admin=bool(self.admin_groups & set(names)), groups_sent=self.groups_claim in claims)

    def sign_in(self, code: str, verifier: str, nonce: str) -> Identity:
        """The end of a sign-in: the code exchanged, the ID token validated, userinfo merged in."""
        tokens = self.exchange(code, verifier)
        claims = self.id_token_claims(tokens["id_token"], nonce)
        info = self.userinfo(tokens.get("access_token", ""))
        if info and info.get("sub") != claims["sub"]:
            raise OIDCError("userinfo names another subject than the ID token")
        return self.identity({**info, **{k: v for k, v in claims.items() if v not in (None, "", [])}})


def provider_from(settings: Settings) -> Provider | None:
    """The configured provider, or None when CAIRN_OIDC_ISSUER is empty."""
    return Provider(settings) if settings.oidc_issuer else None
