"""Fakes for the meeting tests: a bridge that keeps sources in memory, connections that
record what they are sent, a room directory, and a browser that answers offers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.api import (
    BridgeEvent,
    BridgeListener,
    DtlsFingerprint,
    EndpointAllocation,
    EndpointUpdate,
    IceCandidate,
    MediaSource,
    PlainEndpointAllocation,
    ReceiveSource,
    TransportDescription,
)


class FakeBridge:
    """BridgeSession in memory: receivers see each source on ssrc + 1,000,000."""

    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, str], tuple[MediaSource, ...]] = {}
        self.updates: list[tuple[str, str, EndpointUpdate]] = []
        self.expired: list[tuple[str, str]] = []
        self.listeners: list[BridgeListener] = []
        self.fail_allocate = False

    async def allocate(self, conference_id: str, endpoint_id: str) -> EndpointAllocation:
        if self.fail_allocate:
            raise RuntimeError("no bridge")
        self.endpoints[(conference_id, endpoint_id)] = ()
        return EndpointAllocation(
            conference_id=conference_id, endpoint_id=endpoint_id,
            transport=TransportDescription(
                "brUf", "bridgePassword0123456789ab",
                (DtlsFingerprint("sha-256", ":".join(["0F"] * 32)),), "actpass",
                (IceCandidate("1", 1, "udp", 2130706431, "127.0.0.1", 40000, "host"),)),
            payload_types=(), header_extensions=(),
        )  # fmt: skip

    async def allocate_plain(self, conference_id: str,
                             endpoint_id: str) -> PlainEndpointAllocation:
        self.endpoints[(conference_id, endpoint_id)] = ()
        return PlainEndpointAllocation(conference_id, endpoint_id, (), (),
                                       f"local:{conference_id}/{endpoint_id}")

    async def update(self, conference_id: str, endpoint_id: str, update: EndpointUpdate) -> None:
        assert (conference_id, endpoint_id) in self.endpoints, "update before allocate"
        self.updates.append((conference_id, endpoint_id, update))
        if update.sources is not None:
            self.endpoints[(conference_id, endpoint_id)] = update.sources

    async def expire(self, conference_id: str, endpoint_id: str) -> None:
        self.expired.append((conference_id, endpoint_id))
        self.endpoints.pop((conference_id, endpoint_id), None)

    async def receive_sources(
        self, conference_id: str, endpoint_id: str
    ) -> tuple[ReceiveSource, ...]:
        return tuple(
            ReceiveSource(s, s.ssrc + 1_000_000,
                          s.rtx_ssrc + 1_000_000 if s.rtx_ssrc is not None else None)
            for (conf, ep), sources in self.endpoints.items()
            if conf == conference_id and ep != endpoint_id
            for s in sources
        )  # fmt: skip

    def subscribe(self, listener: BridgeListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def stats(self) -> dict[str, int]:
        return {"endpoints": len(self.endpoints)}

    def emit(self, event: BridgeEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def forced(self, endpoint_id: str) -> list[bool]:
        return [u.audio_forced_off for _, ep, u in self.updates
                if ep == endpoint_id and u.audio_forced_off is not None]  # fmt: skip


@dataclass
class FakeConnection:
    messages: list[dict[str, Any]] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def send(self, message: Mapping[str, object]) -> None:
        if self.closed is None:
            self.messages.append(dict(message))

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def last(self, kind: str) -> dict[str, Any]:
        found = self.of(kind)
        assert found, f"no {kind} message in {[m['type'] for m in self.messages]}"
        return found[-1]


@dataclass
class FakeRooms:
    rooms: dict[str, str] = field(default_factory=lambda: {"standup": "12345678"})
    created: list[str] = field(default_factory=list)
    host_pins: dict[str, str] = field(default_factory=dict)

    def exists(self, room: str) -> bool:
        return room in self.rooms

    def create(self, room: str) -> None:
        self.created.append(room)
        self.rooms[room] = "87654321"

    def dial_in(self, room: str) -> Mapping[str, object] | None:
        if room not in self.rooms:
            return None
        info: dict[str, object] = {"pin": self.rooms[room], "numbers": [
            {"number": "+15550100", "formatted": "+1 555 0100", "country": "US",
             "toll_free": False}]}  # fmt: skip
        if room in self.host_pins:
            info["host_pin"] = self.host_pins[room]
        return info


def answer_for(offer: str, sending: Mapping[str, tuple[int, int | None]], ufrag: str = "brws"
               ) -> str:  # fmt: skip
    """A browser's answer to `offer`: `sending` maps own mids (a0/v0/s0) to (ssrc, rtx)."""
    mids = re.findall(r"a=mid:(\S+)", offer)
    kinds = re.findall(r"m=(audio|video) ", offer)
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(mids), "a=msid-semantic: WMS"]  # fmt: skip
    for index, (mid, kind) in enumerate(zip(mids, kinds, strict=True)):
        lines += [f"m={kind} {50000 if index == 0 else 9} UDP/TLS/RTP/SAVPF 111",
                  "c=IN IP4 127.0.0.1"]  # fmt: skip
        if index == 0:
            lines.append("a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host")
        lines += [f"a=ice-ufrag:{ufrag}", "a=ice-pwd:browserPassword0123456789",
                  "a=fingerprint:sha-256 " + ":".join(["AA"] * 32), "a=setup:active",
                  f"a=mid:{mid}"]  # fmt: skip
        if mid in sending:
            ssrc, rtx = sending[mid]
            lines += ["a=sendonly", f"a=msid:- track-{mid}"]
            if rtx is not None:
                lines += [f"a=ssrc-group:FID {ssrc} {rtx}", f"a=ssrc:{rtx} cname:c"]
            lines.append(f"a=ssrc:{ssrc} cname:c")
        elif mid in ("a0", "v0", "s0"):
            lines.append("a=inactive")
        else:
            lines.append("a=recvonly")
        lines.append("a=rtcp-mux")
    return "\r\n".join(lines) + "\r\n"
