"""RFC 6464 audio levels (both extension forms) and the dominant speaker's hysteresis."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import pack_header_extensions
from fwd_helpers import audio, rtp

from bridge.levels import DominantSpeaker, SpeakerSettings, audio_level, voice_activity


def with_extensions(exts: list[tuple[int, bytes]]) -> bytes:
    """A packet whose extension block aiortc wrote (it picks the form itself)."""
    profile, value = pack_header_extensions(exts)
    header = struct.pack("!BBHII", 0x90, 111, 1, 960, 1234)
    return header + struct.pack("!HH", profile, len(value) // 4) + value + b"\x01" * 20


def test_level_one_byte_form() -> None:
    packet = with_extensions([(3, b"\x00\x07"), (1, bytes((0x80 | 42,)))])
    assert packet[12:14] == b"\xbe\xde"
    assert audio_level(packet, 1) == 42
    assert voice_activity(packet, 1) is True


def test_level_two_byte_form() -> None:
    packet = with_extensions([(1, bytes((17,))), (20, b"x" * 20)])  # id 20 forces two-byte
    assert packet[12:14] == b"\x10\x00"
    assert audio_level(packet, 1) == 17
    assert voice_activity(packet, 1) is False


@pytest.mark.parametrize("two_byte", [False, True])
def test_level_after_padding_and_other_elements(two_byte: bool) -> None:
    packet = rtp(1, 1, exts=[(4, b"a0"), (1, b"\x7f")], two_byte=two_byte)
    assert audio_level(packet, 1) == 127
    assert audio_level(audio(1, 1, level=0, twcc=9, two_byte=two_byte), 1) == 0


def test_level_absent_or_malformed() -> None:
    assert audio_level(rtp(1, 1), 1) is None  # no extensions
    assert audio_level(rtp(1, 1, exts=[(3, b"\x00\x01")]), 1) is None
    assert audio_level(audio(1, 1, level=50), 0) is None  # extension not negotiated
    packet = bytearray(audio(1, 1, level=50))
    packet[15] = 40  # extension block length beyond the packet
    assert audio_level(bytes(packet), 1) is None
    assert audio_level(b"\x90\x6f", 1) is None
    truncated_element = rtp(1, 1, exts=[(1, b"\x10")])[:12] + b"\xbe\xde\x00\x01\x0f\x00\x00\x00"
    assert audio_level(truncated_element, 1) is None  # says 1 byte, then id 15: stop


def feed(ds: DominantSpeaker, levels: dict[str, int], start: float, seconds: float,
         interval: float = 0.3) -> list[tuple[float, str | None]]:
    """Ticks every `interval`, 15 packets per endpoint per tick; (time, new dominant)."""
    changes = []
    t = start
    states = {e: ds.add(e) for e in levels}
    while t < start + seconds - 1e-9:
        t += interval
        for e, level in levels.items():
            for _ in range(15):
                states[e].level_sum += level
                states[e].count += 1
        if ds.tick(t):
            changes.append((round(t, 3), ds.dominant))
    return changes


def test_first_speaker_takes_the_floor_at_once() -> None:
    ds = DominantSpeaker()
    assert feed(ds, {"a": 127, "b": 30}, 0.0, 0.3) == [(0.3, "b")]
    assert ds.recent == ("b",)


def test_silence_elects_nobody() -> None:
    ds = DominantSpeaker()
    assert feed(ds, {"a": 127, "b": 100}, 0.0, 3.0) == []
    assert ds.dominant is None


def test_short_burst_does_not_take_over() -> None:
    ds = DominantSpeaker()
    feed(ds, {"a": 30, "b": 127}, 0.0, 3.0)
    assert feed(ds, {"a": 127, "b": 20}, 3.0, 0.6) == []  # 0.6 s of b
    assert feed(ds, {"a": 30, "b": 127}, 3.6, 2.0) == []
    assert ds.dominant == "a"


def test_sustained_louder_speaker_takes_over_after_about_a_second() -> None:
    ds = DominantSpeaker(SpeakerSettings(switch_after=1.0))
    feed(ds, {"a": 30, "b": 127}, 0.0, 3.0)
    changes = feed(ds, {"a": 45, "b": 20}, 3.0, 3.0)  # both talk, b clearly louder
    assert len(changes) == 1 and changes[0][1] == "b"
    # smoothed, b is clearly louder from the tick at 3.6 s; it must stay so for 1 s, and
    # ticks come every 0.3 s: the first tick at or after 4.6 s
    assert changes[0][0] == 4.8
    assert ds.recent == ("b", "a")


def test_slightly_louder_is_not_clearly_louder() -> None:
    ds = DominantSpeaker()
    feed(ds, {"a": 30, "b": 127}, 0.0, 3.0)
    assert feed(ds, {"a": 30, "b": 27}, 3.0, 5.0) == []  # 3 dB: within the margin


def test_remove_hands_over_to_the_most_recent_speaker() -> None:
    ds = DominantSpeaker()
    feed(ds, {"a": 30, "b": 127, "c": 127}, 0.0, 1.0)
    feed(ds, {"a": 127, "b": 20, "c": 127}, 1.0, 3.0)
    assert ds.recent == ("b", "a")
    assert ds.remove("c") is False
    assert ds.remove("b") is True and ds.dominant == "a"
    assert ds.remove("a") is True and ds.dominant is None
    assert len(ds) == 0
