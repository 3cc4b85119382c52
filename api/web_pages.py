"""What every web UI page shares: its templates, the signed-in viewer, the security headers and the
redirect to sign-in."""
from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.auth import SESSION_COOKIE
from indexer.models import Principal

HERE = Path(__file__).parent

# Our pages run only our own script and style, and may not be framed (clickjacking).
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                           "form-action 'self'; base-uri 'none'",
                "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"}


@functools.cache
def templates() -> Jinja2Templates:
    return Jinja2Templates(directory=HERE / "templates")


def viewer(request: Request) -> Principal | None:
    """The signed-in principal of a page request (its session cookie only), or None (kept on the
    request for its log line, as `remember_principal` does for the API)."""
    who = request.app.state.sessions.resolve(request.cookies.get(SESSION_COOKIE, ""))
    request.state.principal = who
    return who


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _headers(request: Request) -> dict[str, str]:
    """PAGE_HEADERS; with an OpenID provider, sign-out's form may also land on its logout page."""
    provider = request.app.state.oidc
    if provider is None:
        return PAGE_HEADERS
    policy = PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {_origin(provider.issuer)}")
    return {**PAGE_HEADERS, "Content-Security-Policy": policy}


def page(request: Request, name: str, who: Principal | None, status: int = 200, **context) -> HTMLResponse:
    context.setdefault("oidc", request.app.state.oidc is not None)
    return templates().TemplateResponse(request, name, {"who": who, **context}, status_code=status,
                                        headers=_headers(request))


def to_signin(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(here, safe='')}", status_code=303)


def not_found(request: Request, who: Principal | None, what: str) -> HTMLResponse:
    """The page for anything missing or not readable by the caller (the two look the same)."""
    return page(request, "error.html", who, 404, title="Not found", message=f"No {what}.")
