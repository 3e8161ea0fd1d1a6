"""The plain-HTTP listener beside HTTPS: HTTP-01 answers and the redirect (web/acme_http.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from web.acme_http import redirect_app

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


async def test_known_token_is_answered_unknown_is_404(aiohttp_client: MakeClient) -> None:
    tokens = {"tok_EN-1": "tok_EN-1.thumbprint"}
    client = await aiohttp_client(redirect_app(tokens, ["meet.example.org"], 443))
    response = await client.get("/.well-known/acme-challenge/tok_EN-1")
    assert response.status == 200
    assert await response.text() == "tok_EN-1.thumbprint"
    assert (await client.get("/.well-known/acme-challenge/other")).status == 404
    assert (await client.get("/.well-known/acme-challenge/..%2Fx")).status == 404


async def test_everything_else_redirects_to_https(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(redirect_app({}, ["meet.example.org", "b.example.org"], 8443))
    response = await client.get("/standup?x=1", headers={"Host": "b.example.org"},
                                allow_redirects=False)  # fmt: skip
    assert response.status == 301
    assert response.headers["Location"] == "https://b.example.org:8443/standup?x=1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_forged_host_is_not_followed(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(redirect_app({}, ["meet.example.org"], 443))
    response = await client.post("/", headers={"Host": "evil.example"}, allow_redirects=False)
    assert response.status == 301
    assert response.headers["Location"] == "https://meet.example.org/"
