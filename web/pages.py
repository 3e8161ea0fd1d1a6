"""The browser client's pages: the home page, the meeting page and the static files.

`add_page_routes(app)` adds:
- GET /            the home page (start or join a room by name);
- GET /{room}      the meeting page for a room name of the API's shape ([A-Za-z0-9._-]{1,64});
                   a name with capitals redirects to its lower-case form (rooms are stored in
                   lower case); any other single-segment path gets the HTML 404 page;
- GET /static/...  the client's files (ES modules, CSS, SVG), with explicit content types.

The pages are static HTML: the meeting page reads the room name from its own URL and talks to
the server over the signaling WebSocket (docs/signaling.md). Nothing here knows about
conferences; whether a room exists is the signaling endpoint's answer (close code 4004).

Caching: the files have no content hash in their names (there is no build step), so every
response says `Cache-Control: no-cache` with an ETag and Last-Modified: the browser keeps its
copy and revalidates it with a cheap 304.

Register these routes after the API's and the signaling endpoint's; plain paths such as /ws
are matched before the /{room} pattern whatever the order, and the reserved names below are
refused as room pages so that a missing route never turns into a meeting page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from web.headers import SECURITY_HEADERS

#: In a cluster: the public URL of the live node that hosts a room when it is not this one
#: (cluster/node.py, ClusterNode.owner_url), else None. The meeting page redirects there.
ROOM_OWNER: web.AppKey[Callable[[str], Awaitable[str | None]]] = web.AppKey("room_owner")

__all__ = ["RESERVED_NAMES", "ROOM_NAME_RE", "STATIC_DIR", "add_page_routes"]

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
ROOM_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Paths of the server itself, never room pages.
RESERVED_NAMES: Final = frozenset({"api", "ws", "static", "favicon.ico", "robots.txt", "health",
                                   "metrics", ".well-known"})

_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}

_PAGE_HEADERS: Final = {
    **SECURITY_HEADERS,  # also on every other response (web/headers.py)
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
    "Cache-Control": "no-cache",
}
_STATIC_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page(name: str, status: int = 200) -> web.StreamResponse:
    path = STATIC_DIR / name
    if status != 200:
        # FileResponse answers 304/206 to conditional requests; an error page is always whole.
        return web.Response(
            body=path.read_bytes(), status=status, content_type="text/html", charset="utf-8",
            headers=_PAGE_HEADERS,
        )  # fmt: skip
    response = web.FileResponse(path, headers=_PAGE_HEADERS)
    response.content_type = "text/html"
    response.charset = "utf-8"
    return response


def is_room_name(name: str) -> bool:
    """The API's room-name shape, minus the server's own paths and names of dots alone."""
    return (
        ROOM_NAME_RE.fullmatch(name) is not None
        and name.lower() not in RESERVED_NAMES
        and name.strip(".") != ""
    )


async def home_page(request: web.Request) -> web.StreamResponse:
    return _page("home.html")


async def room_page(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    if not is_room_name(name):
        log.debug("GET /%s: not a room name", name[:80])
        return _page("404.html", status=404)
    if name != name.lower():  # rooms are stored in lower case: one URL per room
        raise web.HTTPMovedPermanently(f"/{name.lower()}")
    owner = request.app.get(ROOM_OWNER)
    if owner is not None:
        elsewhere = await owner(name)
        if elsewhere:  # another node hosts the room: the page opens there
            log.info("GET /%s: the room is hosted by %s", name, elsewhere)
            raise web.HTTPTemporaryRedirect(elsewhere + request.rel_url.raw_path_qs)
    return _page("room.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    root = STATIC_DIR
    try:
        path = (root / relative).resolve()
        path.relative_to(root)
    except (ValueError, OSError):
        raise web.HTTPNotFound() from None
    content_type = _CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None or not path.is_file() or any(p.startswith(".") for p in path.parts):
        raise web.HTTPNotFound()
    response = web.FileResponse(path, headers=_STATIC_HEADERS)
    mime, _, params = content_type.partition(";")
    response.content_type = mime
    if params:
        response.charset = params.split("=", 1)[1].strip()
    return response


async def favicon(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/static/img/favicon.svg")


async def robots(request: web.Request) -> web.StreamResponse:
    return web.Response(text="User-agent: *\nDisallow: /\n", headers=_STATIC_HEADERS)


def add_page_routes(app: web.Application) -> None:
    """Add the home page, the meeting page and /static/ to `app`."""
    app.router.add_get("/", home_page)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/static/{path:.+}", static_file)
    app.router.add_get("/{room}", room_page)
