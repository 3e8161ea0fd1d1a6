"""RTCP statistics per RFC 3550 appendices A.1, A.3 and A.8, sans-I/O.

``ReceiverStats`` follows one remote source: sequence validation and wrap counting (A.1),
expected / lost / fraction lost (A.3), interarrival jitter (A.8) and the LSR/DLSR pair from
its sender reports. ``SenderStats`` counts what we send for our SR. ``RtcpStats`` puts both
together for one RTP session and builds the compound report (SR or RR, plus SDES CNAME)
that a PBX expects every few seconds.

Time comes in as ``now`` (monotonic seconds) and, for NTP timestamps only, ``wall`` (Unix
seconds). Nothing here reads a clock.
"""

from __future__ import annotations

from .rtcp import (
    SDES_CNAME,
    RtcpByePacket,
    RtcpPacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSdesChunk,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    ntp_from_unix,
    ntp_middle32,
    serialize_compound,
)

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class ReceiverStats:
    """What we know about one remote source (RFC 3550 A.1 ``source`` structure)."""

    __slots__ = (
        "_last_sr_time",
        "_min_sequential",
        "_started",
        "_transit",
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "last_sr",
        "max_seq",
        "probation",
        "received",
        "received_prior",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int, min_sequential: int = MIN_SEQUENTIAL) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self._min_sequential = max(1, min_sequential)
        self._started = False
        self.probation = self._min_sequential
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0              # timestamp units, as a float (A.8 keeps it scaled)
        self._transit: int | None = None
        self.last_sr = 0               # middle 32 bits of the last SR NTP timestamp
        self._last_sr_time: float | None = None

    # A.1
    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = self._min_sequential - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # two sequential packets after a big jump: the source restarted
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted below
        self.received += 1
        return True

    def on_packet(self, seq: int, timestamp: int, now: float) -> bool:
        """Account one RTP packet that arrived at ``now``; False while not yet valid."""
        if not self._started:
            # A.1: the first packet starts probation with max_seq = seq - 1
            self._started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
        valid = self._update_seq(seq)
        if valid:
            # A.8: transit time in timestamp units; jitter += (|D| - jitter) / 16
            arrival = int(now * self.clock_rate)
            transit = (arrival - timestamp) & 0xFFFFFFFF
            if self._transit is not None:
                d = transit - self._transit
                # both are mod 2^32: take the short way round
                if d > 0x7FFFFFFF:
                    d -= 1 << 32
                elif d < -0x7FFFFFFF:
                    d += 1 << 32
                self.jitter += (abs(d) - self.jitter) / 16.0
            self._transit = transit
        return valid

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        self.last_sr = ntp_middle32(ntp_timestamp)
        self._last_sr_time = now

    # A.3
    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.received == 0:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received, clamped to the signed 24 bits of a report block."""
        lost = self.expected - self.received
        return max(-(1 << 23), min((1 << 23) - 1, lost))

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate

    def report_block(self, now: float) -> RtcpReportBlock:
        """The report block for this source; starts a new interval for the fraction lost."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        if self._last_sr_time is None:
            lsr = dlsr = 0
        else:
            lsr = self.last_sr
            dlsr = int((now - self._last_sr_time) * 65536) & 0xFFFFFFFF
        return RtcpReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.cumulative_lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )


class SenderStats:
    """What we sent, for the sender info of our SR."""

    __slots__ = ("clock_rate", "last_send_time", "last_timestamp", "octet_count", "packet_count")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.packet_count = 0
        self.octet_count = 0
        self.last_timestamp = 0
        self.last_send_time: float | None = None

    def on_sent(self, timestamp: int | None, payload_size: int, now: float) -> None:
        """Count a packet; ``timestamp`` None for packets off the media clock (DTMF events,
        whose timestamp is the event start) so that the SR extrapolation stays right."""
        self.packet_count += 1
        self.octet_count += payload_size
        if timestamp is not None:
            self.last_timestamp = timestamp
            self.last_send_time = now

    def sender_info(self, now: float, wall: float) -> RtcpSenderInfo:
        """NTP time ``wall`` and the RTP timestamp that corresponds to it (RFC 3550 6.4.1)."""
        rtp_ts = self.last_timestamp
        if self.last_send_time is not None:
            rtp_ts += int((now - self.last_send_time) * self.clock_rate)
        return RtcpSenderInfo(
            ntp_timestamp=ntp_from_unix(wall),
            rtp_timestamp=rtp_ts & 0xFFFFFFFF,
            packet_count=self.packet_count & 0xFFFFFFFF,
            octet_count=self.octet_count & 0xFFFFFFFF,
        )


