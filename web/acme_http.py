"""The plain-HTTP listener next to HTTPS (http.acme_http_listen, port 80 by default).

- GET /.well-known/acme-challenge/TOKEN answers the key authorization of an HTTP-01 challenge
  in progress (text/plain), from the mapping `AcmeManager.tokens`; an unknown token is a 404.
- Any other request is redirected (301) to the same path and query over HTTPS. The host of
  the redirect is the request's Host when it is one of the configured names, else the first
  name: a forged Host never sends a visitor elsewhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from aiohttp import web

from web.headers import add_security_headers

__all__ = ["CHALLENGE_PREFIX", "redirect_app"]

log = logging.getLogger(__name__)

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def redirect_app(tokens: Mapping[str, str], domains: Sequence[str], https_port: int) -> \
        web.Application:  # fmt: skip
    """The responder and redirect above; `https_port` is http.listen's port."""
    names = {d.lower() for d in domains}
    port = "" if https_port == 443 else f":{https_port}"

    async def challenge(request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if _TOKEN.fullmatch(token) is None or token not in tokens:
            log.info("acme: HTTP-01 request from %s for an unknown token", request.remote)
            raise web.HTTPNotFound()
        log.info("acme: HTTP-01 challenge answered to %s", request.remote)
        return web.Response(text=tokens[token], content_type="text/plain")

    async def redirect(request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0].lower() if request.host else ""
        if host not in names:
            host = domains[0]
        raise web.HTTPMovedPermanently(f"https://{host}{port}{request.rel_url.path_qs}")

    app = web.Application()
    app.router.add_get(CHALLENGE_PREFIX + "{token}", challenge)
    app.router.add_route("*", "/{tail:.*}", redirect)
    add_security_headers(app, hsts_max_age=0)
    return app
