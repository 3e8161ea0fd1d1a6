"""Headers every HTTP response carries, and the X-Forwarded-* rule for reverse proxies.

Security headers (`add_security_headers(app, hsts_max_age)`), on every response of the app,
set unless the handler set its own:
- `Content-Security-Policy`: the pages load only their own scripts and styles (files under
  /static/, no inline script or style attribute), images also from any https: address (the
  avatars tokens name), media from getUserMedia streams, and
  connect to their own origin (the signaling WebSocket); `frame-ancestors 'none'`.
- `X-Frame-Options: DENY` (browsers without frame-ancestors), `X-Content-Type-Options:
  nosniff`, `Referrer-Policy: no-referrer`.
- `Strict-Transport-Security: max-age=N` only on a request that came over HTTPS (directly, or
  through a trusted proxy that says `X-Forwarded-Proto: https`); never on plain HTTP, where a
  browser ignores it and a test name on loopback would be pinned to HTTPS for a year.

Forwarded headers (`forwarded_middleware`): a request whose peer is in `trusted_proxies`
(http.trusted_proxies, CIDRs; empty by default) is seen as the proxy describes it: the
remote address is the last `X-Forwarded-For` entry (the one the proxy added), the scheme
`X-Forwarded-Proto` (http or https) and the host `X-Forwarded-Host`. From any other peer these
headers are ignored. A malformed value from a trusted proxy is ignored too (the peer's own
value stays) and logged at DEBUG.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from dialplan.limits import Networks

__all__ = ["CSP", "SECURITY_HEADERS", "add_security_headers", "forwarded_middleware"]

log = logging.getLogger(__name__)

CSP: Final = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    # https: for the avatars tokens name (focus/tokens.py avatar_url; docs/security.md)
    "img-src 'self' data: blob: https:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self' ws: wss:",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
])
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_HOST: Final = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(?::\d{1,5})?$")

# Set on the request a trusted proxy says came over HTTPS: aiohttp prepares a returned response
# with the request it received, not the clone the handler saw.
FORWARDED_HTTPS: Final = web.RequestKey("switchboard_forwarded_https", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_security_headers(app: web.Application, hsts_max_age: int = 31_536_000) -> None:
    """Give every response of `app` the headers above."""
    hsts = f"max-age={hsts_max_age}" if hsts_max_age > 0 else ""

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if hsts and (request.secure or request.get(FORWARDED_HTTPS, False)):
            response.headers.setdefault("Strict-Transport-Security", hsts)

    app.on_response_prepare.append(prepare)


def forwarded_middleware(trusted_proxies: Networks) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The X-Forwarded-* rule above as an aiohttp middleware."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.remote
        if not trusted_proxies or remote is None or remote not in trusted_proxies:
            return await handler(request)
        changes: dict[str, str] = {}
        entries = ",".join(request.headers.getall("X-Forwarded-For", []))
        if entries:
            last = entries.rsplit(",", 1)[-1].strip()
            try:
                changes["remote"] = str(ipaddress.ip_address(last))
            except ValueError:
                log.debug("http: X-Forwarded-For %r from proxy %s: not an address", last[:60],
                          remote)  # fmt: skip
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
            request[FORWARDED_HTTPS] = proto == "https"
        host = request.headers.get("X-Forwarded-Host", "").split(",")[-1].strip()
        if host:
            if _HOST.match(host):
                changes["host"] = host
            else:
                log.debug("http: X-Forwarded-Host %r from proxy %s ignored", host[:60], remote)
        if not changes:
            return await handler(request)
        return await handler(request.clone(**changes))  # type: ignore[arg-type]

    return forwarded
