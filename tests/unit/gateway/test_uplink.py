"""The caller's voice towards the bridge: Opus packets with RFC 6464 levels, DTX, pass-through."""

from __future__ import annotations

import numpy as np

from gateway.browser_audio import parse_rtp
from gateway.uplink import (
    HANGOVER_FRAMES,
    LEVEL_SILENT,
    VoiceUplink,
    audio_level,
    rtp_with_level,
)


class Link:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


class Encoder:
    def __init__(self) -> None:
        self.frames = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        self.frames += 1
        return b"opus" + bytes([len(pcm) // 10])


def tone(amplitude: float, n: int = 160) -> np.ndarray:
    return (amplitude * np.sin(np.arange(n) * 2 * np.pi * 440 / 8000)).astype(np.int16)


def test_audio_level_is_minus_dbov() -> None:
    assert audio_level(np.zeros(160, dtype=np.int16)) == LEVEL_SILENT
    full = np.full(160, 32767, dtype=np.int16)
    assert audio_level(full) == 0
    # A sine of amplitude A has RMS A/sqrt(2): -3 dB from a full-scale square wave.
    assert audio_level(tone(32767)) == 3
    assert audio_level(tone(327.67)) == 43


def test_packet_carries_level_and_parses_back() -> None:
    data = rtp_with_level(111, 7, 960, 0xABCDEF01, True, 30, True, 1, b"payload")
    parsed = parse_rtp(data, 1)
    assert parsed == (0xABCDEF01, 7, 960, True, 30, b"payload")
    assert data[0] == 0x90 and data[1] == 0x80 | 111


def test_quiet_frames_are_sent_for_a_hangover_then_nothing() -> None:
    link, enc = Link(), Encoder()
    up = VoiceUplink("p1", 1, link, enc)
    up.on_frame(tone(8000), True)
    quiet = np.zeros(160, dtype=np.int16)
    for _ in range(HANGOVER_FRAMES + 5):
        up.on_frame(quiet, False)
    assert len(link.sent) == 1 + HANGOVER_FRAMES  # the gap between words is sent
    up.on_frame(tone(8000), True)
    assert parse_rtp(link.sent[-1], 1)[3] is True  # a new talkspurt  # type: ignore[index]


def test_speech_is_encoded_once_per_tick_and_silence_sends_nothing() -> None:
    link, enc = Link(), Encoder()
    up = VoiceUplink("p1", 1234, link, enc, initial_seq=65535, initial_ts=0)
    up.on_frame(tone(8000), True)
    up.on_frame(tone(8000), True)
    up.on_frame(None, False)  # muted: nothing sent at once, time runs on
    up.on_frame(tone(8000), True)
    assert enc.frames == 3 and len(link.sent) == 3
    parsed = [parse_rtp(p, 1) for p in link.sent]
    assert [p[1] for p in parsed if p] == [65535, 0, 1]  # continuous, wrapping
    assert [p[2] for p in parsed if p] == [0, 960, 2880]  # the pause is in the timestamps
    assert [p[3] for p in parsed if p] == [True, False, True]  # talkspurt starts marked
    assert all(p is not None and p[4] == audio_level(tone(8000)) for p in parsed)


def test_passthrough_keeps_phone_timestamps_and_respects_silence() -> None:
    link = Link()
    up = VoiceUplink("p1", 99, link, None)
    up.on_phone_packet(b"x", 5000, False)  # no level yet: treated as silent
    assert link.sent == []
    up.on_frame(tone(8000, 320), True)
    up.on_phone_packet(b"a", 5000, False)
    up.on_phone_packet(b"b", 5960, False)
    up.on_frame(None, False)  # muted
    up.on_phone_packet(b"c", 6920, False)
    got = [parse_rtp(p, 1) for p in link.sent]
    assert [(g[2], g[5]) for g in got if g] == [(960, b"a"), (1920, b"b")]


def test_a_failing_link_is_counted_not_raised() -> None:
    class Broken:
        def send_rtp(self, data: bytes) -> None:
            raise OSError("gone")

    up = VoiceUplink("p1", 1, Broken(), Encoder())
    for _ in range(3):
        up.on_frame(tone(8000), True)
    assert up.errors == 3 and up.packets == 0
