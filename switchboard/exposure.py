"""The start-up check of where each part listens and what media announces (issue 15's trap:
HTTP and SIP on every interface, browser media announced on 127.0.0.1).

`exposure_warnings(config)` is pure: it reads the configuration and returns one sentence
per problem; the composition root logs each at WARNING.
"""

from __future__ import annotations

import ipaddress

from switchboard.config import Config

# Addresses other networks cannot route to (RFC 1918, shared CGNAT space, link-local, IPv6
# unique-local). Python's is_private also counts the documentation ranges, which stand for
# public addresses in examples: not used here.
_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "fc00::/7", "fe80::/10"))


def _scope(host: str) -> str | None:
    """'loopback' / 'private' for an address only its own machine / network can reach;
    'any' for every interface; None for a public address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified:
        return "any"
    if address.is_loopback:
        return "loopback"
    if any(address in network for network in _PRIVATE):
        return "private"
    return None


def _reachable_from_outside(host: str) -> bool:
    """Every interface (0.0.0.0, ::) or a public address."""
    return _scope(host) in ("any", None)


def exposure_warnings(config: Config) -> list[str]:
    announced = config.bridge.announce_address
    scope = _scope(announced)
    if scope not in ("loopback", "private"):
        return []
    exposed: list[str] = []
    host, port = config.http.host_port
    if _reachable_from_outside(host):
        exposed.append(f"web on {host}:{port}")
    exposed.extend(f"SIP on {a}" for a in config.sip.listen_addresses
                   if _reachable_from_outside(a.host))  # fmt: skip
    if not exposed:
        return []
    return [
        f"{' and '.join(exposed)} can be reached from other hosts, but browser media "
        f"announces the {scope} address {announced} (bridge.announce, else bridge.address): "
        f"browsers {'elsewhere' if scope == 'loopback' else 'outside that network'} will load "
        "the page and then fail with 'a firewall may be blocking the media'. Set "
        "bridge.address to this host's address and, behind 1:1 NAT, bridge.announce to the "
        "public one (docs/deploy.md)."
    ]
