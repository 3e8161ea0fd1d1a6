"""The browsers' streams of a room: the loudest few decoded once each, quiet ones never."""

from __future__ import annotations

import numpy as np

from gateway.browser_audio import RoomAudio, parse_rtp
from gateway.uplink import rtp_with_level


class Mixer:
    def __init__(self, rate: int = 8000) -> None:
        self.sources: dict[str, object] = {}
        self.rate = rate

    def add_source(self, room: str, source_id: str, source: object) -> None:
        assert source_id not in self.sources
        self.sources[source_id] = source

    def remove(self, leg_id: str) -> None:
        self.sources.pop(leg_id, None)

    def room_rate(self, room: str) -> int:
        return self.rate


class Decoder:
    made: list[Decoder] = []

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.decoded: list[bytes] = []
        self.lost = 0
        Decoder.made.append(self)

    def decode(self, payload: bytes) -> np.ndarray:
        self.decoded.append(payload)
        return np.full(self.rate // 50, payload[0], dtype=np.int16)

    def decode_lost(self, next_payload: bytes | None = None) -> np.ndarray:
        self.lost += 1
        return np.zeros(self.rate // 50, dtype=np.int16)


def packet(ssrc: int, seq: int, level: int, byte: int) -> bytes:
    return rtp_with_level(111, seq, seq * 960, ssrc, seq == 0, level, level < 127, 1,
                          bytes([byte]) * 20)


def run(room: RoomAudio, mixer: Mixer, levels: dict[int, int], ticks: int,
        start: int = 0) -> dict[int, list[object]]:
    """Feed one packet per stream per tick, tick, pull every source like the mixer does."""
    heard: dict[int, list[object]] = {ssrc: [] for ssrc in levels}
    for k in range(start, start + ticks):
        now = k * 0.02
        for ssrc, level in levels.items():
            room.on_rtp(packet(ssrc, k, level, ssrc % 256), now)
        room.before_tick(now)
        for ssrc in levels:
            src = mixer.sources.get(room.source_id(ssrc))
            frame = src.pull_frame(now) if src is not None else None  # type: ignore[attr-defined]
            heard[ssrc].append(None if frame is None else int(frame[0]))
    return heard


def test_only_the_loudest_three_are_decoded() -> None:
    Decoder.made.clear()
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder, max_decoded=3)
    levels = {1: 20, 2: 30, 3: 40, 4: 50, 5: 127}  # 5 is silent
    heard = run(room, mixer, levels, 20)
    assert len(mixer.sources) == 5
    assert room.decoding() == 3
    # Once the jitter buffer plays, 1..3 are decoded at the room's rate, 4 and 5 never.
    for ssrc in (1, 2, 3):
        assert heard[ssrc][-1] == ssrc
    assert all(h is None for h in heard[4]) and all(h is None for h in heard[5])
    assert len(Decoder.made) == 3 and all(d.rate == 8000 for d in Decoder.made)


def test_a_new_loud_speaker_takes_the_place_of_the_quietest() -> None:
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder, max_decoded=2)
    run(room, mixer, {1: 20, 2: 30, 3: 60}, 10)
    assert {s for s, st in room.streams.items() if st.selected} == {1, 2}
    run(room, mixer, {1: 20, 2: 60, 3: 10}, 10, start=10)
    assert {s for s, st in room.streams.items() if st.selected} == {1, 3}


def test_hysteresis_keeps_a_speaker_against_one_barely_louder() -> None:
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder, max_decoded=1)
    run(room, mixer, {1: 30, 2: 40}, 10)
    run(room, mixer, {1: 30, 2: 27}, 10, start=10)  # 3 dB louder: not enough to switch
    assert room.streams[1].selected and not room.streams[2].selected


def test_rate_follows_the_room_and_streams_time_out() -> None:
    Decoder.made.clear()
    mixer = Mixer(rate=16000)
    room = RoomAudio("r", mixer, Decoder, stream_timeout=0.5)
    run(room, mixer, {7: 20}, 10)
    assert Decoder.made[-1].rate == 16000
    room.before_tick(10.0)
    assert room.streams == {} and mixer.sources == {}


def test_own_callers_and_garbage_are_not_mixed() -> None:
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder)
    room.ignored.add(42)
    room.on_rtp(packet(42, 0, 10, 1), 0.0)
    for junk in (b"", b"\x80" * 5, b"\x00" * 40, packet(9, 0, 10, 1)[:14]):
        room.on_rtp(junk, 0.0)
    assert mixer.sources == {} and room.malformed == 4


def test_parse_rtp_handles_padding_csrc_and_other_extensions() -> None:
    base = bytearray(packet(5, 3, 33, 9))
    assert parse_rtp(bytes(base), 1) is not None
    assert parse_rtp(bytes(base), 2) == (5, 3, 2880, False, 127, bytes([9]) * 20)
    padded = bytearray(base)
    padded[0] |= 0x20
    padded += b"\x00\x00\x03"
    assert parse_rtp(bytes(padded), 1) == (5, 3, 2880, False, 33, bytes([9]) * 20)
    bad = bytearray(base)
    bad[0] |= 0x20  # the last payload byte (9) now reads as a padding count
    assert parse_rtp(bytes(bad), 1) == (5, 3, 2880, False, 33, bytes([9]) * 11)
    bad[-1] = 200  # more padding than the packet has
    assert parse_rtp(bytes(bad), 1) is None


def test_a_pause_between_words_keeps_the_stream_decoded() -> None:
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder, max_decoded=1)
    run(room, mixer, {1: 20}, 10)
    heard = run(room, mixer, {1: 127}, 5, start=10)  # 100 ms pause: still decoded
    assert room.streams[1].selected and all(h is not None for h in heard[1])
    run(room, mixer, {1: 127}, 30, start=15)  # 600 ms of silence: no longer decoded
    assert not room.streams[1].selected and room.decoding() == 0


class DueBuffer:
    """A jitter buffer with a drop due: records what the stream tells it after each pop."""

    drop_due = True

    def __init__(self, real: object) -> None:
        self.real = real
        self.told: list[object] = []

    def insert(self, *args: object) -> None:
        self.real.insert(*args)  # type: ignore[attr-defined]

    def pop(self, now: float) -> object:
        return self.real.pop(now)  # type: ignore[attr-defined]

    def played(self, pcm: np.ndarray | None) -> None:
        self.told.append(None if pcm is None else int(pcm[0]))

    def heard(self, quiet: bool) -> None:
        self.told.append(quiet)


def test_a_due_drop_is_told_what_the_stream_sounds_like() -> None:
    """Decoded: the frame itself; not decoded: quiet only once the stream's levels have
    been silent past the hangover."""
    mixer = Mixer()
    room = RoomAudio("r", mixer, Decoder, max_decoded=1)
    run(room, mixer, {1: 20, 2: 30}, 10)               # 1 is decoded, 2 talks undecoded
    one, two = room.streams[1], room.streams[2]
    assert one.selected and not two.selected
    one.buffer, two.buffer = DueBuffer(one.buffer), DueBuffer(two.buffer)  # type: ignore[assignment]
    run(room, mixer, {1: 20, 2: 30}, 5, start=10)
    assert one.buffer.told == [1] * 5                  # type: ignore[attr-defined]
    assert two.buffer.told == [False] * 5              # type: ignore[attr-defined]
    run(room, mixer, {1: 20, 2: 127}, 40, start=15)    # 2 falls silent
    told = two.buffer.told[5:]                         # type: ignore[attr-defined]
    hangover = told.index(True)
    assert 20 <= hangover <= 30 and told == [False] * hangover + [True] * (40 - hangover)
