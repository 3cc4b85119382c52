"""Self-service personal access tokens: a person signed in through the organization's IdP creates, lists and
revokes their own tokens for editors and agents (/v1/me/tokens, the web UI's Tokens page); admins list and
revoke anyone's (/v1/tokens). A personal token names its owner (`subject`) and never holds more than the
owner did when it was made; it always expires, at most CAIRN_PERSONAL_TOKEN_MAX_DAYS later."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, field_validator

from api.auth import SESSION_COOKIE, admin, principal
from api.errors import BadRequest, NotFound
from api.tokens import TOKEN_PREFIX, TokenInfo
from indexer.models import Principal

router = APIRouter(prefix="/v1")

EXPIRY_CHOICES = (7, 30, 90, 365)  # days offered on the Tokens page, capped by the configured maximum


def expiry_choices(max_days: int) -> list[int]:
    """The lifetimes the Tokens page offers: the usual ones under the maximum, and the maximum itself."""
    return sorted({d for d in EXPIRY_CHOICES if d < max_days} | {max_days})


@dataclass(frozen=True)
class Me:
    """The caller as a person: their IdP subject, principal now, and whether they signed in (an IdP session
    or an IdP access token) rather than presenting one of their personal tokens."""

    subject: str
    who: Principal
    signed_in: bool


def caller_subject(request: Request, who: Principal) -> tuple[str | None, bool]:
    """The person behind this (already authenticated) request and whether it is a sign-in: a web session
    opened through the IdP or an IdP access token is; a personal token (or a web session opened with one)
    names its owner but is not. Service tokens name nobody."""
    if not request.headers.get("authorization"):
        owner = request.app.state.sessions.owner(request.cookies.get(SESSION_COOKIE, ""))
        return (owner, True) if owner else (who.subject, False)
    token = request.headers["authorization"].partition(" ")[2].strip()
    return who.subject, not token.startswith(TOKEN_PREFIX)


def me(request: Request, who: Principal = Depends(principal)) -> Me:
    """The person calling (active: a deactivated one never gets this far), or 403 for callers who are
    not one (service tokens, web sessions opened with a service token)."""
    subject, signed_in = caller_subject(request, who)
    if not subject:
        raise HTTPException(403, "personal tokens belong to people signed in through the identity provider; "
                                 "service tokens are managed with `cairn tokens`")
    return Me(subject=subject, who=who, signed_in=signed_in)


class TokenIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=100, description="A label: which editor or agent uses it.")
    expires_in_days: int = Field(..., ge=1, description="Lifetime in days, at most CAIRN_PERSONAL_TOKEN_MAX_DAYS.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a token needs a name")
        return value.strip()


class TokenOut(BaseModel):
    id: str
    name: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    state: str  # active | expired | revoked


class AdminTokenOut(TokenOut):
    user: str
    subject: str | None  # the owner of a personal token; null for a service token
    kind: str  # personal | service
    groups: list[str]
    admin: bool


class CreatedTokenOut(TokenOut):
    token: str  # shown this once; only its hash is stored


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _out(info: TokenInfo) -> dict:
    return {"id": info.id, "name": info.name, "created_at": info.created_at.isoformat(),
            "expires_at": _iso(info.expires_at), "revoked_at": _iso(info.revoked_at), "state": info.state()}


def _newest_first(infos: list[TokenInfo]) -> list[TokenInfo]:
    return sorted(infos, key=lambda i: i.created_at, reverse=True)


@router.get("/me/tokens", response_model=list[TokenOut])
def my_tokens(request: Request, caller: Me = Depends(me)) -> list[dict]:
    """The caller's own personal tokens, newest first (never the tokens themselves)."""
    return [_out(i) for i in _newest_first(request.app.state.tokens.list(subject=caller.subject))]


@router.post("/me/tokens", response_model=CreatedTokenOut, status_code=201)
def create_my_token(body: TokenIn, request: Request, caller: Me = Depends(me)) -> dict:
    """A new personal token acting as the caller, shown once. Needs a sign-in: a personal token cannot make
    more tokens (a leaked one could otherwise outlive its own expiry)."""
    if not caller.signed_in:
        raise HTTPException(403, "sign in through the identity provider to create personal tokens")
    max_days = request.app.state.settings.personal_token_max_days
    if body.expires_in_days > max_days:
        raise BadRequest(f"a personal token lives at most {max_days} days (CAIRN_PERSONAL_TOKEN_MAX_DAYS)")
    token, info = request.app.state.tokens.create_personal(caller.subject, caller.who, body.name,
                                                           dt.timedelta(days=body.expires_in_days))
    request.app.state.audit.record(caller.who, "tokens.create", target=info.id)
    return {**_out(info), "token": token}


@router.delete("/me/tokens/{token_id}", status_code=204)
def revoke_my_token(token_id: str, request: Request, caller: Me = Depends(me)) -> Response:
    """Revoke one of the caller's tokens; someone else's, unknown or already revoked ones are 404 alike."""
    if not request.app.state.tokens.revoke_own(token_id, caller.subject):
        raise NotFound(f"no active token {token_id!r} of yours")
    request.app.state.audit.record(caller.who, "tokens.revoke", target=token_id)
    return Response(status_code=204)


@router.get("/tokens", response_model=list[AdminTokenOut])
def all_tokens(request: Request, subject: str | None = None, _: Principal = Depends(admin)) -> list[dict]:
    """Every token (personal and service), newest first; `?subject=` for one person's."""
    return [{**_out(i), "user": i.user, "subject": i.subject, "kind": "personal" if i.subject else "service",
             "groups": list(i.groups), "admin": i.admin}
            for i in _newest_first(request.app.state.tokens.list(subject=subject))]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, request: Request, who: Principal = Depends(admin)) -> Response:
    """An admin revokes anyone's token (personal or service)."""
    if not request.app.state.tokens.revoke(token_id):
        raise NotFound(f"no active token {token_id!r}")
    request.app.state.audit.record(who, "tokens.revoke", target=token_id)
    return Response(status_code=204)
