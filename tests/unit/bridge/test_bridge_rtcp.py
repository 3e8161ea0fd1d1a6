"""RTCP through the forwarder: NACK, RTX, PLI/FIR, SR/RR, RTT, transport-cc, REMB, garbage."""

from __future__ import annotations

import random
import struct

import pytest
from aiortc.rtp import (
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from fwd_helpers import TWCC_ID, VP8_RTX, Room, audio, is_rtcp, rtp, vp8

from bridge.api import EndpointStats
from bridge.forwarder import ForwarderSettings
from bridge.rtcp_feedback import TransportCcRecorder
from bridge.rtp import build_nack, extension_value, split_rtcp


def nack(media: int, seqs: list[int]) -> bytes:
    return bytes(RtcpRtpfbPacket(fmt=1, ssrc=77, media_ssrc=media, lost=seqs))


def pli(media: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=1, ssrc=77, media_ssrc=media))


def video_room(n: int = 2, **settings: object) -> Room:
    room = Room(n, ForwarderSettings(**settings), video=True)  # type: ignore[arg-type]
    room.take()
    return room


def send_video(room: Room, seqs: range | list[int], keyframe_first: bool = False,
               twcc: bool = False) -> None:
    for i, seq in enumerate(seqs):
        room.fwd.on_rtp("e0", vp8(2000, seq, keyframe=keyframe_first and i == 0,
                                  twcc=seq if twcc else None), room.now)


def rtp_to(room: Room, endpoint_id: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for e, d in room.take() if e == endpoint_id and not is_rtcp(d)]


def test_nack_answered_from_history_with_the_receivers_numbers() -> None:
    room = video_room()
    send_video(room, range(10, 15), keyframe_first=True, twcc=True)
    assert [p.sequence_number for p in rtp_to(room, "e1")] == [10, 11, 12, 13, 14]
    room.fwd.set_last_n("e1", 0)  # paused while the sender goes on
    send_video(room, range(15, 25), twcc=True)
    room.fwd.set_last_n("e1", -1)
    send_video(room, range(25, 28), keyframe_first=True, twcc=True)
    got = rtp_to(room, "e1")
    assert [p.sequence_number for p in got] == [15, 16, 17]  # continuous after the pause
    room.fwd.on_rtcp("e1", nack(2000, [12, 16]), room.now)  # 12 predates the restart
    (raw,) = [d for e, d in room.take() if e == "e1" and not is_rtcp(d)]
    resent = RtpPacket.parse(raw)
    assert resent.ssrc == 2000 and resent.sequence_number == 16
    assert resent.payload == got[1].payload
    twcc = extension_value(raw, TWCC_ID)  # a fresh transport-wide number
    assert twcc is not None and struct.unpack("!H", twcc)[0] == 9
    stats = room.fwd.stats()
    assert stats["nacks_received"] == 1 and stats["retransmitted"] == 1


def test_nack_for_a_packet_we_never_got_goes_to_the_sender_and_rtx_comes_back() -> None:
    room = video_room(3)
    send_video(room, [10, 11, 13], keyframe_first=True)  # 12 was lost on the way to us
    room.take()
    room.fwd.on_rtcp("e1", nack(2000, [12]), room.now)
    room.fwd.on_rtcp("e2", nack(2000, [12]), room.now + 0.01)  # the same loss: asked once
    asked = [RtcpPacket.parse(d)[0] for e, d in room.take() if e == "e0" and is_rtcp(d)]
    assert len(asked) == 1
    assert isinstance(asked[0], RtcpRtpfbPacket) and asked[0].lost == [12]
    original = vp8(2000, 12)
    start = 12
    rtx = rtp(3000, 555, ts=3000 * 12, pt=VP8_RTX, payload=b"\x00\x0c" + original[start:])
    room.fwd.on_rtp("e0", rtx, room.now)
    sent = room.take()
    for receiver in ("e1", "e2"):
        (packet,) = [RtpPacket.parse(d) for e, d in sent if e == receiver]
        assert (packet.ssrc, packet.payload_type, packet.sequence_number) == (2000, 96, 12)
        assert packet.payload == original[start:]
    room.fwd.on_rtp("e0", rtx, room.now)  # a duplicate retransmission is not sent again
    assert room.take() == []
    padding = rtp(3000, 556, pt=VP8_RTX, payload=b"", padding=200)  # a bandwidth probe
    room.fwd.on_rtp("e0", padding, room.now)
    assert room.take() == [] and room.fwd.stats()["rtx_padding"] == 1


