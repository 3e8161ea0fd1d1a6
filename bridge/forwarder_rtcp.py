"""The forwarder's RTCP side: RTCP from the endpoints, and what the bridge sends them on its
timers (transport-cc feedback, RR + SDES, REMB) with the periodic `EndpointStats` events.

`ForwarderRtcp` is the base class of `bridge.forwarder.Forwarder`, whose module docstring
gives the rules. It holds no state of its own: `Forwarder.__init__` sets up the attributes
declared on the class, and it is never used alone. Sans-I/O like the rest of the forwarder.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from typing import TYPE_CHECKING

from bridge import rtp as wire
from bridge.api import BridgeEvent, EndpointStats
from bridge.rtcp_feedback import EndpointState, SourceState, nack_targets
from bridge.rtp import scan_extensions

if TYPE_CHECKING:
    from bridge.forwarder import ForwarderSettings, SendFn

__all__ = ["CNAME", "MAX_NACK_ITEMS", "ForwarderRtcp"]

log = logging.getLogger(__name__)

MAX_NACK_ITEMS = 128  # sequence numbers answered per NACK packet
CNAME = b"switchboard-bridge"


class ForwarderRtcp:
    """RTCP in and out for `Forwarder`, its subclass, which sets up the state declared here."""

    conference_id: str
    settings: ForwarderSettings
    _send: SendFn
    _ssrc: int  # our RTCP SSRC
    _twcc_id: int
    _endpoints: dict[str, EndpointState]
    _sources: dict[int, SourceState]
    _events: deque[BridgeEvent]
    _now: float
    _stats_at: float
    _c: dict[str, int]
    _packets_out: int

    # --- RTCP --------------------------------------------------------------------------

    def on_rtcp(self, endpoint_id: str, data: bytes, now: float) -> None:
        """Decrypted (compound) RTCP from an endpoint. Never raises on bad input."""
        self._now = now
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            self._c["dropped_unknown_endpoint"] += 1
            return
        self._c["rtcp_in"] += 1
        packets, malformed = wire.split_rtcp(data)
        if malformed:
            self._c["rtcp_malformed"] += 1
        for packet_type, count, body in packets:
            try:
                self._rtcp_packet(ep, packet_type, count, body, now)
            except (ValueError, IndexError, struct.error) as err:
                self._c["rtcp_malformed"] += 1
                log.debug("conference %s: endpoint %s: bad RTCP %d: %s", self.conference_id,
                          ep.id, packet_type, err)

    def _rtcp_packet(self, ep: EndpointState, packet_type: int, count: int, body: bytes,
                     now: float) -> None:
        if packet_type == wire.RTCP_SR:
            ssrc, ntp, _, _, _ = wire.parse_sr(body)
            blocks = wire.parse_report_blocks(body, 24, count)
            src = self._sources.get(ssrc)
            if src is not None and src.endpoint is ep:
                src.rx.on_sr(ntp, now)
                started = [p for p in src.out if not p.pending]
                if started:
                    forwarded = wire.build_sr_without_blocks(body)
                    src.sr_times.sent(ntp, now)
                    for p in started:
                        self._send(p.receiver.id, forwarded)
            self._report_blocks(ep, blocks, now)
        elif packet_type == wire.RTCP_RR:
            self._report_blocks(ep, wire.parse_report_blocks(body, 4, count), now)
        elif packet_type == wire.RTCP_RTPFB:
            _, media = wire.parse_feedback_ssrcs(body)
            if count == wire.RTPFB_NACK:
                self._on_nack(ep, media, wire.parse_nack(body), now)
            elif count == wire.RTPFB_TRANSPORT_CC:
                self._c["twcc_feedback_ignored"] += 1
        elif packet_type == wire.RTCP_PSFB:
            _, media = wire.parse_feedback_ssrcs(body)
            if count == wire.PSFB_PLI:
                self._on_keyframe_request(ep, media, now)
            elif count == wire.PSFB_FIR:
                for ssrc in wire.parse_fir(body):
                    self._on_keyframe_request(ep, ssrc, now)
            elif count == wire.PSFB_AFB:
                remb = wire.parse_remb(body)
                if remb is not None:
                    ep.remb, ep.remb_at = remb[0], now

    def _report_blocks(self, ep: EndpointState, blocks: list[wire.ReportBlock],
                       now: float) -> None:
        """Blocks an endpoint sends about the streams it gets from us: RTT and loss."""
        losses = []
        for block in blocks:
            p = ep.projections.get(block.ssrc)
            if p is None:
                continue
            losses.append(block.fraction_lost / 256.0)
            rtt = p.source.sr_times.rtt(block.lsr, block.dlsr, now)
            if rtt is not None:
                ep.rtt = rtt if ep.rtt is None else 0.8 * ep.rtt + 0.2 * rtt
        if losses:
            ep.downlink_loss = max(losses)

    def _on_nack(self, ep: EndpointState, media: int, seqs: list[int], now: float) -> None:
        self._c["nacks_received"] += 1
        p = ep.projections.get(media)
        if p is None or not p.attached or p.pending or p.source.history is None:
            return
        src = p.source
        history = src.history
        assert history is not None
        missing: list[int] = []
        current = src.rx.max_ext - p.offset
        for ext, seq in nack_targets(seqs, current, p.offset, p.start_ext, MAX_NACK_ITEMS):
            data = history.get(ext)
            if data is None:
                missing.append(ext)
                continue
            twcc = scan_extensions(data, -1, self._twcc_id, -1)[1] if data[0] & 0x10 else -1
            if twcc >= 0:
                ep.twcc_seq = (ep.twcc_seq + 1) & 0xFFFF
            ep.out_bytes += len(data)
            self._c["retransmitted"] += 1
            self._packets_out += 1
            self._send(ep.id, wire.with_sequence(data, seq, twcc, ep.twcc_seq))
        fresh = src.upstream_nacks.fresh(missing, now)
        if fresh:  # lost on the way to us: ask the sender (its RTX comes back to everyone)
            self._c["nacks_sent"] += 1
            self._send(src.endpoint.id, wire.build_nack(
                self._ssrc, src.ssrc, [e & 0xFFFF for e in fresh]))

    def _on_keyframe_request(self, ep: EndpointState, media: int, now: float) -> None:
        self._c["keyframe_requests_received"] += 1
        p = ep.projections.get(media)
        if p is not None and p.attached and not p.source.audio:
            self._request_keyframe(p.source, now)

    def _request_keyframe(self, src: SourceState, now: float) -> None:
        if now - src.keyframe_asked < self.settings.keyframe_interval:
            return
        src.keyframe_asked = now
        self._c["plis_sent"] += 1
        self._send(src.endpoint.id, wire.build_pli(self._ssrc, src.ssrc))

    # --- reports and feedback, on the forwarder's timers -------------------------------

    def _send_transport_cc(self) -> None:
        for ep in self._endpoints.values():
            if len(ep.twcc) and ep.sources:
                media = next((s.ssrc for s in ep.sources if not s.audio), ep.sources[0].ssrc)
                for packet in ep.twcc.feedback(self._ssrc, media):
                    self._send(ep.id, packet)

    def _send_reports(self, now: float) -> None:
        """RR (+ SDES) to every sender for its sources; REMB where receivers sent some."""
        sdes = wire.build_sdes_cname(self._ssrc, CNAME)
        for ep in self._endpoints.values():
            blocks = [src.rx.report_block(src.ssrc, now) for src in ep.sources
                      if src.rx.received]
            if not blocks:
                continue
            packet = wire.build_rr(self._ssrc, blocks) + sdes
            video = [s for s in ep.sources if not s.audio]
            fresh = now - self.settings.remb_timeout
            estimates = [p.receiver.remb for s in video for p in s.out
                         if p.receiver.remb and p.receiver.remb_at > fresh]
            if estimates:
                packet += wire.build_remb(self._ssrc, min(estimates), [s.ssrc for s in video])
            self._send(ep.id, packet)

    def _emit_stats(self, now: float) -> None:
        elapsed = now - self._stats_at
        self._stats_at = now
        if elapsed <= 0:
            return
        for ep in self._endpoints.values():
            expected = lost = 0
            jitter = 0.0
            for src in ep.sources:
                e, lo = src.rx.take_interval()
                expected += e
                lost += lo
                jitter = max(jitter, src.rx.jitter * 1000.0 / src.rx.clock_rate)
            self._events.append(EndpointStats(
                self.conference_id, ep.id,
                rtt_ms=None if ep.rtt is None else round(ep.rtt * 1000.0, 1),
                receive_bitrate=int((ep.in_bytes - ep.stat_in) * 8 / elapsed),
                send_bitrate=int((ep.out_bytes - ep.stat_out) * 8 / elapsed),
                loss_fraction=lost / expected if expected > 0 else 0.0,
                extra={"downlink_loss": ep.downlink_loss, "jitter_ms": round(jitter, 1)}))
            ep.stat_in, ep.stat_out = ep.in_bytes, ep.out_bytes
