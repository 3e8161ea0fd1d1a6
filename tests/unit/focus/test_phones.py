"""focus.phones.PhoneMedia against the real in-process bridge (plain endpoints hold no socket)."""

from __future__ import annotations

import asyncio

from bridge.api import EndpointUpdate, MediaSource
from bridge.service import Bridge, BridgeSettings
from focus.phones import PhoneMedia
from gateway.uplink import rtp_with_level


class Listener:
    def __init__(self) -> None:
        self.changed: list[str] = []

    def sources_changed(self, room: str) -> None:
        self.changed.append(room)


async def test_callers_are_sources_and_the_mixer_hears_only_others() -> None:
    bridge = Bridge(BridgeSettings())
    await bridge.start()
    listener = Listener()
    media = PhoneMedia(bridge, listener)
    mixer = await media.open_room("r")
    caller = await media.attach("r", "p1-abc", 1111)
    other = await bridge.allocate_plain("r", "browserish")  # stands in for a browser
    await bridge.update("r", "browserish", EndpointUpdate(
        sources=(MediaSource("browserish", "audio", 2222),), receive="all"))
    assert listener.changed == ["r"]

    heard_mixer: list[bytes] = []
    heard_other: list[bytes] = []
    bridge.connect_local(mixer.media, heard_mixer.append, lambda d: None)
    up = bridge.connect_local(caller.media, lambda d: None, lambda d: None)
    down = bridge.connect_local(other.media, heard_other.append, lambda d: None)
    # The browser-ish endpoint is offered the caller's source under the participant's id.
    offered = await bridge.receive_sources("r", "browserish")
    assert [(s.source.endpoint_id, s.ssrc) for s in offered] == [("p1-abc", 1111)]

    for seq in range(3):
        up.send_rtp(rtp_with_level(111, seq, seq * 960, 1111, False, 20, True, 1, b"caller"))
        down.send_rtp(rtp_with_level(111, seq, seq * 960, 2222, False, 20, True, 1, b"web"))
    # The browser hears the caller; the gateway's mixer hears the browser, never the caller.
    assert [p[-6:] for p in heard_other] == [b"caller"] * 3
    assert [p[-3:] for p in heard_mixer] == [b"web"] * 3

    await media.release("r", "p1-abc")
    await media.release("r", mixer.endpoint_id)
    await bridge.expire("r", "browserish")
    assert listener.changed == ["r", "r"]
    assert bridge.stats()["endpoints"] == 0 and media.endpoints == {}
    await bridge.stop()
    assert all(v == 0 for v in bridge.resources().values())


async def test_releasing_twice_or_unknown_is_harmless() -> None:
    bridge = Bridge(BridgeSettings())
    await bridge.start()
    media = PhoneMedia(bridge, None)
    await media.release("nowhere", "nobody")
    alloc = await media.attach("r", "p2", 5)
    await media.release("r", alloc.endpoint_id)
    await media.release("r", alloc.endpoint_id)
    await asyncio.sleep(0)
    assert bridge.stats()["endpoints"] == 0
    await bridge.stop()