def test_pli_and_fir_relayed_to_the_sender_rate_limited() -> None:
    room = video_room(3, keyframe_interval=0.3)
    send_video(room, [1], keyframe_first=True)
    room.now += 1.0
    room.take()
    room.fwd.on_rtcp("e1", pli(2000), room.now)
    room.fwd.on_rtcp("e2", pli(2000), room.now + 0.1)
    fir = (struct.pack("!BBH", 0x84, 206, 4) + struct.pack("!II", 77, 0)
           + struct.pack("!IB3x", 2000, 1))
    room.fwd.on_rtcp("e2", fir, room.now + 0.2)
    sent = room.take()
    plis = [RtcpPacket.parse(d)[0] for e, d in sent if e == "e0"]
    assert len(plis) == 1
    assert isinstance(plis[0], RtcpPsfbPacket) and plis[0].media_ssrc == 2000
    assert all(e == "e0" for e, _ in sent)
    room.fwd.on_rtcp("e2", fir, room.now + 0.31)
    assert [e for e, _ in room.take()] == ["e0"]
    assert room.fwd.stats()["keyframe_requests_received"] == 4


def test_pli_for_a_stream_the_endpoint_does_not_receive_is_ignored() -> None:
    room = video_room(2)
    room.now += 1.0
    room.fwd.on_rtcp("e0", pli(2000), room.now)  # its own stream
    room.fwd.on_rtcp("e1", pli(1000), room.now)  # audio
    room.fwd.on_rtcp("e1", pli(999), room.now)  # nobody's
    assert room.take() == []


def test_sr_forwarded_without_blocks_and_rr_gives_rtt() -> None:
    room = video_room(2)
    room.run_timers()
    send_video(room, range(1, 4), keyframe_first=True)
    room.take()
    ntp = (3_900_000_000 << 32) | 0x12345678
    block = RtcpReceiverInfo(ssrc=2001, fraction_lost=0, packets_lost=0, highest_sequence=5,
                             jitter=0, lsr=0, dlsr=0)
    sr = RtcpSrPacket(ssrc=2000, sender_info=RtcpSenderInfo(ntp, 4242, 3, 300),
                      reports=[block])
    room.fwd.on_rtcp("e0", bytes(sr), room.now)
    (forwarded,) = [RtcpPacket.parse(d)[0] for e, d in room.take() if e == "e1"]
    assert isinstance(forwarded, RtcpSrPacket)
    assert forwarded.ssrc == 2000 and forwarded.reports == []
    assert forwarded.sender_info == sr.sender_info
    lsr = (ntp >> 16) & 0xFFFFFFFF
    rr = RtcpRrPacket(ssrc=2001, reports=[RtcpReceiverInfo(
        ssrc=2000, fraction_lost=64, packets_lost=3, highest_sequence=3, jitter=0, lsr=lsr,
        dlsr=int(0.05 * 65536))])
    room.fwd.on_rtcp("e1", bytes(rr), room.now + 0.15)
    room.now += 2.0
    room.run_timers()
    stats = {e.endpoint_id: e for e in room.events() if isinstance(e, EndpointStats)}
    assert stats["e1"].rtt_ms == pytest.approx(100.0, abs=0.5)
    assert stats["e1"].extra["downlink_loss"] == 0.25
    assert stats["e0"].rtt_ms is None


def test_receiver_reports_to_senders_count_loss() -> None:
    room = Room(2)
    room.run_timers()
    for seq in [1, 2, 3, 4, 5, 8, 9, 10]:  # 6 and 7 lost
        room.fwd.on_rtp("e0", audio(1000, seq), room.now)
    room.now += 1.0
    room.run_timers()
    packets = room.rtcp_for("e0")
    (rr,) = [p for p in packets if isinstance(p, RtcpRrPacket)]
    assert [p for p in packets if isinstance(p, RtcpSdesPacket)]
    (report,) = rr.reports
    assert report.ssrc == 1000
    assert report.highest_sequence == 10
    assert report.packets_lost == 2
    assert report.fraction_lost == 2 * 256 // 10


