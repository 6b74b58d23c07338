"""The browser pages (``bridge/web/``: index, play) served on the HTTP service.

Everything a page needs ships in that folder (hls.js included), so the pages work offline.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).parent / "web"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def register_pages(app: web.Application) -> None:
    """``/`` is the index; every other top-level page by its name; ``/vendor/`` the shipped
    libraries. Only files that exist in the folder are routed: no path reaches outside."""
    if not WEB_DIR.is_dir():
        return
    app.router.add_get("/", _index)
    for path in sorted(WEB_DIR.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            app.router.add_get(f"/{path.name}", _file_handler(path))
    vendor = WEB_DIR / "vendor"
    if vendor.is_dir():
        app.router.add_static("/vendor/", vendor, follow_symlinks=False)


def _file_handler(path: Path):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler
