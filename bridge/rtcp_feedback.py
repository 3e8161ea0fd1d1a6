"""The state behind the bridge's RTCP: what it received, what it keeps, what it reports.

- `PacketHistory`: the last N packets of a video source, by extended sequence number, to
  answer NACKs (RFC 4585) without asking the sender.
- `ReceiveStats`: RFC 3550 appendix A.1/A.3/A.8 statistics of one source as the bridge
  receives it, and the report block the bridge sends back to its sender.
- `TransportCcRecorder`: arrival times of one endpoint's transport-wide sequence numbers and
  the transport-cc feedback built from them
  (draft-holmer-rmcat-transport-wide-cc-extensions-01), so a sender's own bandwidth
  estimation works against the bridge.
- `SrTimes`: when the bridge forwarded which SR, to turn a receiver's LSR/DLSR into an RTT.
- `EndpointState`, `SourceState`, `Projection`: the forwarder's state that all of the above
  hang off; a projection is one source as one receiver gets it (its sequence offset), which
  is what NACKs from that receiver are mapped through.

Everything takes `now` (seconds, monotonic) from the caller.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable

from bridge.api import MediaSource, ReceivePolicy
from bridge.levels import SpeakerState
from bridge.rtp import RTCP_RTPFB, RTPFB_TRANSPORT_CC, report_block

_TWCC_HEAD = struct.Struct("!IIHHI")  # sender SSRC, media SSRC, base seq, count, ref+fb count
_I16 = struct.Struct("!h")
TWCC_MAX_STATUSES = 1000  # per feedback packet: keeps it well under an MTU
TWCC_TICK = 4000  # receive deltas count 250 microseconds
UPSTREAM_NACK_INTERVAL = 0.05  # do not ask a sender for the same packet more often


class PacketHistory:
    """A ring of the last `size` packets, keyed by extended sequence number."""

    __slots__ = ("_data", "_ext", "_size", "count")

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._ext = [-1] * self._size
        self._data: list[bytes | None] = [None] * self._size
        self.count = 0

    def put(self, ext: int, data: bytes) -> None:
        i = ext % self._size
        if self._data[i] is None:
            self.count += 1
        self._ext[i] = ext
        self._data[i] = data

    def get(self, ext: int) -> bytes | None:
        i = ext % self._size
        return self._data[i] if self._ext[i] == ext else None

    def clear(self) -> None:
        self._ext = [-1] * self._size
        self._data = [None] * self._size
        self.count = 0

    def __len__(self) -> int:
        return self.count


class ReceiveStats:
    """One source as received: extended sequence numbers, loss, jitter, the last SR."""

    __slots__ = ("_last_arrival", "_last_ts", "_rr_expected", "_rr_received",
                 "_st_expected", "_st_received", "base_ext", "bytes", "clock_rate", "jitter",
                 "max_ext", "received", "sr_at", "sr_ntp")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.max_ext = -1  # highest extended sequence number; the first packet gets 65536+seq
        self.base_ext = 0
        self.received = 0
        self.bytes = 0
        self.jitter = 0.0  # in timestamp units
        self._last_ts = 0
        self._last_arrival = 0.0
        self._rr_expected = self._rr_received = 0
        self._st_expected = self._st_received = 0
        self.sr_ntp = -1  # NTP timestamp of the last SR from the sender
        self.sr_at = 0.0

    def on_packet(self, seq: int, ts: int, size: int, now: float) -> int:
        """Count one packet; returns its extended sequence number."""
        mx = self.max_ext
        if mx < 0:
            ext = self.max_ext = self.base_ext = seq + 0x10000
            self._last_ts = ts
            self._last_arrival = now
        else:
            d = (seq - mx) & 0xFFFF
            if d < 0x8000:
                ext = self.max_ext = mx + d
            else:
                ext = mx + d - 0x10000
                if ext < self.base_ext:
                    self.base_ext = ext
            # RFC 3550 A.8 with the timestamp difference taken modulo 2^32
            dts = (ts - self._last_ts) & 0xFFFFFFFF
            if dts >= 0x80000000:
                dts -= 0x100000000
            transit = (now - self._last_arrival) * self.clock_rate - dts
            self.jitter += (abs(transit) - self.jitter) / 16.0
            self._last_ts = ts
            self._last_arrival = now
        self.received += 1
        self.bytes += size
        return ext

    @property
    def expected(self) -> int:
        return self.max_ext - self.base_ext + 1 if self.max_ext >= 0 else 0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def on_sr(self, ntp: int, now: float) -> None:
        self.sr_ntp = ntp
        self.sr_at = now

    def report_block(self, ssrc: int, now: float) -> bytes:
        """The RR block about this source; starts a new interval for the fraction lost."""
        expected = self.expected
        interval_expected = expected - self._rr_expected
        interval_lost = interval_expected - (self.received - self._rr_received)
        self._rr_expected, self._rr_received = expected, self.received
        fraction = 0
        if interval_expected > 0 and interval_lost > 0:
            fraction = min(255, (interval_lost << 8) // interval_expected)
        lsr = dlsr = 0
        if self.sr_ntp >= 0:
            lsr = (self.sr_ntp >> 16) & 0xFFFFFFFF
            dlsr = int((now - self.sr_at) * 65536)
        highest = (self.max_ext - 0x10000) if self.max_ext >= 0 else 0
        return report_block(ssrc, fraction, self.lost, highest, int(self.jitter), lsr, dlsr)

    def take_interval(self) -> tuple[int, int]:
        """(expected, lost) since the last call: for the periodic endpoint statistics."""
        expected = self.expected
        interval_expected = expected - self._st_expected
        interval_lost = interval_expected - (self.received - self._st_received)
        self._st_expected, self._st_received = expected, self.received
        return interval_expected, max(0, interval_lost)


def build_transport_cc(sender_ssrc: int, media_ssrc: int, base_seq: int, fb_count: int,
                       reference: int, statuses: list[int], deltas: bytes) -> bytes:
    """One transport-cc feedback packet (RTPFB FMT 15).

    `statuses` per sequence number from `base_seq`: 0 not received, 1 small delta (one
    byte), 2 large or negative delta (two bytes); `deltas` the receive deltas in order;
    `reference` in multiples of 64 ms (24 bits).
    """
    chunks = bytearray()
    n = len(statuses)
    i = 0
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and statuses[i + run] == symbol and run < 0x1FFF:
            run += 1
        if run >= 7:  # run length chunk: T=0, S (2 bits), length (13 bits)
            chunks += ((symbol << 13) | run).to_bytes(2, "big")
            i += run
            continue
        vector = 0xC000  # status vector chunk: T=1, S=1 (two-bit symbols), seven of them
        for k in range(7):
            if i + k < n:
                vector |= statuses[i + k] << (2 * (6 - k))
        chunks += vector.to_bytes(2, "big")
        i += 7
    body = (_TWCC_HEAD.pack(sender_ssrc, media_ssrc, base_seq & 0xFFFF, n,
                            ((reference & 0xFFFFFF) << 8) | (fb_count & 0xFF))
            + bytes(chunks) + deltas)
    pad = -len(body) % 4
    if pad:
        body += b"\x00" * (pad - 1) + bytes((pad,))
        return bytes((0xA0 | RTPFB_TRANSPORT_CC, RTCP_RTPFB)) + (len(body) // 4).to_bytes(
            2, "big") + body
    return bytes((0x80 | RTPFB_TRANSPORT_CC, RTCP_RTPFB)) + (len(body) // 4).to_bytes(
        2, "big") + body


class TransportCcRecorder:
    """Arrival times of one endpoint's transport-wide sequence numbers, until reported."""

    __slots__ = ("_arrivals", "_fb_count", "_max_ext", "_next_base")

    def __init__(self) -> None:
        self._arrivals: dict[int, float] = {}
        self._max_ext = -1
        self._next_base = -1  # the first sequence number the next feedback covers
        self._fb_count = 0

    def record(self, seq: int, now: float) -> None:
        mx = self._max_ext
        if mx < 0:
            ext = self._max_ext = seq + 0x10000
        else:
            d = (seq - mx) & 0xFFFF
            if d < 0x8000:
                ext = self._max_ext = mx + d
            else:
                ext = mx + d - 0x10000
        if ext >= self._next_base:
            self._arrivals[ext] = now

    def __len__(self) -> int:
        return len(self._arrivals)

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """Feedback packets for everything recorded since the last call (usually one)."""
        arrivals = self._arrivals
        if not arrivals:
            return []
        seqs = sorted(arrivals)
        first, last = seqs[0], seqs[-1]
        seq = self._next_base
        if seq < 0 or first - seq > TWCC_MAX_STATUSES:  # start, or after a long outage
            seq = first
        packets = []
        while seq <= last:
            base = seq
            # the reference time is that of the first received packet at or after `base`
            t0 = arrivals.get(base)
            if t0 is None:
                t0 = arrivals[seqs[bisect.bisect_right(seqs, base)]]
            reference = int(t0 / 0.064)
            prev = reference * 256
            statuses: list[int] = []
            deltas = bytearray()
            while seq <= last and len(statuses) < TWCC_MAX_STATUSES:
                arrival = arrivals.get(seq)
                if arrival is None:
                    statuses.append(0)
                else:
                    ticks = round(arrival * TWCC_TICK)
                    delta = ticks - prev
                    if 0 <= delta <= 255:
                        statuses.append(1)
                        deltas.append(delta)
                    elif -32768 <= delta <= 32767 and statuses:
                        statuses.append(2)
                        deltas += _I16.pack(delta)
                    elif statuses:
                        break  # the next packet starts here, with its own reference time
                    else:  # cannot happen: the first delta is under 64 ms
                        statuses.append(2)
                        deltas += _I16.pack(max(-32768, min(32767, delta)))
                    prev = ticks
                seq += 1
            packets.append(build_transport_cc(sender_ssrc, media_ssrc, base, self._fb_count,
                                              reference, statuses, bytes(deltas)))
            self._fb_count = (self._fb_count + 1) & 0xFF
        self._next_base = last + 1
        arrivals.clear()
        return packets