def parse_twcc(d: bytes) -> tuple[int, list[int], int, list[int]]:
    """An independent reader of transport-cc feedback: base, statuses, reference, deltas."""
    b0, pt, length = struct.unpack_from("!BBH", d)
    assert (b0 & 0x1F, pt) == (15, 205) and len(d) == 4 + 4 * length
    body = d[4:]
    if b0 & 0x20:
        body = body[:-body[-1]]
    _, _, base, count, ref_fb = struct.unpack_from("!IIHHI", body)
    pos = 16
    statuses: list[int] = []
    while len(statuses) < count:
        chunk = struct.unpack_from("!H", body, pos)[0]
        pos += 2
        if not chunk & 0x8000:
            statuses += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:
            statuses += [(chunk >> (2 * (6 - k))) & 3 for k in range(7)]
        else:
            statuses += [(chunk >> (13 - k)) & 1 for k in range(14)]
    statuses = statuses[:count]
    deltas = []
    for s in statuses:
        if s == 1:
            deltas.append(body[pos])
            pos += 1
        elif s == 2:
            deltas.append(struct.unpack_from("!h", body, pos)[0])
            pos += 2
    assert pos == len(body)
    return base, statuses, ref_fb >> 8, deltas


def test_transport_cc_feedback_to_the_sender() -> None:
    room = Room(2)
    room.run_timers()
    arrivals = {1: 0.0, 2: 0.021, 4: 0.040, 5: 0.039, 6: 0.300}  # 3 lost, 5 before 4
    order = [1, 2, 5, 4, 6]
    t0 = room.now
    for i, twcc in enumerate(order):
        room.fwd.on_rtp("e0", audio(1000, i + 1, twcc=twcc), t0 + arrivals[twcc])
    room.now = t0 + 0.31
    room.run_timers()
    feedback = [d for e, d in room.take() if e == "e0" and d[1] == 205]
    assert len(feedback) == 1
    base, statuses, reference, deltas = parse_twcc(feedback[0])
    assert base == 1 and statuses == [1, 1, 0, 1, 2, 2]  # 5 came before 4; 6 late
    t = reference * 0.064
    times = []
    for d in deltas:
        t += d / 4000
        times.append(t)
    expected = [t0 + arrivals[s] for s in (1, 2, 4, 5, 6)]
    assert times == pytest.approx(expected, abs=0.0003)


def test_transport_cc_recorder_long_runs_wraps_and_next_feedback() -> None:
    rec = TransportCcRecorder()
    seqs = [*range(65500, 65536), *range(0, 30)]  # across the wrap, 20 lost in a run
    for i, s in enumerate(seqs):
        if not 10 <= i < 30:
            rec.record(s, 10.0 + 0.001 * i)
    (packet,) = rec.feedback(1, 2)
    base, statuses, _, deltas = parse_twcc(packet)
    assert len(deltas) == len(seqs) - 20
    assert base == 65500 and len(statuses) == len(seqs)
    assert statuses[10:30] == [0] * 20 and statuses.count(1) == len(seqs) - 20
    rec.record(30, 11.0)
    rec.record(29, 11.0)  # already reported: not again
    (packet,) = rec.feedback(1, 2)
    assert parse_twcc(packet)[:2] == (30, [1])
    assert rec.feedback(1, 2) == []


def test_remb_from_receivers_min_to_the_sender() -> None:
    room = video_room(3)
    room.run_timers()
    send_video(room, range(1, 4), keyframe_first=True)
    for e, bitrate in (("e1", 500_000), ("e2", 300_000)):
        remb = bytes(RtcpPsfbPacket(fmt=15, ssrc=77, media_ssrc=0,
                                    fci=pack_remb_fci(bitrate, [2000])))
        room.fwd.on_rtcp(e, remb, room.now)
    room.now += 1.0
    room.run_timers()
    rembs = [p for p in room.rtcp_for("e0") if isinstance(p, RtcpPsfbPacket) and p.fmt == 15]
    assert len(rembs) == 1
    bitrate, ssrcs = unpack_remb_fci(rembs[0].fci)
    assert ssrcs == [2000] and 299_000 <= bitrate <= 300_000


