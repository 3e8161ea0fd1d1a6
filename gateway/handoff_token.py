"""Phone calls handed between the nodes of a cluster: what the two nodes say, sans-I/O.

A phone call that reaches a node which does not host its room (its PIN, number or header named
the room) is handed to the owner: the node where the call arrived keeps the caller's leg and
places a call of its own to the owner's SIP address, and the owner takes that call as a phone
caller of the room (its focus, its lobby and policy, its mixer and bridge), exactly as if a
PBX had routed it there by header. Between the two nodes the media are plain RTP.

The owner believes such a call only with a valid `X-Switchboard-Handoff` header::

    X-Switchboard-Handoff: v1;node=NODE;room=ROOM;ts=UNIX;host=0|1;pw=0|1;sig=HEX

`sig` is HMAC-SHA256, under the cluster's hand-off key (created once in Redis by the first
node), of the version, node, room, time, flags and the INVITE's Call-ID, so a header cannot be
moved to another call or room, nor made a host's. It is refused when older than `MAX_AGE`
seconds (the nodes' clocks are NTP-close), and a Call-ID is accepted once (`ReplayGuard`).
`host` says the caller entered the room's host PIN at the first node; `pw` that it gave the
room's password there (the owner does not ask again).

Nothing here does I/O: the gateway (gateway/handoff.py) signs when it hands a call over and
checks when one is handed to it; the composition root gives it the key and the cluster's
answers through `ClusterSeat`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

__all__ = ["HEADER", "MAX_AGE", "ClusterSeat", "HandOff", "HandOffTarget", "OwnerSilent",
           "ReplayGuard",
           "parse_sip_target", "sign", "verify"]

HEADER = "X-Switchboard-Handoff"
VERSION = "v1"
MAX_AGE = 30.0  # seconds a signed header stays valid
MAX_HEADER = 512  # longer values are refused unread


@dataclass(frozen=True, slots=True)
class HandOff:
    """What a valid header says."""

    node: str  # the node that handed the call over
    room: str
    host: bool  # the caller gave the room's host PIN there
    password: bool  # the caller gave the room's password there


@dataclass(frozen=True, slots=True)
class HandOffTarget:
    """Where the room lives: a node and its SIP address."""

    node: str
    transport: str  # "udp" | "tcp"
    host: str
    port: int


class OwnerSilent(ConnectionError):
    """The room's node has stopped beating (it may be dying): place the call again shortly."""


class ClusterSeat(Protocol):
    """The cluster, as the gateway sees it (switchboard/app.py adapts cluster.node)."""

    node_id: str

    async def place_call(self, room: str) -> HandOffTarget | None:
        """Where a phone call for `room` goes: None when here (claimed for this node if it was
        free); raises OwnerSilent when its node stopped beating, ConnectionError when the
        cluster cannot say now."""
        ...

    def still_hosts(self, room: str, node: str) -> bool | None:
        """Whether `node` is alive and still hosts `room` (the last beat's view); None when
        this node cannot tell."""
        ...

    async def key(self) -> bytes | None:
        """The cluster's hand-off key; None while Redis cannot be read."""
        ...


def parse_sip_target(node: str, text: str) -> HandOffTarget | None:
    """A node's advertised "TRANSPORT:HOST:PORT" (an IPv6 host in brackets), or None."""
    transport, _, rest = text.partition(":")
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if transport.lower() not in ("udp", "tcp") or not host or not port_text.isdigit():
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        return None
    return HandOffTarget(node, transport.lower(), host, port)


def _mac(key: bytes, node: str, room: str, ts: int, host: bool, password: bool,
         call_id: str) -> str:
    message = "|".join((VERSION, node, room, str(ts), "1" if host else "0",
                        "1" if password else "0", call_id))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, node: str, room: str, call_id: str, now: float, *, host: bool,
         password: bool) -> str:
    """The header value for a hand-off INVITE with Call-ID `call_id`."""
    ts = int(now)
    mac = _mac(key, node, room, ts, host, password, call_id)
    return (f"{VERSION};node={quote(node, safe='')};room={quote(room, safe='')};ts={ts};"
            f"host={int(host)};pw={int(password)};sig={mac}")


def verify(key: bytes, value: str, call_id: str, now: float) -> HandOff | None:
    """The hand-off a header value states, or None when it is malformed, stale, or its
    signature does not match (the caller logs and answers 403)."""
    if len(value) > MAX_HEADER:
        return None
    parts = value.strip().split(";")
    if not parts or parts[0] != VERSION:
        return None
    fields: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, text = part.partition("=")
        if not sep or name in fields:
            return None
        fields[name.strip()] = text.strip()
    try:
        node, room = unquote(fields["node"]), unquote(fields["room"])
        ts = int(fields["ts"])
        host_text, pw_text, mac = fields["host"], fields["pw"], fields["sig"]
    except (KeyError, ValueError):
        return None
    if host_text not in ("0", "1") or pw_text not in ("0", "1") or not node or not room:
        return None
    if abs(now - ts) > MAX_AGE:
        return None
    expected = _mac(key, node, room, ts, host_text == "1", pw_text == "1", call_id)
    if not hmac.compare_digest(expected, mac):
        return None
    return HandOff(node, room, host_text == "1", pw_text == "1")


class ReplayGuard:
    """Call-IDs of accepted hand-offs of the last `window` seconds (at most `limit`): a
    captured INVITE sent again is refused."""

    def __init__(self, window: float = 2 * MAX_AGE, limit: int = 10_000) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, call_id: str, now: float) -> bool:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.window and len(self._seen) < self.limit:
                break
            del self._seen[oldest]
        if call_id in self._seen:
            return False
        self._seen[call_id] = now
        return True