def nack_targets(seqs: list[int], current_out: int, offset: int, start_ext: int,
                 limit: int) -> list[tuple[int, int]]:
    """Map the 16-bit sequence numbers a receiver NACKed to (extended sequence number as
    received, 16-bit number as sent to it).

    `current_out`: the highest extended number sent to it; out = received - `offset`.
    Numbers ahead of `current_out` or before `start_ext` (not sent in this run) are skipped.
    """
    targets = []
    for seq in seqs[:limit]:
        back = (current_out - seq) & 0xFFFF
        if back >= 0x8000:
            continue
        ext = current_out - back + offset
        if ext >= start_ext:
            targets.append((ext, seq & 0xFFFF))
    return targets


class UpstreamNacks:
    """Which packets we asked a sender for, so that several receivers' NACKs for the same
    loss become one request per `interval`."""

    __slots__ = ("_asked", "interval", "keep")

    def __init__(self, interval: float, keep: int = 512) -> None:
        self.interval = interval
        self.keep = keep
        self._asked: dict[int, float] = {}

    def fresh(self, exts: list[int], now: float) -> list[int]:
        asked = self._asked
        if len(asked) > self.keep:
            asked.clear()
        out = [e for e in exts if now - asked.get(e, -1e9) >= self.interval]
        for e in out:
            asked[e] = now
        return out


