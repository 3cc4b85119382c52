"""Every error a client can cause, mapped to an HTTP status and a clear message in one place."""
from __future__ import annotations

import http
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.audit import FeedbackError
from connectors.base import ConnectorError
from indexer.identity.people import AmbiguousUser, UnknownUser
from indexer.identity.store import LinkConflict
from indexer.models import AccessError
from indexer.stores import StoreError
from retrieval.grep import PatternError
from retrieval.permissions import ScopeError
from retrieval.query_analysis import QueryError

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """A resource that does not exist or that the caller may not see (indistinguishable on purpose)."""


class BadRequest(ValueError):
    """A well-formed request that cannot be honoured (an empty line range, an unsafe regex)."""


class Conflict(RuntimeError):
    """The request conflicts with current state (e.g. a source that already exists)."""


STATUS: dict[type[Exception], int] = {
    QueryError: 400, ScopeError: 400, AccessError: 400, ConnectorError: 400, BadRequest: 400, PatternError: 400,
    NotFound: 404, FeedbackError: 404, Conflict: 409, StoreError: 503,
    UnknownUser: 404, AmbiguousUser: 400, LinkConflict: 409,
}


def error_name(status: int) -> str:
    """`Unauthorized`, `Forbidden`, `NotFound`... : the status's reason phrase as one word."""
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    async def known(_request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in STATUS.items() if isinstance(exc, cls))
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        # 401/403/404 raised by routes and dependencies (and Starlette's own 404/405) in the same shape
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": error_name(exc.status_code), "detail": exc.detail},
                            status_code=exc.status_code, headers=exc.headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette types every handler as taking Exception; this one is installed for validation errors only
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
        return JSONResponse({"error": "ValidationError", "detail": problems}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # called by the server's error middleware, not inside an except block: pass the error explicitly
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "InternalError", "detail": "internal error; see the server log"},
                            status_code=500)

    for cls in STATUS:
        app.add_exception_handler(cls, known)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