def test_endpoint_stats_bitrates_and_loss() -> None:
    room = Room(2)
    room.run_timers()
    start = room.now
    for seq in range(1, 101):
        if seq % 10 == 0:
            continue  # 10 of 100 lost
        room.now = start + seq * 0.02
        room.fwd.on_rtp("e0", audio(1000, seq), room.now)
        room.run_timers()
    room.now = start + 2.0
    room.run_timers()
    stats = {e.endpoint_id: e for e in room.events() if isinstance(e, EndpointStats)}
    size = len(audio(1000, 1))
    assert stats["e0"].receive_bitrate == pytest.approx(90 * size * 8 / 2.0, rel=0.05)
    assert stats["e1"].send_bitrate == pytest.approx(90 * size * 8 / 2.0, rel=0.05)
    assert stats["e0"].loss_fraction == pytest.approx(9 / 99, abs=0.01)
    assert stats["e1"].receive_bitrate == 0 and stats["e1"].loss_fraction == 0.0


def test_garbage_rtcp_never_raises_and_is_counted() -> None:
    room = video_room(3)
    send_video(room, [1], keyframe_first=True)
    room.take()
    bad = [
        b"", b"\x80", b"\x80\xc9\x00\x05" + b"\x00" * 8,  # length past the end
        b"\x40\xc9\x00\x01\x00\x00\x00\x01",  # version 1
        b"\xa0\xc9\x00\x01\x00\x00\x00\x00",  # padding count 0
        b"\x81\xc9\x00\x01\x00\x00\x00\x01",  # RR claiming a block it lacks
        b"\x80\xc8\x00\x01\x00\x00\x07\xd0",  # SR too short
        b"\x81\xcd\x00\x02\x00\x00\x00\x01\x00\x00\x07\xd0",  # NACK without FCI
        b"\x84\xce\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00",  # FIR without FCI
        b"\x8f\xce\x00\x04" + b"\x00" * 8 + b"REMB" + b"\x05\x00\x00\x01",  # REMB short list
    ]
    for data in bad:
        room.fwd.on_rtcp("e1", data, room.now)
    malformed = room.fwd.stats()["rtcp_malformed"]
    assert malformed == len(bad) - 1  # the empty packet is just nothing
    rng = random.Random(6464)
    good = bytes(RtcpRrPacket(ssrc=1, reports=[])) + nack(2000, [1]) + pli(2000)
    for _ in range(3000):
        mutated = bytearray(good) if rng.random() < 0.5 else bytearray(
            rng.randbytes(rng.randrange(40)))
        for _ in range(rng.randrange(4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        room.fwd.on_rtcp("e1", bytes(mutated[: rng.randrange(len(mutated) + 1)]), room.now)
    assert room.fwd.stats()["rtcp_malformed"] > malformed


def test_split_rtcp_reads_aiortc_compounds_and_stops_at_a_fault() -> None:
    compound = bytes(RtcpRrPacket(ssrc=5)) + nack(9, [3, 4, 20]) + pli(9)
    packets, malformed = split_rtcp(compound)
    assert not malformed
    assert [(t, c) for t, c, _ in packets] == [(201, 0), (205, 1), (206, 1)]
    packets, malformed = split_rtcp(compound + b"\x80\xc9\x00\x09")
    assert malformed and len(packets) == 3


@pytest.mark.parametrize("seqs", [[5], [1, 2, 3, 17, 18, 40], [65534, 65535, 0, 1, 15]])
def test_build_nack_read_back_by_aiortc(seqs: list[int]) -> None:
    (packet,) = RtcpPacket.parse(build_nack(1, 2, seqs))
    assert isinstance(packet, RtcpRtpfbPacket)
    assert sorted(s & 0xFFFF for s in packet.lost) == sorted(seqs)
