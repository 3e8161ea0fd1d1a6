"""RtpPacket: exact round trips on captured bytes, every header feature, and garbage."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.media.rtp import HEADER_SIZE, RtpPacket, build_header, is_rtcp

FIXTURES = Path(__file__).parents[3] / "fixtures" / "rtp"


def load_hex(name: str) -> list[bytes]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "name", ["g711a.hex", "dtmf_2833_1.hex", "dtmf_2833_pound.hex", "dtmf_2833_star.hex"]
)
def test_captured_packets_round_trip(name: str) -> None:
    packets = load_hex(name)
    assert packets
    for data in packets:
        assert RtpPacket.parse(data).serialize() == data


def test_captured_g711a_fields() -> None:
    first, second = load_hex("g711a.hex")[:2]
    p = RtpPacket.parse(first)
    assert (p.payload_type, p.marker, p.sequence_number, p.timestamp) == (8, True, 0xE6FD, 240)
    assert p.ssrc == 0xDEE0EE8F
    assert len(p.payload) == 240          # this capture uses 30 ms packets
    q = RtpPacket.parse(second)
    assert (q.marker, q.sequence_number, q.timestamp) == (False, 0xE6FE, 480)
    assert p.csrc == [] and p.extension_profile is None and p.padding_size == 0


def test_captured_dtmf_fields() -> None:
    packets = [RtpPacket.parse(d) for d in load_hex("dtmf_2833_1.hex")]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert {p.payload_type for p in packets} == {101}
    assert len({p.timestamp for p in packets}) == 1
    assert packets[0].payload == bytes.fromhex("010a0000")


# Not captured (our pcaps have none of these): built by hand from RFC 3550 5.1 / 5.3.1 and
# an RFC 8285 one-byte extension carrying an RFC 6464 audio level.
CSRC_EXT_PADDED = bytes.fromhex(
    "b2"            # V=2 P=1 X=1 CC=2
    "e4"            # M=1 PT=100
    "1234" "00000fa0" "cafebabe"
    "00000001" "00000002"          # CSRC list
    "bede0001" "10aa0000"          # one-byte extension: id 1, level 0x2a + voice flag
    "0102030405"                   # payload
    "000003"                       # 3 octets of padding
)


def test_csrc_extension_padding_round_trip() -> None:
    p = RtpPacket.parse(CSRC_EXT_PADDED)
    assert p.csrc == [1, 2]
    assert p.extension_profile == 0xBEDE
    assert p.extension == bytes.fromhex("10aa0000")
    assert p.payload == bytes.fromhex("0102030405")
    assert p.padding_size == 3
    assert (p.marker, p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (
        True, 100, 0x1234, 4000, 0xCAFEBABE,
    )
    assert p.serialize() == CSRC_EXT_PADDED


def test_empty_extension_and_empty_payload_round_trip() -> None:
    p = RtpPacket(payload_type=0, sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=7,
                  extension_profile=0x1000, extension=b"")
    data = p.serialize()
    assert len(data) == HEADER_SIZE + 4
    assert RtpPacket.parse(data) == p


def test_build_header_matches_serialize() -> None:
    p = RtpPacket(payload_type=0, sequence_number=513, timestamp=123456, ssrc=99, marker=True,
                  payload=b"\xff" * 160)
    assert build_header(0, 513, 123456, 99, True) + p.payload == p.serialize()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00",
        bytes(11),
        bytes.fromhex("400000000000000000000000"),            # version 1
        bytes.fromhex("800000000000000000000000")[:-1],
        bytes.fromhex("a00000000000000000000000"),            # padding, count 0
        bytes.fromhex("a000000000000000000000000005"),        # padding longer than payload
        bytes.fromhex("8f0000000000000000000000" "00000001"),  # CC=15 but 1 CSRC
        bytes.fromhex("900000000000000000000000" "bede"),       # truncated extension header
        bytes.fromhex("900000000000000000000000" "bede0002" "00000000"),  # ext too long
        bytes.fromhex("b00000000000000000000000" "bede0001" "00000008"),  # padding eats ext
    ],
)
def test_garbage_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


def test_fuzz_only_value_error() -> None:
    rng = random.Random(4733)
    seeds = [*load_hex("g711a.hex"), *load_hex("dtmf_2833_1.hex"), CSRC_EXT_PADDED]
    parsed = failed = 0
    for i in range(5000):
        kind = i % 3
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 64))
        elif kind == 1:
            seed = rng.choice(seeds)
            data = seed[: rng.randrange(0, len(seed) + 1)]
        else:
            buf = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            failed += 1
            continue
        parsed += 1
        # whatever parses serializes back to the same bytes, bar non-zero padding octets
        out = packet.serialize()
        if packet.padding_size <= 1:
            assert out == data
        else:
            assert out[: -packet.padding_size] == data[: -packet.padding_size]
    assert parsed > 500 and failed > 500


def test_serialize_rejects_bad_fields() -> None:
    with pytest.raises(ValueError):
        RtpPacket(payload_type=128).serialize()
    with pytest.raises(ValueError):
        RtpPacket(csrc=list(range(16))).serialize()
    with pytest.raises(ValueError):
        RtpPacket(extension_profile=1, extension=b"abc").serialize()
    with pytest.raises(ValueError):
        RtpPacket(csrc=[1 << 32]).serialize()


def test_is_rtcp() -> None:
    assert is_rtcp(bytes.fromhex("80c80006"))       # SR
    assert is_rtcp(bytes.fromhex("81c90007"))       # RR
    assert not is_rtcp(load_hex("g711a.hex")[0])
    assert not is_rtcp(load_hex("dtmf_2833_1.hex")[0])
    assert not is_rtcp(b"\x80")
