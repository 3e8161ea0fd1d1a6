"""RTCP packets: SR, RR, SDES, BYE, compound; round trips and garbage."""

from __future__ import annotations

import contextlib
import random

import pytest

from gateway.media.rtcp import (
    RTCP_APP,
    SDES_CNAME,
    RtcpByePacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSdesChunk,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtcpUnknownPacket,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    serialize_compound,
)

# A compound packet as a PBX sends it: SR with one report block, SDES CNAME (hand-assembled
# from RFC 3550 6.4.1 and 6.5; field values typical of an Asterisk G.711 leg).
SR_SDES = bytes.fromhex(
    "81c8000c" "0e05384e"              # SR, RC=1, length 12, SSRC
    "e9c2a4b1" "3d70a3d7"              # NTP timestamp
    "0001f400" "000000fa" "00009c40"   # RTP ts, packet count 250, octet count 40000
    "cafebabe" "0a0000ff" "0001e701" "00000023" "a4b13d70" "00018000"   # report block
    "81ca0006" "0e05384e"              # SDES, 1 chunk
    "0110" + b"asterisk@10.1.2.3".hex()[:32] + "0000"
)


def test_sr_sdes_compound_round_trip() -> None:
    packets = parse_compound(SR_SDES)
    assert len(packets) == 2
    sr, sdes = packets
    assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert sr.ssrc == 0x0E05384E
    assert sr.sender_info == RtcpSenderInfo(0xE9C2A4B13D70A3D7, 0x1F400, 250, 40000)
    (block,) = sr.reports
    assert block == RtcpReportBlock(
        ssrc=0xCAFEBABE, fraction_lost=10, packets_lost=255, highest_sequence=0x1E701,
        jitter=35, lsr=0xA4B13D70, dlsr=0x18000,
    )
    assert sdes.chunks[0].ssrc == 0x0E05384E
    assert sdes.chunks[0].cname == "asterisk@10.1.2."
    assert serialize_compound(packets) == SR_SDES


def test_rr_negative_loss_and_bye_round_trip() -> None:
    rr = RtcpRrPacket(0x11223344, [
        RtcpReportBlock(1, 0, -3, 70000, 12, 0, 0),
        RtcpReportBlock(2, 255, (1 << 23) - 1, 5, 0, 1, 2),
    ])
    bye = RtcpByePacket([0x11223344, 5], b"call ended")
    data = serialize_compound([rr, bye])
    assert len(data) % 4 == 0
    back = parse_compound(data)
    assert back == [rr, bye]
    assert serialize_compound(back) == data


def test_loss_is_clamped_to_24_bits() -> None:
    block = RtcpReportBlock(1, packets_lost=10**9)
    assert RtcpReportBlock.parse(block.serialize(), 0).packets_lost == (1 << 23) - 1
    block = RtcpReportBlock(1, packets_lost=-(10**9))
    assert RtcpReportBlock.parse(block.serialize(), 0).packets_lost == -(1 << 23)


@pytest.mark.parametrize("cname_len", [0, 1, 2, 3, 4, 5, 6, 17])
def test_sdes_padding_every_length(cname_len: int) -> None:
    packet = RtcpSdesPacket([
        RtcpSdesChunk(7, [(SDES_CNAME, b"x" * cname_len)]),
        RtcpSdesChunk(8, [(SDES_CNAME, b"y" * (cname_len + 1)), (6, b"tool")]),
    ])
    data = packet.serialize()
    assert len(data) % 4 == 0
    (back,) = parse_compound(data)
    assert back == packet
    assert back.serialize() == data


def test_bye_without_reason_and_unknown_packet_kept() -> None:
    app = RtcpUnknownPacket(RTCP_APP, 3, b"name" + b"data1234")
    rtpfb = RtcpUnknownPacket(205, 1, bytes(8))
    data = serialize_compound([RtcpByePacket([9]), app, rtpfb])
    back = parse_compound(data)
    assert back == [RtcpByePacket([9], None), app, rtpfb]
    assert serialize_compound(back) == data


def test_padding_on_last_packet_is_accepted() -> None:
    rr = RtcpRrPacket(5).serialize()
    padded = bytearray(rr + b"\x00\x00\x00\x04")
    padded[0] |= 0x20
    padded[3] += 1            # length includes the padding
    assert parse_compound(bytes(padded)) == [RtcpRrPacket(5)]


def test_ntp_helpers() -> None:
    ntp = ntp_from_unix(0.5)
    assert ntp >> 32 == 2_208_988_800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle32(0x0123456789ABCDEF) == 0x456789AB


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc8",
        bytes.fromhex("40c90001" "00000001"),      # version 1
        bytes.fromhex("80c90005" "00000001"),      # length beyond datagram
        bytes.fromhex("81c90001" "00000001"),      # RC=1 without the block
        bytes.fromhex("80c80001" "00000001"),      # SR without sender info
        bytes.fromhex("81ca0001" "00000001"),      # SDES chunk without end item
        bytes.fromhex("81ca0002" "00000001" "01100000"),   # item longer than packet
        bytes.fromhex("82cb0001" "00000001"),      # BYE SC=2, one SSRC
        bytes.fromhex("80cb0001" "09000000"),      # BYE reason longer than packet
        bytes.fromhex("a0c90001" "00000000"),      # padding count 0
        bytes.fromhex("80c90001" "00000001" "80"),  # trailing garbage
    ],
)
def test_garbage_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_compound(data)


def test_fuzz_only_value_error() -> None:
    rng = random.Random(3550)
    seeds = [SR_SDES, serialize_compound([RtcpRrPacket(1, [RtcpReportBlock(2)]),
                                          RtcpByePacket([1], b"bye")])]
    ok = 0
    for i in range(4000):
        seed = rng.choice(seeds)
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 80))
        elif i % 3 == 1:
            data = seed[: rng.randrange(0, len(seed) + 1)]
        else:
            buf = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        try:
            packets = parse_compound(data)
        except ValueError:
            continue
        ok += 1
        for packet in packets:
            with contextlib.suppress(ValueError):
                packet.serialize()
    assert ok > 100
