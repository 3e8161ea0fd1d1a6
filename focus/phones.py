"""The focus's side of phone callers' media: plain bridge endpoints for the gateway.

A phone caller is an ordinary audio participant of the conference. The gateway asks here
(never the bridge itself) for:

- one plain endpoint per caller, which sends the caller's voice as one Opus source (the
  participant id is the endpoint id, so the browsers' offers, speaking indicators and
  dominant-speaker messages name the participant) and receives nothing;
- one plain endpoint per room for the gateway's mixer, which receives the audio of every
  endpoint of the room except the gateway's own callers (same `group`: the gateway mixes
  its phones itself).

Both go through bridge/api.py (`allocate_plain`, `update`, `expire`), so the same calls work
against a bridge on another host; the returned `PlainEndpointAllocation.media` names the
packet link the composition root connects. When a caller's source comes or goes, the
browsers of the room are re-offered (`SourcesListener.sources_changed`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from bridge.api import BridgeSession, EndpointUpdate, MediaSource, PlainEndpointAllocation

__all__ = ["PhoneMedia", "PlainEndpointAllocation", "SourcesListener"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SourcesListener(Protocol):
    def sources_changed(self, room: str) -> None: ...


class PhoneMedia:
    def __init__(self, bridge: BridgeSession, listener: SourcesListener | None = None, *,
                 group: str = "gateway", timeout: float = 5.0) -> None:
        self.bridge = bridge
        self.listener = listener
        self.group = group
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.endpoints: dict[tuple[str, str], str] = {}  # (room, endpoint) -> kind

    async def open_room(self, room: str) -> PlainEndpointAllocation:
        """The gateway's mixer endpoint of ``room``: receives audio only, not its own."""
        endpoint_id = f"{self.group}-mix-{next(self._ids)}"
        allocation = await self._call(self.bridge.allocate_plain(room, endpoint_id))
        try:
            await self._call(self.bridge.update(
                room, endpoint_id, EndpointUpdate(receive="audio", group=self.group)))
        except BaseException:
            await self._expire(room, endpoint_id)
            raise
        self.endpoints[(room, endpoint_id)] = "mixer"
        log.info("room %s: gateway mixer endpoint %s", room, endpoint_id)
        return allocation

    async def attach(self, room: str, participant_id: str, ssrc: int) -> PlainEndpointAllocation:
        """A caller's endpoint sending one audio source on ``ssrc``."""
        allocation = await self._call(self.bridge.allocate_plain(room, participant_id))
        source = MediaSource(participant_id, "audio", ssrc, stream_id=participant_id,
                             track_id=f"{participant_id}-audio")
        try:
            await self._call(self.bridge.update(room, participant_id, EndpointUpdate(
                sources=(source,), receive="none", group=self.group)))
        except BaseException:
            await self._expire(room, participant_id)
            raise
        self.endpoints[(room, participant_id)] = "caller"
        log.info("participant %s: phone audio source %d at the bridge", participant_id, ssrc)
        if self.listener is not None:
            self.listener.sources_changed(room)
        return allocation

    async def release(self, room: str, endpoint_id: str) -> None:
        """Expire a caller's or a room's mixer endpoint (unknown ones: nothing happens)."""
        kind = self.endpoints.pop((room, endpoint_id), None)
        await self._expire(room, endpoint_id)
        if kind == "caller" and self.listener is not None:
            self.listener.sources_changed(room)

    async def _expire(self, room: str, endpoint_id: str) -> None:
        try:
            await self._call(self.bridge.expire(room, endpoint_id))
        except Exception:
            log.exception("room %s: expiring endpoint %s failed", room, endpoint_id)

    async def _call(self, call: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wait_for(call, self.timeout)
