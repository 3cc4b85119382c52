"""The web UI: sign-in (through the organization's OpenID provider, or with an API token) into a server-side
session whose id is the only thing the cookie holds, the search page, document view and admin console."""
from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api import web_documents, web_search
from api.auth import SESSION_COOKIE, admin
from api.oidc import OIDCError, pkce_pair, public_base
from api.personal_tokens import expiry_choices
from api.web_pages import HERE, page, to_signin, viewer
from indexer.generations.state import generation_status, generation_summary
from indexer.models import Principal
from indexer.pipeline import Freshness, freshness
from indexer.secrets.redaction_log import RedactionLog
from workers.maintenance import intervals

log = logging.getLogger(__name__)

LISTED = 20  # failures, skips and jobs shown per admin table

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Mount the UI's static files and pages on the app."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.include_router(web_search.router)
    app.include_router(web_documents.router)


def _safe_next(target: str) -> str:
    """Only same-site paths: never `//host` or `/\\host`, which browsers treat as another origin."""
    ok = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if ok else "/"


def _same_origin(request: Request) -> bool:
    """Form posts (sign-in, sign-out) must come from our own pages (login CSRF)."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc == host  # netloc only: a TLS proxy changes the scheme


# -- sign-in -------------------------------------------------------------------------------------


LOGIN_COOKIE = "cairn_login"  # the id of an OIDC sign-in under way (api/sessions.py), for /signin only


def _secure(request: Request) -> bool:
    """Cookies are Secure when Cairn is reached over https (its public URL or this request)."""
    return public_base(request.app.state.settings).startswith("https:") or request.url.scheme == "https"


def _set_session(request: Request, response: Response, session_id: str) -> None:
    # Lax, not Strict: the browser comes back from the IdP by a cross-site redirect, and the pages it is
    # sent on to must see the session. Cookie-authenticated writes also need the UI header (api/auth.py).
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", secure=_secure(request),
                        path="/", max_age=request.app.state.settings.session_max_age_seconds)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "signin.html", viewer(request), next=_safe_next(next), error="")


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Sign-in with an API token: the session remembers the token's id, never the token."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    if not _same_origin(request):
        return page(request, "error.html", None, 403, title="Forbidden", message="Sign in from Cairn's own page.")
    found = request.app.state.tokens.resolve_with_id(token)
    if found is None:
        return page(request, "signin.html", None, 401, next=target, error="That token is invalid, expired or revoked.")
    response = RedirectResponse(target, status_code=303)
    _set_session(request, response, request.app.state.sessions.open_token(*found))
    return response


@router.get("/signin/oidc")
def signin_oidc(request: Request, next: str = "/") -> Response:
    """Starts a sign-in at the OpenID provider (authorization code + PKCE, with state and nonce)."""
    provider = request.app.state.oidc
    if provider is None:
        return page(request, "error.html", None, 404, title="Not found", message="No identity provider is configured.")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, code_challenge = pkce_pair()
    try:
        target = provider.authorization_url(state, nonce, code_challenge)
    except OIDCError as exc:
        log.warning("OIDC sign-in cannot start: %s", exc)
        return page(request, "error.html", None, 502, title="Identity provider unavailable", message=str(exc))
    login_id = request.app.state.sessions.begin_login(state, nonce, verifier, _safe_next(next))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(LOGIN_COOKIE, login_id, httponly=True, samesite="lax", secure=_secure(request),
                        path="/signin", max_age=600)
    return response


@router.get("/signin/callback")
def signin_callback(request: Request, code: str = "", state: str = "", error: str = "",
                    error_description: str = "") -> Response:
    """The OpenID provider's answer: checked against the sign-in this browser started, then a session."""
    def refuse(message: str, status: int = 401) -> HTMLResponse:
        answer = page(request, "signin.html", None, status, next="/", error=message)
        answer.delete_cookie(LOGIN_COOKIE, path="/signin", httponly=True, samesite="lax", secure=_secure(request))
        return answer

    provider = request.app.state.oidc
    if provider is None:
        return page(request, "error.html", None, 404, title="Not found", message="No identity provider is configured.")
    pending = request.app.state.sessions.take_login(request.cookies.get(LOGIN_COOKIE, ""))
    if pending is None:
        return refuse("This sign-in was not started here or has expired; sign in again.", 400)
    if not state or not secrets.compare_digest(state.encode(), pending["state"].encode()):
        return refuse("The identity provider's answer does not match this sign-in (state); sign in again.", 400)
    if error or not code:
        return refuse(f"The identity provider refused the sign-in: {error or 'no code'}"
                      + (f" ({error_description[:200]})" if error_description else ""))
    try:
        who = provider.sign_in(code, pending["code_verifier"], pending["nonce"])
    except OIDCError as exc:
        log.warning("OIDC sign-in refused: %s", exc)
        return refuse(f"Sign-in failed: {exc}")
    session_id = request.app.state.sessions.open_oidc(who)
    if session_id is None:
        return refuse("This account is deactivated in Cairn; ask an administrator.", 403)
    response = RedirectResponse(pending["next_path"], status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/signin", httponly=True, samesite="lax", secure=_secure(request))
    _set_session(request, response, session_id)
    log.info("signed in through the identity provider: %s", who.username)
    return response


@router.post("/signout")
def signout(request: Request) -> Response:
    """Ends the session server-side; a session from the IdP also signs out there, if it offers that."""
    if not _same_origin(request):
        return page(request, "error.html", None, 403, title="Forbidden", message="Sign out from Cairn's own page.")
    kind = request.app.state.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    provider = request.app.state.oidc
    end = None
    if kind == "oidc" and provider is not None:
        end = provider.end_session_url(public_base(request.app.state.settings) + "/signin")
    response = RedirectResponse(end or "/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response


# -- personal access tokens ----------------------------------------------------------------------


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request) -> Response:
    """The Tokens page: a person signed in through the IdP makes, lists and revokes their own tokens (the
    page's script calls /v1/me/tokens); admins also see and revoke everyone's."""
    who = viewer(request)
    if who is None:
        return to_signin(request)
    settings = request.app.state.settings
    personal = request.app.state.sessions.owner(request.cookies.get(SESSION_COOKIE, "")) is not None
    return page(request, "tokens.html", who, personal=personal, base=public_base(settings),
                 choices=expiry_choices(settings.personal_token_max_days),
                 max_days=settings.personal_token_max_days)


# -- admin console -------------------------------------------------------------------------------


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> Response:
    who = viewer(request)
    if who is None:
        return to_signin(request)
    if not who.admin:
        return page(request, "error.html", who, 403, title="Forbidden", message="The admin console needs an admin token.")
    return page(request, "admin.html", who)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _eta_seconds(job) -> float | None:
    """Remaining time of a running job at its rate so far (None without a total or progress)."""
    if job.state != "running" or not job.started_at or not job.total or not job.done:
        return None
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=dt.UTC)
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return round(elapsed / job.done * max(0, job.total - job.done), 1)


