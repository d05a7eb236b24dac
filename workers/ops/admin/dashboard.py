"""The operator's web page: static HTML, JS and CSS that call the admin JSON API in the browser.

The page itself holds no data, so it needs no token; it asks the operator for one and sends it
as a bearer token with every API call. Its URLs are relative, so the admin app can be mounted
under a prefix (`/admin/`). Nothing is fetched from anywhere but the admin app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from workers.ops.admin.state import admin_state

STATIC = Path(__file__).with_name("static")

# Only these files are served: a fixed list, so no request can name another path.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

# The page runs only its own script and talks only to its own origin; the token it holds must
# not leak through a framing page, an injected script or a Referer header.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/dashboard-auth")
async def dashboard_auth(request: Request) -> JSONResponse:
    """Whether the page must ask for a token: asking the API without one would be a refused
    login in the audit trail at every page load."""
    return JSONResponse({"token": bool(admin_state(request).tokens)}, headers=HEADERS)


@router.get("/static/{name}")
async def dashboard_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no dashboard asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)
