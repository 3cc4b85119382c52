"""Resolves the bearer token (or the web UI's session cookie) of a request to a Principal; admin routes
require an admin token.

A bearer token is either a Cairn API token (`cairn_…`) or, when an OpenID provider is configured, a JWT
access token that provider issued for Cairn's resource (api/oidc.py). The cookie holds only the id of a
server-side session (api/sessions.py). A person (a session, a JWT, a personal token) is resolved to
their principals as they are when the request arrives (indexer/identity); a deactivated person gets 401
whatever they present. Answers 401 with `WWW-Authenticate: Bearer`, naming the protected
resource metadata (RFC 9728) when OAuth is available, so MCP clients can find the IdP."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from api.oidc import MCP_PATH, Identity, OIDCError, public_base
from indexer.models import Principal

log = logging.getLogger(__name__)

SESSION_COOKIE = "cairn_session"  # a server-side session's id; HttpOnly, SameSite=Lax; set by api/web.py
UI_HEADER = "x-cairn-ui"  # the page's JS sends it; a cross-site form cannot, so cookie writes need it
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
METADATA_PATH = "/.well-known/oauth-protected-resource"


def resource_metadata_url(app: Any) -> str:
    """Where this server's protected resource metadata is (RFC 9728 §3.1: the well-known path with the
    resource's own path, /mcp, appended)."""
    return public_base(app.state.settings) + METADATA_PATH + MCP_PATH


def challenge(app: Any, error: str = "") -> str:
    """The WWW-Authenticate value of a 401: `Bearer`, plus resource_metadata when OAuth is configured
    (and error="invalid_token" for a token that was sent but refused, RFC 6750 §3.1)."""
    if getattr(app.state, "oidc", None) is None:
        return "Bearer"
    value = f'Bearer resource_metadata="{resource_metadata_url(app)}"'
    return value + (f', error="{error}"' if error else "")


def resolve_bearer(app: Any, token: str) -> tuple[Principal | None, str]:
    """The Principal of a bearer token and, when refused, why (short, no token material)."""
    token = token.strip()
    if not token:
        return None, "missing bearer token"
    provider = getattr(app.state, "oidc", None)
    if provider is not None and token.count(".") == 2 and not token.startswith("cairn_"):
        try:
            identity = provider.access_token_identity(token)
        except OIDCError as exc:
            log.info("refused a JWT access token: %s", exc)
            return None, f"invalid access token: {exc}"
        return _jwt_person(app, identity)
    found = app.state.tokens.resolve(token)
    if found is None:
        return None, "invalid, expired or revoked token, or its owner was deactivated"
    return found, ""


def _jwt_person(app: Any, identity: Identity) -> tuple[Principal | None, str]:
    """The person a valid JWT names, with its groups claim (or, without one, their last sign-in's). A
    person first seen this way (an MCP client signed them in at the IdP) is recorded as at a sign-in; a
    deactivated one stays refused."""
    groups = identity.groups if identity.groups_sent else None
    who = app.state.identity.person(identity.subject, groups)
    if who is None and app.state.identity.people.get(identity.subject) is None:
        app.state.sessions.register(identity)
        who = app.state.identity.person(identity.subject, groups)
    return (who, "") if who is not None else (None, "this user is deactivated")


def _cookie_session(request: Request) -> str:
    """The session cookie's id; a state-changing request must also carry the UI header (CSRF)."""
    if request.method not in SAFE_METHODS and request.headers.get(UI_HEADER) != "1":
        raise HTTPException(403, "cookie-authenticated writes need the X-Cairn-UI: 1 header")
    return request.cookies[SESSION_COOKIE]


def principal(request: Request) -> Principal:
    app = request.app
    header = request.headers.get("authorization", "")
    if not header and request.cookies.get(SESSION_COOKIE):
        found = app.state.sessions.resolve(_cookie_session(request))
        if found is None:
            raise HTTPException(401, "session ended or expired; sign in again",
                                headers={"WWW-Authenticate": challenge(app)})
        return found
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": challenge(app)})
    who, why = resolve_bearer(app, token)
    if who is None:
        raise HTTPException(401, why, headers={"WWW-Authenticate": challenge(app, "invalid_token")})
    return who


def admin(who: Principal = Depends(principal)) -> Principal:
    if not who.admin:
        raise HTTPException(403, "this route needs an admin token")
    return who


# -- OAuth 2.0 protected resource metadata (RFC 9728), as the MCP authorization spec asks --------------

metadata_router = APIRouter(tags=["auth"])


def _resource_metadata(request: Request) -> dict:
    provider = request.app.state.oidc
    if provider is None:
        raise HTTPException(404, "OAuth is not configured on this server (CAIRN_OIDC_ISSUER); use an API token")
    return {"resource": provider.resource, "authorization_servers": [provider.issuer],
            "bearer_methods_supported": ["header"], "scopes_supported": provider.scopes.split(),
            "resource_name": "Cairn"}


@metadata_router.get(METADATA_PATH)
def resource_metadata(request: Request) -> dict:
    """Cairn as an OAuth protected resource: its resource URI (for `resource` and `aud`) and the
    authorization server (the organization's IdP) that issues access tokens for it."""
    return _resource_metadata(request)


@metadata_router.get(METADATA_PATH + MCP_PATH)
def mcp_resource_metadata(request: Request) -> dict:
    """The same metadata at the path RFC 9728 derives from the resource URI (…/mcp)."""
    return _resource_metadata(request)
