"""The SFU's sans-I/O core: RTP and RTCP of one conference between decryption and encryption.

The I/O side (`bridge/service.py` and the aiortc adapter) feeds decrypted packets in with
`on_rtp` / `on_rtcp`, calls `handle_timer(now)` at `get_timer()`, pulls events with
`next_event()`, and protects and sends whatever the forwarder hands to `send(endpoint_id,
data)`. Nothing here reads a clock, opens a socket or imports asyncio.

What happens to a packet (the fast path works on bytes, without a packet object):

- RTP from an SSRC the endpoint did not declare is dropped (logged once per SSRC). RTX
  (RFC 4588) from a declared RTX SSRC is unwrapped; RTX padding (bandwidth probes) only
  counts for transport-cc.
- Audio of an endpoint the focus muted is dropped; other audio feeds the dominant speaker
  with its RFC 6464 level and goes to every other endpoint. Video goes to the receivers that
  have the sender in their last-N set (`lastn.py`); screen shares go to everyone.
- Each receiver's policy limits that: `receive` "audio" gets only audio sources, "none"
  nothing (and no key frame is asked for on its behalf), and endpoints of the same non-empty
  `group` (a gateway's phone callers and its room mixer) get nothing from each other. All of
  it is decided in `_route`, never per packet.
- A receiver that starts getting a stream (a join, a last-N switch, the end of a forced
  mute) gets it from a key frame on: the forwarder asks the sender with a PLI (at most once
  per `keyframe_interval` per source) and holds that receiver's copy back until a key frame
  starts (VP8 and H.264 are recognised; other payload types are not held). Sequence numbers
  towards each receiver stay continuous: a per-(receiver, source) offset hides the packets
  it did not get. SSRCs and RTP timestamps stay the sender's.
- Transport-cc: the transport-wide sequence number is rewritten per receiver with that
  receiver's own counter, and the forwarder sends transport-cc feedback to every sender for
  what it received, so the sender's bandwidth estimation runs against the bridge. The
  feedback receivers send about what they got is counted and ignored (no send-side
  estimation towards receivers yet). The MID extension is blanked (turned into padding):
  the sender's MID means nothing on the receiver's session.

RTCP is handled by the Forwarder's base class, `ForwarderRtcp` (`bridge/forwarder_rtcp.py`):
generic NACKs are answered from a per-source history (plain retransmissions on the original
SSRC with the receiver's sequence numbers, not RTX); what is not in the history is asked of
the sender with a NACK of our own. PLI and FIR from a receiver become a PLI to the sender
(rate-limited). A sender's SR goes to the receivers without its report blocks; the receivers'
RRs give each endpoint's RTT (against the SRs we forwarded) and downlink loss. The forwarder
sends each sender RRs for its sources, and REMB with the lowest estimate its video receivers
reported, if they send REMB. Malformed RTCP is counted, never raised.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge import rtp as wire
from bridge.api import (
    BridgeEvent,
    DominantSpeakerChanged,
    MediaSource,
    ReceivePolicy,
    ReceiveSource,
)
from bridge.fanout import fan_out
from bridge.forwarder_rtcp import CNAME, MAX_NACK_ITEMS, ForwarderRtcp
from bridge.lastn import effective_last_n, select_video_senders
from bridge.levels import DominantSpeaker, SpeakerSettings
from bridge.rtcp_feedback import EndpointState, Projection, SourceState
from bridge.rtp import RTP_HEADER, scan_extensions

__all__ = [
    "CNAME",
    "MAX_LOGGED_SSRCS",
    "MAX_NACK_ITEMS",
    "RECEIVE_POLICIES",
    "Forwarder",
    "ForwarderRtcp",
    "ForwarderSettings",
    "OutputFn",
    "SendFn",
]

log = logging.getLogger(__name__)

SendFn = Callable[[str, bytes], None]  # (endpoint_id, plain RTP or RTCP) -> protect and send
#: (packet, seq, twcc_pos, twcc) -> rewrite a copy as wire.with_sequence does, protect, send:
#: one receiver's way out for forwarded RTP (the bridge's browser transports have one in C,
#: native/_egress.c Sink.forward); an endpoint without one gets send() with the copy
OutputFn = Callable[[bytes, int, int, int], object]

MAX_LOGGED_SSRCS = 32  # undeclared SSRCs remembered per endpoint (logged once each)
RECEIVE_POLICIES: tuple[ReceivePolicy, ...] = ("all", "audio", "none")


@dataclass(frozen=True, slots=True)
class ForwarderSettings:
    last_n: int = 20  # -1 = unlimited
    audio_level_ext_id: int = 1  # ids from docs/signaling.md
    transport_cc_ext_id: int = 3
    mid_ext_id: int = 4
    nack_history: int = 512  # packets kept per video source for retransmission
    rtcp_interval: float = 1.0
    dominant_speaker_interval: float = 0.3
    # Beyond the interface first agreed; the defaults follow docs/signaling.md.
    stats_interval: float = 2.0
    transport_cc_interval: float = 0.1
    keyframe_interval: float = 0.3  # PLIs to one source at most this often
    vp8_pt: int = 96
    h264_pt: int = 102
    rtx_apt: tuple[tuple[int, int], ...] = ((97, 96), (103, 102))  # RTX pt -> media pt
    remb_timeout: float = 5.0  # a receiver's REMB counts this long
    speaker: SpeakerSettings = field(default_factory=SpeakerSettings)


class Forwarder(ForwarderRtcp):
    def __init__(self, conference_id: str, settings: ForwarderSettings, send: SendFn) -> None:
        self.conference_id = conference_id
        self.settings = settings
        self._send = send
        self._ssrc = zlib.crc32(f"bridge:{conference_id}".encode()) or 1  # our RTCP SSRC
        self._level_id = settings.audio_level_ext_id
        self._twcc_id = settings.transport_cc_ext_id
        self._mid_id = settings.mid_ext_id
        self._rtx_apt = dict(settings.rtx_apt)
        self._vp8, self._h264 = settings.vp8_pt, settings.h264_pt
        self._endpoints: dict[str, EndpointState] = {}  # join order
        self._sources: dict[int, SourceState] = {}
        self._rtx: dict[int, SourceState] = {}
        self._speakers = DominantSpeaker(settings.speaker)
        self._events: deque[BridgeEvent] = deque()
        self._now = 0.0
        self._timers_started = False
        self._next_twcc = self._next_speaker = self._next_rtcp = self._next_stats = 0.0
        self._stats_at = 0.0
        self._deadline = 0.0
        self._c: dict[str, int] = dict.fromkeys((
            "packets_dropped", "dropped_unknown_ssrc", "dropped_forced_off",
            "dropped_unknown_endpoint", "rtp_malformed", "rtx_padding", "rtx_duplicate",
            "rtcp_in", "rtcp_malformed", "nacks_received", "retransmitted", "nacks_sent",
            "keyframe_requests_received", "plis_sent", "twcc_feedback_ignored"), 0)
        self._packets_in = 0
        self._packets_out = 0

    # --- endpoints and sources (from the focus, through the service) -------------------

    def add_endpoint(self, endpoint_id: str, receive: ReceivePolicy = "all") -> None:
        if endpoint_id in self._endpoints:
            return
        ep = self._endpoints[endpoint_id] = EndpointState(endpoint_id,
                                                         self._speakers.add(endpoint_id))
        ep.receive = receive
        log.info("conference %s: endpoint %s added", self.conference_id, endpoint_id)
        self._route()

    def remove_endpoint(self, endpoint_id: str) -> None:
        ep = self._endpoints.pop(endpoint_id, None)
        if ep is None:
            return
        for src in ep.sources:
            self._drop_source(src)
        ep.sources = ()
        for p in ep.projections.values():
            if p.attached:
                p.source.out = tuple(q for q in p.source.out if q is not p)
        ep.projections.clear()
        if self._speakers.remove(endpoint_id):
            self._speaker_changed()
        log.info("conference %s: endpoint %s removed", self.conference_id, endpoint_id)
        self._route()

    def set_sources(self, endpoint_id: str, sources: tuple[MediaSource, ...]) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            log.warning("conference %s: sources for unknown endpoint %s", self.conference_id,
                        endpoint_id)
            return
        old = {src.ssrc: src for src in ep.sources}
        kept: list[SourceState] = []
        for media in sources:
            owner = self._sources.get(media.ssrc) or self._rtx.get(media.ssrc)
            if (owner is not None and owner.endpoint is not ep) or any(
                    s.ssrc == media.ssrc for s in kept):
                log.warning("conference %s: endpoint %s declares SSRC %d already in use: "
                            "ignored", self.conference_id, endpoint_id, media.ssrc)
                continue
            src = old.pop(media.ssrc, None)
            if src is not None and src.media.kind != media.kind:
                self._drop_source(src)
                src = None
            if src is None:
                src = SourceState(media, ep, self.settings.nack_history)
                self._sources[media.ssrc] = src
            else:
                if src.media.rtx_ssrc is not None:
                    self._rtx.pop(src.media.rtx_ssrc, None)
                src.media = media
                src.screen = media.video_type == "screen"
            if media.rtx_ssrc is not None and not src.audio:
                if media.rtx_ssrc in self._sources or self._rtx.get(
                        media.rtx_ssrc, src).endpoint is not ep:
                    log.warning("conference %s: endpoint %s: RTX SSRC %d in use: ignored",
                                self.conference_id, endpoint_id, media.rtx_ssrc)
                else:
                    self._rtx[media.rtx_ssrc] = src
            kept.append(src)
        for src in old.values():
            self._drop_source(src)
        ep.sources = tuple(kept)
        log.info("conference %s: endpoint %s sends %s", self.conference_id, endpoint_id,
                 ", ".join(f"{s.media.kind}:{s.ssrc}" for s in kept) or "nothing")
        self._route()

    def set_audio_forced_off(self, endpoint_id: str, off: bool) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is None or ep.audio_forced_off == off:
            return
        ep.audio_forced_off = off
        if off:  # receivers resume with continuous sequence numbers when it ends
            for src in ep.sources:
                if src.audio:
                    for p in src.out:
                        p.suspend()
        log.info("conference %s: endpoint %s audio forced %s", self.conference_id,
                 endpoint_id, "off" if off else "on")

    def set_output(self, endpoint_id: str, output: OutputFn | None) -> None:
        """Where the endpoint's forwarded RTP goes from now on (None: `send`)."""
        ep = self._endpoints.get(endpoint_id)
        if ep is not None:
            ep.output = output

    def set_last_n(self, endpoint_id: str, n: int) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is not None and ep.last_n != n:
            ep.last_n = n
            self._route()

    def set_receive(self, endpoint_id: str, receive: ReceivePolicy | None,
                    group: str | None) -> None:
        """What the endpoint is sent ("all", "audio" or "none"), and its group: endpoints of
        the same non-empty group get nothing from each other. None leaves a value as it is;
        group "" leaves the group."""
        if receive is not None and receive not in RECEIVE_POLICIES:
            raise ValueError(f"receive policy {receive!r} is not one of {RECEIVE_POLICIES}")
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            return
        policy = (receive or ep.receive, ep.group if group is None else group)
        if policy != (ep.receive, ep.group):
            ep.receive, ep.group = policy
            log.info("conference %s: endpoint %s receives %s, group %r", self.conference_id,
                     endpoint_id, ep.receive, ep.group)
            self._route()

    def receive_sources(self, endpoint_id: str) -> tuple[ReceiveSource, ...]:
        """What `endpoint_id` may be sent, as its receive policy and group allow: the
        sources its offer must hold. Last-N is not applied (it changes with the speaker)."""
        r = self._endpoints.get(endpoint_id)
        receive, group = ("all", "") if r is None else (r.receive, r.group)
        if receive == "none":
            return ()
        return tuple(ReceiveSource(src.media, src.ssrc, src.media.rtx_ssrc)
                     for ep in self._endpoints.values()
                     if ep.id != endpoint_id and not (group and ep.group == group)
                     for src in ep.sources if receive == "all" or src.audio)

    def _drop_source(self, src: SourceState) -> None:
        if self._sources.get(src.ssrc) is src:
            del self._sources[src.ssrc]
        if src.media.rtx_ssrc is not None and self._rtx.get(src.media.rtx_ssrc) is src:
            del self._rtx[src.media.rtx_ssrc]
        for ep in self._endpoints.values():
            p = ep.projections.get(src.ssrc)
            if p is not None and p.source is src:
                del ep.projections[src.ssrc]
        src.out = ()
        if src.history is not None:
            src.history.clear()

    def _route(self) -> None:
        """Attach and detach (receiver, source) pairs after anything that changes who gets
        what: endpoints, sources, last-N, the dominant speaker, receive policies and groups.
        The per-packet path only walks `src.out`, so every policy is decided here."""
        recent = self._speakers.recent
        endpoints = self._endpoints.values()
        cameras = [ep for ep in endpoints
                   if any(not s.audio and not s.screen for s in ep.sources)]
        for r in endpoints:
            receive, group = r.receive, r.group
            chosen: frozenset[str] = frozenset()
            if receive == "all":
                n = effective_last_n(self.settings.last_n, r.last_n)
                chosen = select_video_senders(
                    r.id, n, recent,
                    [ep.id for ep in cameras if not group or ep.group != group])
            for ep in endpoints:
                if ep is r:
                    continue
                closed = receive == "none" or (group != "" and ep.group == group)
                for src in ep.sources:
                    want = not closed and (src.audio or (
                        receive == "all" and (src.screen or ep.id in chosen)))
                    p = r.projections.get(src.ssrc)
                    if want and (p is None or not p.attached):
                        if p is None:
                            p = r.projections[src.ssrc] = Projection(r, src)
                        p.attached = True
                        src.out = (*src.out, p)
                        if not src.audio:
                            self._request_keyframe(src, self._now)
                    elif not want and p is not None and p.attached:
                        p.suspend()
                        p.attached = False
                        src.out = tuple(q for q in src.out if q is not p)

    # --- RTP ---------------------------------------------------------------------------

    def on_rtp(self, endpoint_id: str, data: bytes, now: float) -> None:
        """Decrypted RTP from an endpoint."""
        self._now = now
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self._c["rtp_malformed"] += 1
            return
        b0, _, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        src = self._sources.get(ssrc)
        if src is None or src.endpoint.id != endpoint_id:
            self._other_rtp(endpoint_id, ssrc, data, now)
            return
        ep = src.endpoint
        ep.in_bytes += len(data)
        self._packets_in += 1
        level = twcc = -1
        if b0 & 0x10:
            level, twcc, mid_start, mid_end = scan_extensions(
                data, self._level_id, self._twcc_id, self._mid_id)
            if twcc >= 0:
                ep.twcc.record((data[twcc] << 8) | data[twcc + 1], now)
            if mid_start >= 0:
                data = wire.blank(data, mid_start, mid_end)
        ext = src.rx.on_packet(seq, ts, len(data), now)
        if src.audio:
            if ep.audio_forced_off:
                self._c["dropped_forced_off"] += 1
                return
            if level >= 0:
                speaker = ep.speaker
                speaker.level_sum += data[level] & 0x7F
                speaker.count += 1
        elif src.history is not None:
            src.history.put(ext, data)
        if src.out:
            self._fan_out(src, data, ext, seq, twcc, now)

    def _fan_out(self, src: SourceState, data: bytes, ext: int, seq: int, twcc: int,
                 now: float) -> None:
        sent, keyframe_wanted = fan_out(src, data, ext, seq, twcc, self._send, self._vp8,
                                        self._h264)
        if keyframe_wanted:
            self._request_keyframe(src, now)
        self._packets_out += sent

    def _other_rtp(self, endpoint_id: str, ssrc: int, data: bytes, now: float) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            self._c["dropped_unknown_endpoint"] += 1
            return
        src = self._rtx.get(ssrc)
        if src is not None and src.endpoint is ep:
            self._on_rtx(src, data, now)
            return
        self._c["dropped_unknown_ssrc"] += 1
        if ssrc not in ep.unknown_ssrcs and len(ep.unknown_ssrcs) < MAX_LOGGED_SSRCS:
            ep.unknown_ssrcs.add(ssrc)
            log.warning("conference %s: endpoint %s sends undeclared SSRC %d: dropped",
                        self.conference_id, endpoint_id, ssrc)

    def _on_rtx(self, src: SourceState, data: bytes, now: float) -> None:
        ep = src.endpoint
        ep.in_bytes += len(data)
        self._packets_in += 1
        _, twcc, mid_start, mid_end = scan_extensions(data, -1, self._twcc_id, self._mid_id)
        if twcc >= 0:
            ep.twcc.record((data[twcc] << 8) | data[twcc + 1], now)
        apt = self._rtx_apt.get(data[1] & 0x7F)
        try:
            original = wire.unwrap_rtx(data, src.ssrc, apt) if apt is not None else None
        except ValueError:
            self._c["rtp_malformed"] += 1
            return
        if original is None:  # padding for bandwidth probing, or an unknown RTX type
            self._c["rtx_padding"] += 1
            return
        if mid_start >= 0:  # the header is the RTX packet's, so the offsets hold
            original = wire.blank(original, mid_start, mid_end)
        _, _, seq, ts, _ = RTP_HEADER.unpack_from(original)
        ext = src.rx.on_packet(seq, ts, len(original), now)
        if src.history is None or src.history.get(ext) is not None:
            self._c["rtx_duplicate"] += 1
            return
        src.history.put(ext, original)
        if src.out:
            self._fan_out(src, original, ext, seq, twcc, now)

    # --- RTCP, PLIs and periodic reports: in ForwarderRtcp (bridge/forwarder_rtcp.py) --

    # --- timers ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if not self._endpoints:
            return None
        return self._deadline if self._timers_started else 0.0

    def handle_timer(self, now: float) -> None:
        self._now = now
        cfg = self.settings
        if not self._timers_started:
            self._timers_started = True
            self._stats_at = now
            self._next_twcc = now + cfg.transport_cc_interval
            self._next_speaker = now + cfg.dominant_speaker_interval
            self._next_rtcp = now + cfg.rtcp_interval
            self._next_stats = now + cfg.stats_interval
        if now >= self._next_twcc:
            self._next_twcc = now + cfg.transport_cc_interval
            self._send_transport_cc()
        if now >= self._next_speaker:
            self._next_speaker = now + cfg.dominant_speaker_interval
            if self._speakers.tick(now):
                self._speaker_changed()
                self._route()
        if now >= self._next_rtcp:
            self._next_rtcp = now + cfg.rtcp_interval
            self._send_reports(now)
        if now >= self._next_stats:
            self._next_stats = now + cfg.stats_interval
            self._emit_stats(now)
        self._deadline = min(self._next_twcc, self._next_speaker, self._next_rtcp,
                             self._next_stats)

    def next_event(self) -> BridgeEvent | None:
        return self._events.popleft() if self._events else None

    def _speaker_changed(self) -> None:
        dominant = self._speakers.dominant
        previous = tuple(e for e in self._speakers.recent if e != dominant)
        log.info("conference %s: dominant speaker %s", self.conference_id, dominant)
        self._events.append(DominantSpeakerChanged(self.conference_id, dominant, previous))


    # --- figures -----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        c = self._c
        out = {
            "endpoints": len(self._endpoints),
            "sources": len(self._sources),
            "rtx_sources": len(self._rtx),
            "projections": sum(len(s.out) for s in self._sources.values()),
            "history_packets": sum(len(s.history) for s in self._sources.values()
                                   if s.history is not None),
            "twcc_pending": sum(len(ep.twcc) for ep in self._endpoints.values()),
            "speakers": len(self._speakers),
            "packets_in": self._packets_in,
            "packets_out": self._packets_out,
        }
        out.update(c)
        out["packets_dropped"] = (c["dropped_unknown_ssrc"] + c["dropped_forced_off"]
                                  + c["dropped_unknown_endpoint"] + c["rtp_malformed"])
        return out