class RtcpStats:
    """RTCP state of one RTP session: our SSRC, the remote sources, the report schedule."""

    MAX_SOURCES = 8

    def __init__(
        self, ssrc: int, clock_rate: int, cname: str, interval: float = 5.0
    ) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.cname = cname
        self.interval = interval
        self.sender = SenderStats(clock_rate)
        self.sources: dict[int, ReceiverStats] = {}
        self.rtt: float | None = None          # seconds, from the last report about us
        self.remote_bye = False
        self.next_report: float | None = None
        self._sent_since_report = False

    def on_rtp_received(self, ssrc: int, seq: int, timestamp: int, now: float) -> None:
        source = self.sources.get(ssrc)
        if source is None:
            if len(self.sources) >= self.MAX_SOURCES:
                # keep the table bounded: forget the source that has received least
                del self.sources[min(self.sources, key=lambda s: self.sources[s].received)]
            source = self.sources[ssrc] = ReceiverStats(ssrc, self.clock_rate)
        source.on_packet(seq, timestamp, now)

    def on_rtp_sent(self, timestamp: int | None, payload_size: int, now: float) -> None:
        self.sender.on_sent(timestamp, payload_size, now)
        self._sent_since_report = True

    def on_rtcp(self, packets: list[RtcpPacket], now: float, wall: float) -> None:
        """Take in a parsed compound packet from the remote side."""
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                source = self.sources.get(packet.ssrc)
                if source is not None:
                    source.on_sender_report(packet.sender_info.ntp_timestamp, now)
                self._take_reports(packet.reports, wall)
            elif isinstance(packet, RtcpRrPacket):
                self._take_reports(packet.reports, wall)
            elif isinstance(packet, RtcpByePacket) and any(
                s in self.sources for s in packet.sources
            ):
                self.remote_bye = True

    def _take_reports(self, reports: list[RtcpReportBlock], wall: float) -> None:
        for block in reports:
            if block.ssrc == self.ssrc and block.lsr:
                # RFC 3550 6.4.1: RTT = A - LSR - DLSR in 1/65536 s
                arrival = ntp_middle32(ntp_from_unix(wall))
                rtt_units = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
                if rtt_units < 0x80000000:
                    self.rtt = rtt_units / 65536.0

    def report_due(self, now: float) -> bool:
        if self.next_report is None:
            self.next_report = now + self.interval / 2   # the first report comes early
        return now >= self.next_report

    def get_timer(self) -> float | None:
        return self.next_report

    def build_report(self, now: float, wall: float, bye: bool = False) -> bytes:
        """The compound packet to send now: SR (if we sent since the last one) or RR, SDES
        CNAME, and BYE when ``bye``. Starts the next report interval."""
        blocks = [s.report_block(now) for s in self.sources.values() if s.received][:31]
        first: RtcpPacket
        if self._sent_since_report:
            first = RtcpSrPacket(self.ssrc, self.sender.sender_info(now, wall), blocks)
        else:
            first = RtcpRrPacket(self.ssrc, blocks)
        sdes = RtcpSdesPacket([RtcpSdesChunk(self.ssrc, [(SDES_CNAME, self.cname.encode())])])
        packets: list[RtcpPacket] = [first, sdes]
        if bye:
            packets.append(RtcpByePacket([self.ssrc]))
        self._sent_since_report = False
        self.next_report = now + self.interval
        return serialize_compound(packets)