class SrTimes:
    """When the bridge sent which SR (by the middle 32 bits of its NTP timestamp)."""

    __slots__ = ("_sent",)

    KEEP = 8

    def __init__(self) -> None:
        self._sent: dict[int, float] = {}

    def sent(self, ntp: int, now: float) -> None:
        sent = self._sent
        sent[(ntp >> 16) & 0xFFFFFFFF] = now
        if len(sent) > self.KEEP:
            del sent[next(iter(sent))]

    def rtt(self, lsr: int, dlsr: int, now: float) -> float | None:
        """RFC 3550 section 6.4.1: now - LSR - DLSR, in seconds; None if unknown."""
        if lsr == 0:
            return None
        at = self._sent.get(lsr)
        if at is None:
            return None
        rtt = now - at - dlsr / 65536.0
        return max(0.0, rtt)


# --- the forwarder's state per endpoint, source and (receiver, source) ------------------


class EndpointState:
    """One endpoint: what it sends, what it receives, and the figures about both."""

    __slots__ = ("audio_forced_off", "downlink_loss", "group", "id", "in_bytes", "last_n",
                 "out_bytes", "output", "projections", "receive", "remb", "remb_at", "rtt",
                 "sources", "speaker", "stat_in", "stat_out", "twcc", "twcc_seq",
                 "unknown_ssrcs")

    def __init__(self, endpoint_id: str, speaker: SpeakerState) -> None:
        self.id = endpoint_id
        self.sources: tuple[SourceState, ...] = ()
        self.audio_forced_off = False
        self.last_n = -1  # the endpoint's own wish; -1: none
        self.receive: ReceivePolicy = "all"  # what it is sent: "all" | "audio" | "none"
        self.group = ""  # non-empty: it gets nothing from endpoints of the same group
        self.projections: dict[int, Projection] = {}  # by source SSRC: what it receives
        self.twcc = TransportCcRecorder()  # what it sent us
        self.twcc_seq = 0  # transport-wide sequence number towards it
        self.speaker = speaker  # the forwarder adds audio levels to it
        self.in_bytes = self.out_bytes = self.stat_in = self.stat_out = 0
        self.rtt: float | None = None
        self.downlink_loss = 0.0
        self.remb = 0
        self.remb_at = 0.0
        self.unknown_ssrcs: set[int] = set()
        #: where its forwarded RTP goes, as (packet, seq, twcc_pos, twcc): None, the
        #: forwarder's send() with a rewritten copy (bridge.forwarder.OutputFn)
        self.output: Callable[[bytes, int, int, int], object] | None = None


