"""The browser client's HTTP side: pages, the room-name check, static files and their headers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from web.pages import STATIC_DIR, add_page_routes, is_room_name

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


async def _ws_stub(request: web.Request) -> web.Response:
    return web.Response(text="signaling")


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    app = web.Application()
    add_page_routes(app)
    app.router.add_get("/ws", _ws_stub)  # registered after the pages, as the lead may do
    return await aiohttp_client(app)


async def test_home_page(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    text = await response.text()
    assert 'id="join-form"' in text and "/static/js/home.js" in text
    assert response.headers["Cache-Control"] == "no-cache"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", ["standup", "team-standup_2", "a", "x" * 64, "v1.2", "-_-"])
async def test_room_page_for_valid_names(client: Client, name: str) -> None:
    response = await client.get(f"/{name}")
    assert response.status == 200
    assert 'id="prejoin"' in await response.text()


@pytest.mark.parametrize(
    "path", ["/bad%20name", "/x" + "y" * 64, "/caf%C3%A9", "/a!b", "/api", "/static"]
)
async def test_other_single_segment_paths_get_the_404_page(client: Client, path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "There is no meeting here" in await response.text()


async def test_capitals_redirect_to_the_stored_lower_case_name(client: Client) -> None:
    response = await client.get("/TeamStandup", allow_redirects=False)
    assert response.status == 301
    assert response.headers["Location"] == "/teamstandup"


async def test_plain_routes_win_over_the_room_pattern(client: Client) -> None:
    response = await client.get("/ws")
    assert await response.text() == "signaling"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/room.js", "text/javascript"),
        ("/static/js/lib/peer.js", "text/javascript"),
        ("/static/css/room.css", "text/css"),
        ("/static/img/icons.svg", "image/svg+xml"),
        ("/static/room.html", "text/html"),
    ],
)
async def test_static_files_have_explicit_types(client: Client, path: str, content_type: str
                                                ) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == content_type
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in response.headers


async def test_static_revalidates_with_304(client: Client) -> None:
    first = await client.get("/static/js/room.js")
    etag = first.headers["ETag"]
    second = await client.get("/static/js/room.js", headers={"If-None-Match": etag})
    assert second.status == 304


@pytest.mark.parametrize(
    "path", ["/static/../pages.py", "/static/%2e%2e/pages.py", "/static/js/../../pages.py"]
)
async def test_static_never_serves_files_outside_its_folder(client: Client, path: str) -> None:
    response = await client.get(URL(path, encoded=True))  # sent as written, dots and all
    # aiohttp may normalise the dots away (then /pages.py is a room page); never the source.
    assert "add_page_routes" not in await response.text()


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/pages.py",
        "/static/nothing.js",
        "/static/js",
        "/static/js/room.js.map",
    ],
)
async def test_static_refuses_what_is_not_a_client_file(client: Client, path: str) -> None:
    response = await client.get(URL(path, encoded=True))  # sent as written, dots and all
    assert response.status == 404


async def test_favicon_points_at_the_svg(client: Client) -> None:
    response = await client.get("/favicon.ico", allow_redirects=False)
    assert response.status == 301
    assert response.headers["Location"] == "/static/img/favicon.svg"


def _exports(source: str) -> set[str]:
    names = set(re.findall(r"^export\s+(?:async\s+)?(?:const|let|function|class)\s+([\w$]+)",
                           source, re.M))
    for group in re.findall(r"^export\s*\{([^}]*)\}", source, re.M):
        names |= {part.split(" as ")[-1].strip() for part in group.split(",") if part.strip()}
    return names


def test_every_name_the_modules_import_is_exported() -> None:
    """A static import of a missing module or name stops the whole page: check the module
    graph on disk (no JavaScript engine needed)."""
    js = STATIC_DIR / "js"
    pattern = re.compile(r"^import\s*\{([^}]*)\}\s*from\s*'(\.[^']+)';", re.M)
    checked = 0
    for module in js.rglob("*.js"):
        for names, target in pattern.findall(module.read_text()):
            path = (module.parent / target).resolve()
            assert path.is_file(), f"{module.name}: {target} does not exist"
            exported = _exports(path.read_text())
            for name in (n.split(" as ")[0].strip() for n in names.split(",")):
                if name:
                    assert name in exported, f"{module.name}: {target} does not export {name}"
                    checked += 1
    assert checked > 40


def test_the_pages_load_their_files() -> None:
    for page in ("home.html", "room.html", "404.html"):
        html = (STATIC_DIR / page).read_text()
        for ref in re.findall(r'(?:href|src)="(/static/[^"#]+)', html):
            assert (STATIC_DIR / ref.removeprefix("/static/")).is_file(), f"{page}: {ref}"


def test_room_name_rule() -> None:
    assert is_room_name("standup")
    assert is_room_name("Standup")
    assert not is_room_name("")
    assert not is_room_name("..")
    assert not is_room_name("ws")
    assert not is_room_name("a b")
    assert not is_room_name("x" * 65)
