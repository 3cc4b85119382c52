"""Resolves the bearer token (or the web UI's session cookie) of a request to a Principal; admin routes
require an admin token."""
from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from indexer.models import Principal

SESSION_COOKIE = "cairn_session"  # HttpOnly, SameSite=Strict; set by api/web.py at sign-in
UI_HEADER = "x-cairn-ui"  # the page's JS sends it; a cross-site form cannot, so cookie writes need it
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cookie_token(request: Request) -> str:
    """The session cookie's token; a state-changing request must also carry the UI header (CSRF)."""
    if request.method not in SAFE_METHODS and request.headers.get(UI_HEADER) != "1":
        raise HTTPException(403, "cookie-authenticated writes need the X-Cairn-UI: 1 header")
    return request.cookies[SESSION_COOKIE]


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.cookies.get(SESSION_COOKIE):
        scheme, token = "bearer", _cookie_token(request)
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    found = request.app.state.tokens.resolve(token.strip())
    if found is None:
        raise HTTPException(401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return found


def admin(who: Principal = Depends(principal)) -> Principal:
    if not who.admin:
        raise HTTPException(403, "this route needs an admin token")
    return who
