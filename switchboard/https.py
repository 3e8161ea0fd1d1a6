"""HTTPS for http.listen (docs/deploy.md): the operator's certificate files, or ACME.

`Https(config)` is started before the web site (it gives the site its `ssl_context`) and
stopped after it:
- http.tls_cert/tls_key: `CertificateFiles` behind the context, checked every
  http.tls_reload_interval seconds and on SIGHUP (`reload()`); a renewed pair is served to
  new connections without a restart.
- http.acme_domains: `AcmeManager` (web/acme_client.py) keeps the certificate, and the
  plain-HTTP listener on http.acme_http_listen answers HTTP-01 and redirects to HTTPS.
- neither: `context` is None and http.listen serves plain HTTP, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

from aiohttp import web

from switchboard.config import Config
from web.acme_client import AcmeManager, AcmeSettings
from web.acme_http import redirect_app
from web.connections import ConnectionGuard, ConnectionSettings, GuardedSite
from web.tls import CertificateFiles

__all__ = ["Https"]

log = logging.getLogger(__name__)


class Https:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.files: CertificateFiles | None = None
        self.acme: AcmeManager | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._redirect: web.AppRunner | None = None

    @property
    def context(self) -> ssl.SSLContext | None:
        if self.acme is not None and self.acme.certificate is not None:
            return self.acme.certificate.context
        return self.files.context if self.files is not None else None

    def expiry(self) -> float | None:
        """Seconds until the served certificate expires (None: plain HTTP or a stand-in)."""
        if self.acme is not None:
            not_after = self.acme.not_after
        else:
            not_after = self.files.not_after if self.files is not None else None
        return None if not_after is None else not_after - time.time()

    async def start(self, connections: ConnectionSettings) -> None:
        """`connections`: the caps of http.listen, applied to the port-80 listener too (it
        faces the internet as much)."""
        h = self.config.http
        if h.tls_cert:
            self.files = CertificateFiles(h.tls_cert, h.tls_key)
            self._reloader = asyncio.create_task(self._reload_loop(h.tls_reload_interval),
                                                 name="tls-reload")  # fmt: skip
        elif h.acme_domains:
            settings = AcmeSettings(domains=h.acme_domains, directory=h.acme_directory,
                                    email=h.acme_email, ca_bundle=h.acme_ca_bundle)  # fmt: skip
            self.acme = AcmeManager(settings, self.config.store.path)
            host, port = h.acme_http_host_port
            app = redirect_app(self.acme.tokens, h.acme_domains, h.host_port[1])
            runner = web.AppRunner(app, access_log=None,
                                   keepalive_timeout=h.keepalive_timeout)  # fmt: skip
            await runner.setup()
            try:
                await GuardedSite(runner, host, port, ConnectionGuard(connections)).start()
            except BaseException:
                await runner.cleanup()
                raise
            self._redirect = runner
            log.info("acme: HTTP-01 responder and HTTPS redirect listening on %s:%d", host, port)
            self.acme.start()

    def reload(self) -> None:
        """SIGHUP: look at the certificate files (or the renewal schedule) now."""
        if self.files is not None:
            log.info("tls: SIGHUP: checking %s", self.files.cert)
            self.files.check()
        if self.acme is not None:
            self.acme.renew_now()
        if self.files is None and self.acme is None:
            log.info("SIGHUP: plain HTTP, no certificate to reload")

    async def _reload_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.files is not None:
                self.files.check()

    async def stop(self) -> None:
        task, self._reloader = self._reloader, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.acme is not None:
            await self.acme.stop()
        if self._redirect is not None:
            await self._redirect.cleanup()
            self._redirect = None
