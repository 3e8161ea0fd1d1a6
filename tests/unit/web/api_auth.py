"""What the web API tests share: the admin token, the JWT secret, a room moderator's (or
guest's) bearer header, and the aiohttp test client's types."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient

ADMIN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SECRET = "api-tests-secret-0123456789abcdefgh"

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def bearer(room: str = "standup", moderator: bool = True) -> dict[str, str]:
    """A JWT (HS256, SECRET) for `room`, its holder a moderator or not."""
    claims: dict[str, Any] = {"room": room, "exp": time.time() + 600,
                              "context": {"user": {"moderator": moderator}}}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}
