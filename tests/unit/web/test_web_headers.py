"""Security headers on every response, and X-Forwarded-* honoured only from trusted proxies
(web/headers.py), over aiohttp's test client (its peer address is 127.0.0.1)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialplan.store import Store
from web.app import WebSettings, client_address, create_app
from web.pages import STATIC_DIR, add_page_routes

TOKEN = "s3cret-admin-token-0123456789"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class NoFocus:
    def participants(self, room: str) -> list[object]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"remote": request.remote, "client": client_address(request),
                              "scheme": request.scheme, "host": request.host})  # fmt: skip


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    yield s
    s.close()


async def _client(aiohttp_client: MakeClient, store: Store, **settings: object) -> Client:
    app = create_app(store, NoFocus(), admin_token=TOKEN,
                     settings=WebSettings.build(**settings))  # type: ignore[arg-type]
    app.router.add_get("/whoami", whoami)
    add_page_routes(app)
    return await aiohttp_client(app)


@pytest.mark.parametrize("path", ["/", "/standup", "/nosuch/page", "/api/health", "/api/rooms",
                                  "/static/css/room.css", "/robots.txt"])
async def test_every_response_carries_the_security_headers(
    aiohttp_client: MakeClient, store: Store, path: str
) -> None:
    client = await _client(aiohttp_client, store)
    response = await client.get(path, allow_redirects=False)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP


def test_pages_have_no_inline_script_or_style() -> None:
    """The CSP has no 'unsafe-inline': a <script> without src, a <style> element or a style=
    or on*= attribute would be blocked by the browser."""
    for page in STATIC_DIR.glob("*.html"):
        html = page.read_text()
        for m in re.finditer(r"<script\b([^>]*)>", html, re.IGNORECASE):
            assert "src=" in m.group(1), f"{page.name}: inline <script>"
        assert re.search(r"<style\b", html, re.IGNORECASE) is None, f"{page.name}: <style>"
        assert re.search(r"\sstyle\s*=", html, re.IGNORECASE) is None, f"{page.name}: style="
        assert re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE) is None, f"{page.name}: on*="
    for script in (STATIC_DIR / "js").rglob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text.replace("never innerHTML", "")
        assert re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"]style", text) is None


FORWARDED = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "meet.example.org"}  # fmt: skip


async def test_forwarded_headers_ignored_from_an_untrusted_peer(
    aiohttp_client: MakeClient, store: Store
) -> None:
    client = await _client(aiohttp_client, store, trusted_proxies=["10.0.0.0/8"])
    response = await client.get("/whoami", headers=FORWARDED)
    seen = await response.json()
    assert seen["remote"] == "127.0.0.1" and seen["client"] == "127.0.0.1"
    assert seen["scheme"] == "http"
    assert seen["host"] != "meet.example.org"
    assert "Strict-Transport-Security" not in response.headers


async def test_forwarded_headers_from_a_trusted_proxy(aiohttp_client: MakeClient,
                                                      store: Store) -> None:  # fmt: skip
    client = await _client(aiohttp_client, store, trusted_proxies=["127.0.0.1/32"])
    response = await client.get("/whoami", headers=FORWARDED)
    seen = await response.json()
    # the last entry is the one the proxy added; the first could be anything the client sent
    assert seen == {"remote": "203.0.113.9", "client": "203.0.113.9", "scheme": "https",
                    "host": "meet.example.org"}  # fmt: skip
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "not-an-address"},
    {"X-Forwarded-Proto": "gopher"},
    {"X-Forwarded-Host": "evil.example/<script>"},
])  # fmt: skip
async def test_malformed_forwarded_values_are_ignored(
    aiohttp_client: MakeClient, store: Store, headers: dict[str, str]
) -> None:
    client = await _client(aiohttp_client, store, trusted_proxies=["127.0.0.1"])
    response = await client.get("/whoami", headers=headers)
    assert response.status == 200
    seen = await response.json()
    assert seen["remote"] == "127.0.0.1" and seen["scheme"] == "http"
    assert "evil" not in seen["host"]


async def test_hsts_can_be_turned_off(aiohttp_client: MakeClient, store: Store) -> None:
    client = await _client(aiohttp_client, store, trusted_proxies=["127.0.0.1"], hsts_max_age=0)
    response = await client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers
