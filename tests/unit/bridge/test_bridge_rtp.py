"""The wire helpers: extensions, payload bounds, key frames, RTX, history, receive stats."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket, wrap_rtx
from fwd_helpers import MID_ID, TWCC_ID, audio, rtp, vp8_payload

from bridge.rtcp_feedback import PacketHistory, ReceiveStats, nack_targets
from bridge.rtp import (
    blank,
    extension_value,
    is_h264_keyframe,
    is_vp8_keyframe,
    payload_bounds,
    scan_extensions,
    starts_keyframe,
    unwrap_rtx,
    with_sequence,
)


@pytest.mark.parametrize("two_byte", [False, True])
def test_scan_finds_level_twcc_and_mid(two_byte: bool) -> None:
    packet = audio(1, 1, level=12, twcc=0x1234, mid=b"a0", two_byte=two_byte)
    level, twcc, mid_start, mid_end = scan_extensions(packet, 1, TWCC_ID, MID_ID)
    assert packet[level] & 0x7F == 12
    assert packet[twcc:twcc + 2] == b"\x12\x34"
    assert packet[mid_end - 2:mid_end] == b"a0"
    blanked = blank(packet, mid_start, mid_end)
    assert extension_value(blanked, MID_ID) is None
    assert extension_value(blanked, TWCC_ID) == b"\x12\x34"
    assert payload_bounds(blanked) == payload_bounds(packet)


def test_scan_ignores_a_twcc_element_of_the_wrong_size() -> None:
    packet = rtp(1, 1, exts=[(TWCC_ID, b"\x01\x02\x03")])
    assert scan_extensions(packet, 1, TWCC_ID, MID_ID)[1] == -1


def test_payload_bounds_with_csrcs_extension_and_padding() -> None:
    packet = rtp(1, 1, payload=b"PAYLOAD", exts=[(1, b"\x10")], padding=3)
    assert payload_bounds(packet) == (20, 27) and packet[20:27] == b"PAYLOAD"
    with_csrc = b"\x82" + packet[1:12] + b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"PAYLOAD"
    assert payload_bounds(with_csrc) == (20, 27)
    with pytest.raises(ValueError):
        payload_bounds(rtp(1, 1, payload=b"ab", padding=2)[:-1] + b"\x09")  # padding > packet


def test_vp8_keyframes() -> None:
    for keyframe in (True, False):
        payload = vp8_payload(keyframe)
        assert is_vp8_keyframe(payload, 0, len(payload)) is keyframe
    middle = vp8_payload(True, start=False)
    assert not is_vp8_keyframe(middle, 0, len(middle))
    plain = b"\x10\x00\x9d\x01\x2a"  # no X, S=1, PID 0, key frame
    assert is_vp8_keyframe(plain, 0, len(plain))
    tl = b"\x90\xe0\x81\x23\x05\x40\x00\x9d"  # X with I (15 bits), L, T
    assert is_vp8_keyframe(tl, 0, len(tl))
    assert not is_vp8_keyframe(b"\x90\x80", 0, 2)  # truncated


def test_h264_keyframes() -> None:
    idr = b"\x65\x88\x84"
    sps_in_stap_a = b"\x18" + b"\x00\x02\x67\x42" + b"\x00\x02\x68\xce"
    pps_only_stap = b"\x18" + b"\x00\x02\x68\xce"
    fu_a_start = b"\x7c\x85\x00"
    fu_a_middle = b"\x7c\x05\x00"
    non_idr = b"\x41\x9a"
    for data, expected in ((idr, True), (sps_in_stap_a, True), (pps_only_stap, False),
                           (fu_a_start, True), (fu_a_middle, False), (non_idr, False)):
        assert is_h264_keyframe(data, 0, len(data)) is expected, data


def test_starts_keyframe_does_not_hold_unknown_codecs() -> None:
    assert starts_keyframe(rtp(1, 1, pt=96, payload=vp8_payload(True)), 96, 102)
    assert not starts_keyframe(rtp(1, 1, pt=96, payload=vp8_payload(False)), 96, 102)
    assert not starts_keyframe(rtp(1, 1, pt=102, payload=b"\x41\x9a"), 96, 102)
    assert starts_keyframe(rtp(1, 1, pt=98, payload=b"\x00"), 96, 102)


def test_unwrap_rtx_matches_aiortc_wrap() -> None:
    original = RtpPacket(payload_type=96, marker=1, sequence_number=4321, timestamp=777,
                         ssrc=2000, payload=b"media payload")
    wrapped = wrap_rtx(original, payload_type=97, sequence_number=9, ssrc=3000).serialize()
    restored = unwrap_rtx(wrapped, 2000, 96)
    assert restored == original.serialize()
    assert unwrap_rtx(rtp(3000, 1, pt=97, payload=b"", padding=100), 2000, 96) is None


def test_with_sequence_rewrites_a_copy() -> None:
    packet = audio(1, 5, twcc=77)
    twcc = scan_extensions(packet, -1, TWCC_ID, -1)[1]
    out = with_sequence(packet, 900, twcc, 12)
    assert struct.unpack_from("!H", out, 2)[0] == 900
    assert extension_value(out, TWCC_ID) == b"\x00\x0c"
    assert struct.unpack_from("!H", packet, 2)[0] == 5  # untouched


def test_packet_history_ring() -> None:
    history = PacketHistory(4)
    for ext in range(10, 16):
        history.put(ext, bytes((ext,)))
    assert history.get(11) is None and history.get(12) == b"\x0c" and len(history) == 4
    history.clear()
    assert history.get(15) is None and len(history) == 0


def test_receive_stats_wrap_reorder_and_jitter() -> None:
    stats = ReceiveStats(48000)
    exts = [stats.on_packet(seq, 960 * k, 100, 10.0 + 0.02 * k)
            for k, seq in enumerate([65534, 65535, 1, 0, 2])]
    assert [e - exts[0] for e in exts] == [0, 1, 3, 2, 4]
    assert stats.expected == 5 and stats.lost == 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    assert stats.take_interval() == (5, 0)
    stats.on_packet(5, 960 * 7, 100, 10.14)  # 3 and 4 lost
    assert stats.take_interval() == (3, 2)


def test_nack_targets_map_receiver_numbers_back() -> None:
    # sent to the receiver as out = ext - 100; it has seen up to out 70_010 (seq 4474)
    current = 70_010
    got = nack_targets([4474, 4470, 4475, 4000], current, 100, 69_700, 10)
    assert got == [(70_110, 4474), (70_106, 4470)]  # 4475 not sent yet, 4000 before start
    assert nack_targets([4000], current, 100, 69_600, 10) == [(69_636, 4000)]
    assert len(nack_targets(list(range(4400, 4474)), current, 100, 0, 10)) == 10
