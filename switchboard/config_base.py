"""Configuration's shared pieces: the error every check raises and the HOST:PORT parsers
(switchboard/config.py re-exports them)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["ConfigError", "ListenAddress", "check_ip", "parse_hostport", "parse_listen"]


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def _parse_hostport(key: str, text: str) -> tuple[str, int]:
    m = _HOSTPORT.match(text)
    if m is None:
        raise ConfigError(f"{key}: expected 'host:port' (IPv6 as '[addr]:port'), got {text!r}")
    host = m.group("v6") or m.group("host")
    port = int(m.group("port"))
    if not 0 < port < 65536:
        raise ConfigError(f"{key}: port must be 1-65535, got {port}")
    _check_ip(key, host)
    return host, port


def _check_ip(key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{key}: expected an IP address, got {host!r}") from None


def _parse_listen(key: str, text: str) -> ListenAddress:
    transport, sep, rest = text.partition(":")
    if not sep or transport.lower() not in ("udp", "tcp", "tls"):
        raise ConfigError(f"{key}: expected 'udp:HOST:PORT', 'tcp:HOST:PORT' or "
                          f"'tls:HOST:PORT', got {text!r}")
    host, port = _parse_hostport(key, rest)
    return ListenAddress(transport.lower(), host, port)


def sip_dns_server(text: str) -> tuple[str, int] | None:
    """sip.dns_server as (IP, port); None when empty (the system's name servers)."""
    return _parse_hostport("sip.dns_server", text) if text else None


parse_hostport = _parse_hostport
parse_listen = _parse_listen
check_ip = _check_ip
