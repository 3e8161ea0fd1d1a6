"""``switchboard server-config --domain NAME``: the configuration of a server on the internet.

What ``make run DOMAIN=NAME`` (and ``make install-service``) starts from: web on 443 with a
certificate from ACME for NAME (HTTP-01 and the redirect to HTTPS on 80), SIP on 5060 UDP
and TCP on every interface, phone and browser media bound to the server's address and
announced as its public one (``server.public_address``, the one setting SIP, phone media
and browser media announce), the data in a given directory. The public address is the one
given, else the address the host would send from towards the internet (a routing question
to the kernel: a UDP socket ``connect``ed to a public address, which sends nothing). Every
other key keeps its default (deploy/switchboard.example.toml); the operator edits the file
afterwards, and ``make`` never overwrites it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket

#: any public address will do: connect() on a UDP socket only asks the kernel for a route
_ROUTE_PROBE = ("192.0.2.1", 9)  # TEST-NET-1 (RFC 5737): never answered, never sent to
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class ServerConfigError(ValueError):
    """A domain or address that cannot go into the configuration."""


def check_domain(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels) \
            or labels[-1].isdigit():
        raise ServerConfigError(f"not a DNS name for a certificate: {domain!r}")
    return name


def route_address() -> str:
    """The local address the host would use towards the internet (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(_ROUTE_PROBE)
        return str(s.getsockname()[0])


def render(domain: str, *, email: str = "", public_ip: str = "", bind_ip: str = "",
           data_dir: str = "/var/lib/switchboard") -> str:
    """The TOML text. ``bind_ip``: the interface media binds to (default: the route's
    address); ``public_ip``: what phones and browsers are told (default: ``bind_ip``; a
    cloud VM behind a 1:1 NAT gives its public address here)."""
    name = check_domain(domain)
    bind = bind_ip or route_address()
    public = public_ip or bind
    for what, value in (("bind address", bind), ("public address", public)):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ServerConfigError(f"{what}: not an IP address: {value!r}") from None
    if email and ("@" not in email or any(c.isspace() for c in email)):
        raise ServerConfigError(f"not an e-mail address: {email!r}")

    def q(value: str) -> str:
        return json.dumps(value)  # a TOML basic string

    return f"""# Switchboard on the internet as {name} (made by `switchboard server-config`; edit
# freely: make never overwrites it). Every key not here keeps its default: see
# deploy/switchboard.example.toml, and docs/deploy.md for the ports to open.

[http]
listen = "0.0.0.0:443"
acme_domains = [{q(name)}]
acme_email = {q(email)}
acme_http_listen = "0.0.0.0:80"

[server]
# what phones and browsers are told to send to (SIP Via and Contact, SDP, ICE candidates)
public_address = {q(public)}

[sip]
listen = ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]

[media]
address = {q(bind)}

[bridge]
address = {q(bind)}

[store]
path = {q(data_dir)}
"""
