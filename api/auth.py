"""Resolves the bearer token of a request to a Principal; admin routes require an admin token."""
from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from indexer.documents import Principal


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
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
