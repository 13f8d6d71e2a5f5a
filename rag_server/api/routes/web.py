"""GET /: the web page for people (ask, browse domains and documents, give feedback).

Plain HTML, CSS and JavaScript from `rag_server/api/web`, no build step; the page calls the same API as
everyone else (relative URLs, so it works behind a proxy's root path) and loads nothing from another host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rag_server.errors import NotFound

router = APIRouter()

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# The only files served under /static: a fixed list, so no path from the URL ever reaches the file system.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# Scripts and styles from this server only, none inline; no frames. `no-cache`: a new version shows at once.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The page."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The page's script or style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no asset named {name!r}")
    return FileResponse(WEB_DIR / name, media_type=media_type, headers=HEADERS)
