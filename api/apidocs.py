"""The API's own documentation, served offline and behind sign-in like every route but /healthz:
`/openapi.json` (the schema) and `/docs` (Swagger UI). Swagger UI's script and stylesheet come from the
`swagger-ui-bundle` package installed with Cairn (at /docs/assets, public: they hold no data), never from a
CDN, so the page works on a machine without internet. ReDoc is not served (it exists only on a CDN)."""
from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.auth import principal

ASSETS = "/docs/assets"
router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi_schema(request: Request) -> JSONResponse:
    principal(request)  # a token or the web UI's session; 401 otherwise
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger_ui(request: Request) -> Response:
    """Swagger UI for a signed-in browser (its requests carry the session cookie); a browser that is not
    signed in goes to the sign-in page and comes back."""
    try:
        principal(request)
    except HTTPException:
        if request.headers.get("authorization"):
            raise
        return RedirectResponse("/signin?next=%2Fdocs", status_code=303)
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Cairn API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css", swagger_favicon_url="data:,")


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.include_router(router)