class SourceState:
    """One source as the bridge receives it, and the receivers it goes to."""

    __slots__ = ("audio", "endpoint", "history", "keyframe_asked", "media", "out", "rx",
                 "screen", "sr_times", "ssrc", "upstream_nacks")

    def __init__(self, media: MediaSource, endpoint: EndpointState, history: int) -> None:
        self.media = media
        self.ssrc = media.ssrc
        self.endpoint = endpoint
        self.audio = media.kind == "audio"
        self.screen = media.video_type == "screen"
        self.rx = ReceiveStats(48000 if self.audio else 90000)
        self.history = None if self.audio else PacketHistory(history)
        self.out: tuple[Projection, ...] = ()  # receivers that get it now
        self.keyframe_asked = -1e9
        self.sr_times = SrTimes()
        self.upstream_nacks = UpstreamNacks(UPSTREAM_NACK_INTERVAL)


class Projection:
    """One source as one receiver gets it: out sequence number = extended in - offset."""

    __slots__ = ("attached", "last_out", "offset", "pending", "receiver", "source",
                 "start_ext")

    def __init__(self, receiver: EndpointState, source: SourceState) -> None:
        self.receiver = receiver
        self.source = source
        self.attached = False  # in source.out
        self.pending = True  # waiting for a start point (a key frame for video)
        self.offset = 0
        self.start_ext = 0  # packets older than the start point are not sent
        self.last_out: int | None = None  # last extended out sequence number, when paused

    def begin(self, ext: int) -> None:
        self.offset = 0 if self.last_out is None else ext - self.last_out - 1
        self.start_ext = ext
        self.pending = False

    def suspend(self) -> None:
        if not self.pending:
            self.last_out = self.source.rx.max_ext - self.offset
            self.pending = True
