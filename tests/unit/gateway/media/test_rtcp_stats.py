"""RFC 3550 A.1/A.3/A.8 statistics and the reports built from them (fake clock)."""

from __future__ import annotations

import pytest

from gateway.media.rtcp import (
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
)
from gateway.media.stats import ReceiverStats, RtcpStats, SenderStats

CLOCK = 8000


def feed(stats: ReceiverStats, seqs: list[int], t0: float = 100.0, ts0: int = 1000) -> None:
    """Packets sent every 20 ms (timestamp 160 apart), arriving exactly on time."""
    for seq in seqs:
        k = (seq - seqs[0]) & 0xFFFF
        stats.on_packet(seq & 0xFFFF, ts0 + 160 * k, t0 + 0.02 * k)


def test_no_loss() -> None:
    s = ReceiverStats(1, CLOCK)
    feed(s, list(range(500, 600)))
    # A.1 probation: the first packet only starts the source
    assert s.received == 99 and s.expected == 99
    block = s.report_block(now=102.0)
    assert (block.fraction_lost, block.packets_lost) == (0, 0)
    assert block.highest_sequence == 599
    assert block.jitter == 0


def test_loss_fraction_and_cumulative() -> None:
    s = ReceiverStats(1, CLOCK)
    seqs = [q for q in range(0, 200) if q % 10 != 5]       # lose one in ten
    feed(s, seqs)
    block = s.report_block(now=105.0)
    assert block.packets_lost == 20
    assert block.fraction_lost == (20 << 8) // 199          # 25
    # second interval with no loss: fraction 0, cumulative unchanged
    for k, seq in enumerate(range(200, 300)):
        s.on_packet(seq, 1000 + 160 * seq, 110.0 + 0.02 * k)
    block = s.report_block(now=112.0)
    assert (block.fraction_lost, block.packets_lost) == (0, 20)


def test_sequence_wrap_extends_highest() -> None:
    s = ReceiverStats(1, CLOCK)
    feed(s, list(range(65500, 65536)) + list(range(0, 50)))
    block = s.report_block(now=101.0)
    assert block.highest_sequence == (1 << 16) + 49
    assert block.packets_lost == 0
    assert s.cycles == 1 << 16


def test_duplicates_make_loss_negative() -> None:
    s = ReceiverStats(1, CLOCK)
    feed(s, list(range(10)))
    s.on_packet(5, 1000 + 160 * 5, 100.3)
    assert s.cumulative_lost == -1


def test_reordering_is_not_loss() -> None:
    s = ReceiverStats(1, CLOCK)
    order = [0, 1, 2, 4, 3, 5, 7, 6, 8, 9]
    for q in order:
        s.on_packet(q, 160 * q, 10.0 + 0.02 * q)
    assert s.cumulative_lost == 0
    assert s.extended_max == 9


def test_source_restart_after_big_jump() -> None:
    s = ReceiverStats(1, CLOCK)
    feed(s, list(range(100)))
    assert not s.on_packet(20000, 0, 200.0)           # one jump: held as bad_seq
    assert s.on_packet(20001, 160, 200.02)            # sequential: source restarted
    assert s.base_seq == 20001 and s.received == 1


def test_jitter_a8() -> None:
    s = ReceiverStats(1, CLOCK)
    # arrivals alternate 0 and +10 ms late: |D| = 80 units each step after the first
    t = 50.0
    for k in range(400):
        late = 0.010 if k % 2 else 0.0
        s.on_packet(k, 160 * k, t + 0.02 * k + late)
    assert s.jitter == pytest.approx(80.0, rel=0.02)
    assert s.jitter_ms == pytest.approx(10.0, rel=0.02)
    assert s.report_block(60.0).jitter in (78, 79, 80)


def test_lsr_dlsr() -> None:
    s = ReceiverStats(1, CLOCK)
    feed(s, list(range(10)))
    ntp = ntp_from_unix(1_700_000_000.25)
    s.on_sender_report(ntp, now=200.0)
    block = s.report_block(now=201.5)
    assert block.lsr == ntp_middle32(ntp)
    assert block.dlsr == int(1.5 * 65536)


def test_sender_info_extrapolates_rtp_timestamp() -> None:
    s = SenderStats(CLOCK)
    for k in range(50):
        s.on_sent(1000 + 160 * k, 160, 10.0 + 0.02 * k)
    s.on_sent(None, 4, 11.0)                          # a DTMF packet: counted, no timestamp
    info = s.sender_info(now=10.98 + 0.5, wall=1_700_000_000.0)
    assert info == RtcpSenderInfo(
        ntp_timestamp=ntp_from_unix(1_700_000_000.0),
        rtp_timestamp=1000 + 160 * 49 + 4000,
        packet_count=51,
        octet_count=50 * 160 + 4,
    )


def test_rtcp_stats_builds_rr_then_sr_with_cname() -> None:
    stats = RtcpStats(ssrc=0xAAAA, clock_rate=CLOCK, cname="leg@switchboard", interval=5.0)
    assert not stats.report_due(0.0)
    assert stats.get_timer() == 2.5
    for k in range(100):
        if k != 50:
            stats.on_rtp_received(0xBBBB, k, 160 * k, 1.0 + 0.02 * k)
    assert stats.report_due(3.0)
    rr, sdes = parse_compound(stats.build_report(3.0, 1_700_000_000.0))
    assert isinstance(rr, RtcpRrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert rr.ssrc == 0xAAAA
    (block,) = rr.reports
    assert (block.ssrc, block.packets_lost, block.highest_sequence) == (0xBBBB, 1, 99)
    assert sdes.chunks[0].cname == "leg@switchboard"
    assert stats.get_timer() == 8.0 and not stats.report_due(7.9)

    stats.on_rtp_sent(5000, 160, 4.0)
    sr, _ = parse_compound(stats.build_report(8.0, 1_700_000_005.0))
    assert isinstance(sr, RtcpSrPacket)
    assert sr.sender_info.packet_count == 1 and sr.sender_info.octet_count == 160
    assert sr.sender_info.rtp_timestamp == 5000 + 4 * CLOCK
    assert sr.reports[0].fraction_lost == 0         # nothing new since the last report


def test_rtcp_stats_rtt_and_lsr_from_remote_sr() -> None:
    stats = RtcpStats(ssrc=0xAAAA, clock_rate=CLOCK, cname="x")
    for k in range(10):
        stats.on_rtp_received(0xBBBB, k, 160 * k, 1.0 + 0.02 * k)
    remote_ntp = ntp_from_unix(1_700_000_000.0)
    remote_sr = RtcpSrPacket(0xBBBB, RtcpSenderInfo(remote_ntp, 0, 10, 1600))
    stats.on_rtcp([remote_sr], now=2.0, wall=1_700_000_000.0)
    rr = parse_compound(stats.build_report(2.25, 1_700_000_000.25))[0]
    assert isinstance(rr, RtcpRrPacket)
    assert rr.reports[0].lsr == ntp_middle32(remote_ntp)
    assert rr.reports[0].dlsr == 65536 // 4

    # the remote reports about us: we sent an SR at wall 1000.0, it held it 0.5 s,
    # its report reaches us at 1000.8: RTT 0.3 s
    ours = ntp_middle32(ntp_from_unix(1_700_001_000.0))
    reply = RtcpRrPacket(0xBBBB, [RtcpReportBlock(0xAAAA, lsr=ours, dlsr=65536 // 2)])
    stats.on_rtcp([reply], now=10.0, wall=1_700_001_000.8)
    assert stats.rtt == pytest.approx(0.3, abs=0.001)
