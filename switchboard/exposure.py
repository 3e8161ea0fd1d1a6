"""The start-up check of where each part listens and what media announces (issue 15's trap:
HTTP and SIP on every interface, browser or phone media announced on 127.0.0.1).

`exposure_warnings(config)` is pure: it reads the configuration and returns one sentence
per service with a problem (browser media: the bridge; phone media: RTP and SIP's announce);
the composition root logs each at WARNING.
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
    """One sentence per service whose media other hosts cannot reach while its signalling
    can: the bridge's (browsers) and the phone gateway's (RTP, SIP)."""
    return [w for w in (_bridge_warning(config), _phone_warning(config)) if w]


def _bridge_warning(config: Config) -> str:
    announced = config.bridge.announce_address
    scope = _scope(announced)
    if scope not in ("loopback", "private"):
        return ""
    exposed: list[str] = []
    host, port = config.http.host_port
    if _reachable_from_outside(host):
        exposed.append(f"web on {host}:{port}")
    exposed.extend(f"SIP on {a}" for a in config.sip.listen_addresses
                   if _reachable_from_outside(a.host))  # fmt: skip
    if not exposed:
        return ""
    return (
        f"{' and '.join(exposed)} can be reached from other hosts, but browser media "
        f"announces the {scope} address {announced} (bridge.announce, else bridge.address): "
        f"browsers {'elsewhere' if scope == 'loopback' else 'outside that network'} will load "
        "the page and then fail with 'a firewall may be blocking the media'. Set "
        "bridge.address to this host's address and, behind 1:1 NAT, bridge.announce (or "
        "server.public_address) to the public one (docs/deploy.md)."
    )


def _phone_warning(config: Config) -> str:
    """SIP reachable from other hosts while phone media (RTP) announces, in SDP, an address
    only this host or its network reaches (media.announce, else media.address); or while
    SIP's own announce (Via, Contact of a listener on every interface) is such an address."""
    listeners = [a for a in config.sip.listen_addresses if _reachable_from_outside(a.host)]
    if not listeners:
        return ""
    problems: list[str] = []
    media = config.media.announce_address
    media_scope = _scope(media)
    if media_scope in ("loopback", "private"):
        problems.append(f"phone media (RTP) announces the {media_scope} address {media} in "
                        "SDP (media.announce, else media.address)")
    sip = config.sip.announce
    sip_scope = _scope(sip) if sip else None
    if sip_scope in ("loopback", "private") and any(_scope(a.host) == "any"
                                                    for a in listeners):
        problems.append(f"SIP announces the {sip_scope} address {sip} in Via and Contact "
                        "(sip.announce)")
    if not problems:
        return ""
    where = " and ".join(f"SIP on {a}" for a in listeners)
    scopes = "loopback" if "loopback" in (media_scope, sip_scope) else "private"
    return (
        f"{where} can be reached from other hosts, but {' and '.join(problems)}: calls "
        f"from phones {'elsewhere' if scopes == 'loopback' else 'outside that network'} "
        "will be answered and then send their audio nowhere (hung up after media.timeout "
        "without RTP). "
        "Set media.address to this host's address and, behind 1:1 NAT, media.announce (or "
        "server.public_address) to the public one (docs/deploy.md)."
    )
