"""The `[http]` and `[metrics]` sections: listening, HTTPS (own certificate or ACME), proxies
and limits (switchboard/config.py re-exports them)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from switchboard.config_base import ConfigError
from switchboard.config_base import parse_hostport as _parse_hostport
from web.origins import origin_of

__all__ = ["HttpConfig", "MetricsConfig", "validate_http"]


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = "0.0.0.0:8080"
    public_urls: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    max_connections: int = 0  # 0: half the open-file limit, at most 10,000
    max_connections_per_source: int = 64
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    mapper_lookups_per_minute: int = 60
    # HTTPS (docs/deploy.md): the operator's certificate, or one from ACME.
    tls_cert: str = ""
    tls_key: str = ""
    tls_reload_interval: float = 60.0
    acme_domains: tuple[str, ...] = ()
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    acme_ca_bundle: str = ""
    acme_http_listen: str = "0.0.0.0:80"
    hsts_max_age: int = 31_536_000

    @property
    def host_port(self) -> tuple[str, int]:
        return _parse_hostport("http.listen", self.listen)

    @property
    def acme_http_host_port(self) -> tuple[str, int]:
        return _parse_hostport("http.acme_http_listen", self.acme_http_listen)

    @property
    def tls(self) -> bool:
        """Whether http.listen serves HTTPS."""
        return bool(self.tls_cert or self.acme_domains)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = ""  # "HOST:PORT": /metrics there without a token; empty: admin token only

    @property
    def host_port(self) -> tuple[str, int] | None:
        return _parse_hostport("metrics.listen", self.listen) if self.listen else None


def _validate_http(http: HttpConfig) -> None:
    http.host_port  # noqa: B018 - parses and raises on a bad value
    for key in ("public_urls", "cors_origins"):
        for i, url in enumerate(getattr(http, key)):
            if origin_of(url) is None:
                raise ConfigError(f"http.{key}[{i}]: expected a URL like "
                                  f"'https://meet.example.org' (no path), got {url!r}")
    for i, peer in enumerate(http.trusted_proxies):
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies[{i}]: expected an IP address or network, "
                              f"got {peer!r}") from None
    if http.max_connections < 0:
        raise ConfigError("http.max_connections: expected 0 (from the open-file limit) or more")
    if http.max_connections_per_source < 1:
        raise ConfigError("http.max_connections_per_source: expected at least 1")
    for name in ("header_timeout", "keepalive_timeout"):
        if not 0 < getattr(http, name) <= 3600:
            raise ConfigError(f"http.{name}: expected 0 to 3600 seconds (not 0)")
    if not 1 <= http.mapper_lookups_per_minute <= 100_000:
        raise ConfigError("http.mapper_lookups_per_minute: expected 1-100000")
    _validate_tls(http)


_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                     r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _validate_tls(http: HttpConfig) -> None:
    if bool(http.tls_cert) != bool(http.tls_key):
        raise ConfigError("http.tls_cert and http.tls_key: give both (PEM files) or neither")
    if http.tls_cert and http.acme_domains:
        raise ConfigError("http.tls_cert and http.acme_domains: give one (your own "
                          "certificate, or one from ACME), not both")
    for key in ("tls_cert", "tls_key"):
        path = getattr(http, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"http.{key}: {path!r} is not a file")
    if not 1 <= http.tls_reload_interval <= 86_400:
        raise ConfigError("http.tls_reload_interval: expected 1 to 86400 seconds")
    for i, domain in enumerate(http.acme_domains):
        if _DOMAIN.match(domain) is None:
            raise ConfigError(f"http.acme_domains[{i}]: expected a DNS name in lower case "
                              f"like 'meet.example.org' (no wildcard, no address), "
                              f"got {domain!r}")
    if len(set(http.acme_domains)) != len(http.acme_domains):
        raise ConfigError("http.acme_domains: a name is listed twice")
    if not http.acme_directory.startswith("https://"):
        raise ConfigError(f"http.acme_directory: expected an https:// URL, "
                          f"got {http.acme_directory!r}")
    if http.acme_email and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", http.acme_email) is None:
        raise ConfigError(f"http.acme_email: expected an address like 'ops@example.org', "
                          f"got {http.acme_email!r}")
    if http.acme_ca_bundle and not Path(http.acme_ca_bundle).is_file():
        raise ConfigError(f"http.acme_ca_bundle: {http.acme_ca_bundle!r} is not a file")
    if http.acme_http_host_port == http.host_port and http.acme_domains:
        raise ConfigError("http.acme_http_listen: must differ from http.listen")
    if not 0 <= http.hsts_max_age <= 2 * 31_536_000:
        raise ConfigError("http.hsts_max_age: expected 0 (no HSTS) to 63072000 seconds")


validate_http = _validate_http