def _duration_seconds(job) -> float | None:
    """How long the job ran (so far, while it runs); None before it started."""
    if not job.started_at:
        return None
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=dt.UTC)
    ended = job.finished_at or dt.datetime.now(dt.UTC)
    ended = ended if ended.tzinfo else ended.replace(tzinfo=dt.UTC)
    return round(max(0.0, (ended - started).total_seconds()), 1)


def _job(job) -> dict:
    return {"id": job.id, "source": job.source, "kind": job.kind, "state": job.state, "counts": job.counts or {},
            "duration_seconds": _duration_seconds(job), "error": job.error, "done": job.done, "total": job.total,
            "eta_seconds": _eta_seconds(job),
            "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at)}


def _source(row, catalog, fresh: Freshness | None = None) -> dict:
    failures = catalog.list_failures(row.name)
    skipped = catalog.list_skipped(row.name)
    return {"name": row.name, "kind": row.kind, "state": row.state, "access": list(row.access),
            "ref": row.config.get("ref") or "", "interval_seconds": intervals(catalog).get(row.name),
            "last_success_at": _iso(row.last_success_at), "last_error": row.last_error or "",
            **catalog.counts(row.name),
            "recent_failures": [{"item": f.item, "error": f.error, "attempts": f.attempts,
                                 "last_seen_at": _iso(f.last_seen_at)} for f in failures[:LISTED]],
            "recent_skips": [{"path": s.path, "reason": str(getattr(s.reason, "value", s.reason)),
                              "detail": s.detail} for s in skipped[:LISTED]],
            "redactions": RedactionLog(catalog.engine).summary(row.name).as_dict(),
            "permissions": fresh.as_dict() if fresh is not None and fresh.tracked else None}


def _size_bytes(root: Path) -> int:
    """Bytes on disk under `root` (allocated blocks: the vector store preallocates sparse files)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:  # a file replaced while we walk
                continue
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def _hit_label(chunk) -> str:
    return f"{chunk.source}: {chunk.path} L{chunk.start_line}–{chunk.end_line}" if chunk else ""


@router.get("/ui/admin/state")
def admin_state(request: Request, _: Principal = Depends(admin)) -> dict:
    """Everything the admin console shows, in one poll."""
    services = request.app.state.services
    catalog = services.catalog
    stats = {**catalog.counts(), "index_version": catalog.get_meta("index_version"),
             "embedding_model": catalog.get_meta("embedding_model"),
             "generation": generation_summary(generation_status(catalog.engine)),
             "size_bytes": _size_bytes(Path(services.settings.data_dir))}
    rows = request.app.state.audit.feedback(50)
    hits = catalog.get_chunks({f.hit_id for f in rows})  # chunks since deleted show their id only
    feedback = [{"at": f.at.isoformat(), "user": f.user, "query_id": f.query_id, "hit_id": f.hit_id,
                 "hit": _hit_label(hits.get(f.hit_id)) or f.hit_id, "useful": f.useful, "comment": f.comment}
                for f in rows]
    fresh = freshness(catalog, services.settings.permission_max_staleness)
    return {"stats": stats, "sources": [_source(r, catalog, fresh.get(r.name)) for r in catalog.list_sources()],
            "jobs": [_job(j) for j in catalog.list_jobs(limit=LISTED)], "feedback": feedback}
