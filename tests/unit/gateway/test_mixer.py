"""ConferenceMixer with fake legs and a fake encoder that records every call."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from gateway.mixer import ConferenceMixer, EncodeFn, MixerError, MixerLeg, PromptFinished
from gateway.prompts import PromptPlayer, to_frames

Pcm = npt.NDArray[np.int16]


def tone(value: int) -> Pcm:
    """A frame whose every sample is ``value`` (easy to add up in assertions)."""
    return np.full(160, value, dtype=np.int16)


@dataclass
class FakeLeg:
    leg_id: str
    codec_name: str = "PCMU"
    voice: Pcm | None = None  # returned by every pull_frame
    pulls: list[float] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)

    def pull_frame(self, now: float) -> Pcm | None:
        self.pulls.append(now)
        return self.voice

    def send_payload(self, payload: bytes) -> None:
        self.sent.append(payload)

    def heard(self, index: int = -1) -> Pcm:
        codec, pcm = decode(self.sent[index])
        assert codec == self.codec_name
        return pcm


class FakeEncoders:
    """encoder_for(): the payload is b"<codec>|" + the PCM bytes, so tests can read it back."""

    def __init__(self, frame_samples: int = 160) -> None:
        self.frame_samples = frame_samples
        self.lookups: list[str] = []
        self.calls: Counter[str] = Counter()

    def __call__(self, codec: str) -> EncodeFn:
        self.lookups.append(codec)

        def encode(pcm: Pcm) -> bytes:
            assert pcm.dtype == np.int16 and pcm.shape == (self.frame_samples,)
            self.calls[codec] += 1
            return codec.encode() + b"|" + pcm.tobytes()

        return encode


def decode(payload: bytes) -> tuple[str, Pcm]:
    codec, _, pcm = payload.partition(b"|")
    return codec.decode(), np.frombuffer(pcm, dtype=np.int16)


def level(pcm: Pcm) -> set[int]:
    return set(np.unique(pcm).tolist())


@pytest.fixture
def encoders() -> FakeEncoders:
    return FakeEncoders()


@pytest.fixture
def mixer(encoders: FakeEncoders) -> ConferenceMixer:
    return ConferenceMixer(encoders)


def room_of(mixer: ConferenceMixer, room: str, *legs: FakeLeg) -> None:
    for leg in legs:
        mixer.add_leg(room, leg)


def test_fake_leg_satisfies_the_protocol() -> None:
    leg: MixerLeg = FakeLeg("a")
    assert leg.leg_id == "a"


def test_each_leg_hears_everyone_but_itself(mixer: ConferenceMixer) -> None:
    a, b, c = FakeLeg("a", voice=tone(100)), FakeLeg("b", voice=tone(20)), FakeLeg("c",
                                                                                   voice=tone(40))
    room_of(mixer, "r", a, b, c)
    mixer.tick(1.0)
    assert level(a.heard()) == {60}
    assert level(b.heard()) == {140}
    assert level(c.heard()) == {120}


def test_rooms_are_independent(mixer: ConferenceMixer) -> None:
    a, b = FakeLeg("a", voice=tone(100)), FakeLeg("b", voice=tone(200))
    x, y = FakeLeg("x", voice=tone(1000)), FakeLeg("y")
    room_of(mixer, "r1", a, b)
    room_of(mixer, "r2", x, y)
    mixer.tick(0.0)
    assert level(a.heard()) == {200}
    assert level(y.heard()) == {1000}
    assert level(x.heard()) == {0}
    assert sorted(mixer.rooms()) == ["r1", "r2"]


def test_each_leg_is_pulled_once_per_tick_with_now(mixer: ConferenceMixer) -> None:
    a, b, solo = FakeLeg("a", voice=tone(50)), FakeLeg("b"), FakeLeg("s", voice=tone(50))
    room_of(mixer, "r", a, b)
    mixer.add_leg(None, solo)
    for k in range(3):
        mixer.tick(k * 0.02)
    assert a.pulls == b.pulls == solo.pulls == [0.0, 0.02, 0.04]
    assert len(a.sent) == len(b.sent) == len(solo.sent) == 3


def test_a_tick_in_slices_mixes_each_room_once(mixer: ConferenceMixer) -> None:
    rooms = {f"r{i}": (FakeLeg(f"a{i}", voice=tone(100 + i)), FakeLeg(f"b{i}")) for i in range(5)}
    for name, legs in rooms.items():
        room_of(mixer, name, *legs)
    solo = FakeLeg("s")
    mixer.add_leg(None, solo)
    mixer.begin_tick(1.0)
    assert mixer.tick_pending
    slices = 1
    while mixer.run_slice(8):  # two rooms of two legs (each a source and a listener)
        slices += 1
        assert slices < 10
    assert slices == 3 and not mixer.tick_pending
    for i, (a, b) in enumerate(rooms.values()):
        assert a.pulls == b.pulls == [1.0]
        assert level(b.heard()) == {100 + i}
    assert solo.pulls == [1.0] and len(solo.sent) == 1
    assert mixer.ticks == 1


def two_rooms_one_mixed(mixer: ConferenceMixer) -> tuple[FakeLeg, FakeLeg, FakeLeg, FakeLeg]:
    """Rooms r1 (a speaks to b) and r2 (x to y); a tick begun at 0.0 with r1 mixed."""
    a, b = FakeLeg("a", voice=tone(500)), FakeLeg("b")
    x, y = FakeLeg("x", voice=tone(700)), FakeLeg("y")
    room_of(mixer, "r1", a, b)
    room_of(mixer, "r2", x, y)
    mixer.begin_tick(0.0)
    assert mixer.run_slice(2)  # r1 done, r2 left
    return a, b, x, y


def test_a_room_emptied_between_slices_is_skipped(mixer: ConferenceMixer) -> None:
    a, _, x, y = two_rooms_one_mixed(mixer)
    assert len(a.sent) == 1 and not x.sent
    mixer.remove_leg("x")
    mixer.remove_leg("y")
    assert not mixer.run_slice(2)
    assert not x.pulls and not y.sent


def test_begin_tick_finishes_an_unfinished_tick_first(mixer: ConferenceMixer) -> None:
    a, _, x, y = two_rooms_one_mixed(mixer)
    mixer.begin_tick(0.02)  # r2's frame of the first tick is due: mixed now, with its now
    assert x.pulls == [0.0] and len(y.sent) == 1
    mixer.run_slice(0)
    assert a.pulls == x.pulls == [0.0, 0.02] and len(y.sent) == 2
    assert mixer.ticks == 2


def test_silent_legs_share_one_encoded_frame_per_codec(mixer: ConferenceMixer,
                                                       encoders: FakeEncoders) -> None:
    speaker = FakeLeg("speaker", voice=tone(500))
    quiet_u = [FakeLeg(f"u{i}") for i in range(3)]  # pull_frame -> None
    quiet_a = [FakeLeg(f"a{i}", codec_name="PCMA", voice=tone(0)) for i in range(2)]
    room_of(mixer, "r", speaker, *quiet_u, *quiet_a)
    mixer.tick(0.0)
    # speaker: its own N-1 mix (silence); the PCMU listeners: one shared; PCMA: one shared.
    assert encoders.calls == Counter({"PCMU": 2, "PCMA": 1})
    shared_u = {id(leg.sent[0]) for leg in quiet_u}
    assert len(shared_u) == 1  # the very same bytes object, encoded once
    assert len({id(leg.sent[0]) for leg in quiet_a}) == 1
    for leg in quiet_u + quiet_a:
        assert level(leg.heard()) == {500}
    assert level(speaker.heard()) == {0}
    # An encoder per listener (codecs may keep state) and one per room and codec for the
    # shared frame; none per tick.
    mixer.tick(0.02)
    assert Counter(encoders.lookups) == Counter({"PCMU": 5, "PCMA": 3})
    assert encoders.calls == Counter({"PCMU": 4, "PCMA": 2})


def test_shared_frame_is_per_room(mixer: ConferenceMixer, encoders: FakeEncoders) -> None:
    room_of(mixer, "r1", FakeLeg("a"), FakeLeg("b"))
    room_of(mixer, "r2", FakeLeg("c"), FakeLeg("d"))
    mixer.tick(0.0)
    assert encoders.calls == Counter({"PCMU": 2})


def test_frame_below_threshold_counts_as_silent(encoders: FakeEncoders) -> None:
    mixer = ConferenceMixer(encoders, silence_threshold=16)
    hiss = np.zeros(160, dtype=np.int16)
    hiss[::2] = -16
    hiss[1::2] = 16
    a, b, c = FakeLeg("a", voice=hiss), FakeLeg("b", voice=tone(300)), FakeLeg("c")
    room_of(mixer, "r", a, b, c)
    mixer.tick(0.0)
    assert level(c.heard()) == {300}  # the hiss is not in the mix
    assert a.sent[0] is c.sent[0]  # and a shares the common frame
    assert encoders.calls["PCMU"] == 2


def test_loud_sum_is_clipped_not_wrapped(mixer: ConferenceMixer) -> None:
    a, b, c = FakeLeg("a", voice=tone(30000)), FakeLeg("b", voice=tone(30000)), FakeLeg("c")
    room_of(mixer, "r", a, b, c)
    mixer.tick(0.0)
    assert level(c.heard()) == {32767}
    assert level(a.heard()) == {30000}


def test_negative_clip(mixer: ConferenceMixer) -> None:
    d, e, f = FakeLeg("d", voice=tone(-30000)), FakeLeg("e", voice=tone(-30000)), FakeLeg("f")
    room_of(mixer, "r", d, e, f)
    mixer.tick(0.0)
    assert level(f.heard()) == {-32768}


def test_muted_leg_contributes_nothing_but_hears(mixer: ConferenceMixer) -> None:
    a, b, c = FakeLeg("a", voice=tone(100)), FakeLeg("b", voice=tone(70)), FakeLeg("c")
    room_of(mixer, "r", a, b, c)
    mixer.set_muted("a", True)
    assert mixer.is_muted("a")
    mixer.tick(0.0)
    assert level(c.heard()) == {70}
    assert level(a.heard()) == {70}
    assert level(b.heard()) == {0}
    mixer.set_muted("a", False)
    mixer.tick(0.02)
    assert level(c.heard()) == {170}


def test_solo_leg_hears_its_prompt_then_silence(mixer: ConferenceMixer,
                                                encoders: FakeEncoders) -> None:
    leg = FakeLeg("ivr", voice=tone(999))  # what the caller says is not heard by anyone
    mixer.add_leg(None, leg)
    clip = to_frames(np.arange(1, 321, dtype=np.int16))  # two frames
    mixer.set_prompt("ivr", PromptPlayer(clip, "welcome"))
    mixer.tick(0.0)
    mixer.tick(0.02)
    assert np.array_equal(leg.heard(0), clip[0])
    assert np.array_equal(leg.heard(1), clip[1])
    assert mixer.next_event() is None
    mixer.tick(0.04)  # the prompt ran out on this tick
    assert mixer.next_event() == PromptFinished("ivr", "welcome")
    assert mixer.next_event() is None
    assert level(leg.heard()) == {0}
    mixer.tick(0.06)
    assert level(leg.heard()) == {0}
    assert len(leg.sent) == 4


def test_solo_silence_is_encoded_once_per_codec(mixer: ConferenceMixer,
                                                encoders: FakeEncoders) -> None:
    for i in range(4):
        mixer.add_leg(None, FakeLeg(f"s{i}"))
    mixer.add_leg(None, FakeLeg("t", codec_name="PCMA"))
    mixer.tick(0.0)
    assert encoders.calls == Counter({"PCMU": 1, "PCMA": 1})


def test_stopped_prompt_reports_nothing(mixer: ConferenceMixer) -> None:
    leg = FakeLeg("ivr")
    mixer.add_leg(None, leg)
    player = PromptPlayer(to_frames(tone(5)), "welcome")
    mixer.set_prompt("ivr", player)
    mixer.set_prompt("ivr", None)  # barge-in
    assert player.stopped
    mixer.tick(0.0)
    mixer.tick(0.02)
    assert mixer.next_event() is None
    assert level(leg.heard()) == {0}


def test_replacing_a_prompt_stops_the_old_one(mixer: ConferenceMixer) -> None:
    mixer.add_leg(None, FakeLeg("ivr"))
    first = PromptPlayer(to_frames(tone(5)), "welcome")
    mixer.set_prompt("ivr", first)
    mixer.set_prompt("ivr", PromptPlayer(to_frames(tone(6)), "invalid_pin"))
    assert first.stopped
    mixer.tick(0.0)
    mixer.tick(0.02)
    assert mixer.next_event() == PromptFinished("ivr", "invalid_pin")


def test_overlay_is_heard_by_one_leg_over_the_room(mixer: ConferenceMixer,
                                                   encoders: FakeEncoders) -> None:
    a, b, c = FakeLeg("a", voice=tone(100)), FakeLeg("b"), FakeLeg("c")
    room_of(mixer, "r", a, b, c)
    mixer.play_to_leg("b", PromptPlayer(to_frames(tone(40)), "muted"))
    mixer.tick(0.0)
    assert level(b.heard()) == {140}
    assert level(c.heard()) == {100}
    assert level(a.heard()) == {0}
    assert encoders.calls["PCMU"] == 3  # a's N-1, b's own, the shared one for c
    mixer.tick(0.02)
    assert mixer.next_event() == PromptFinished("b", "muted")
    assert level(b.heard()) == {100}
    assert b.sent[-1] is c.sent[-1]  # back to sharing


def test_overlay_on_a_speaking_leg_and_on_a_solo_prompt(mixer: ConferenceMixer) -> None:
    a, b = FakeLeg("a", voice=tone(100)), FakeLeg("b", voice=tone(50))
    room_of(mixer, "r", a, b)
    mixer.play_to_leg("a", PromptPlayer(to_frames(tone(1)), "x"))
    solo = FakeLeg("s")
    mixer.add_leg(None, solo)
    mixer.set_prompt("s", PromptPlayer(to_frames(tone(1000)), "welcome"))
    mixer.play_to_leg("s", PromptPlayer(to_frames(tone(-3)), "beep"))
    mixer.tick(0.0)
    assert level(a.heard()) == {51}
    assert level(solo.heard()) == {997}


def test_room_tone_is_heard_by_every_listener(mixer: ConferenceMixer) -> None:
    a, b, c = FakeLeg("a", voice=tone(100)), FakeLeg("b"), FakeLeg("c")
    room_of(mixer, "r", a, b, c)
    other = FakeLeg("o")
    mixer.add_leg("elsewhere", other)
    mixer.play_to_room("r", PromptPlayer(to_frames(np.full(320, 9, dtype=np.int16)), "join"))
    mixer.tick(0.0)
    assert level(a.heard()) == {9}
    assert level(b.heard()) == {109}
    assert level(other.heard()) == {0}
    mixer.tick(0.02)
    mixer.tick(0.04)
    assert level(b.heard()) == {100}
    assert mixer.next_event() is None  # room tones report nothing


def test_move_from_ivr_into_room_stops_the_prompt(mixer: ConferenceMixer) -> None:
    caller = FakeLeg("caller", voice=tone(50))
    other = FakeLeg("other", voice=tone(60))
    mixer.add_leg("r", other)
    mixer.add_leg(None, caller)
    player = PromptPlayer(to_frames(np.full(1600, 5, dtype=np.int16)), "joining")
    mixer.set_prompt("caller", player)
    mixer.tick(0.0)
    assert level(other.heard()) == {0}  # the IVR caller is not in the room yet
    mixer.move_leg("caller", "r")
    assert player.stopped
    assert mixer.room_of("caller") == "r"
    mixer.tick(0.02)
    assert level(caller.heard()) == {60}
    assert level(other.heard()) == {50}
    mixer.move_leg("caller", None)
    mixer.tick(0.04)
    assert level(other.heard()) == {0}
    assert level(caller.heard()) == {0}


def test_move_between_rooms_keeps_mute(mixer: ConferenceMixer) -> None:
    a = FakeLeg("a", voice=tone(10))
    b = FakeLeg("b")
    mixer.add_leg("r1", a)
    mixer.add_leg("r2", b)
    mixer.set_muted("a", True)
    mixer.move_leg("a", "r2")
    assert mixer.rooms() == ["r2"]  # r1 is gone with its last member
    mixer.tick(0.0)
    assert level(b.heard()) == {0}


def test_remove_leg(mixer: ConferenceMixer) -> None:
    a, b = FakeLeg("a", voice=tone(10)), FakeLeg("b")
    room_of(mixer, "r", a, b)
    mixer.remove_leg("a")
    mixer.remove_leg("a")  # twice is harmless
    assert "a" not in mixer
    mixer.tick(0.0)
    assert a.sent == [] and a.pulls == []
    assert level(b.heard()) == {0}
    mixer.remove_leg("b")
    assert mixer.rooms() == []


def test_sources_and_listeners_only(mixer: ConferenceMixer) -> None:
    browser = FakeLeg("browser-stream", voice=tone(70))
    recorder = FakeLeg("recorder", voice=tone(1))
    phone = FakeLeg("phone", voice=tone(500))
    mixer.add_source("r", "browser-stream", browser)
    mixer.add_listener("r", "recorder", recorder)
    mixer.add_leg("r", phone)
    mixer.tick(0.0)
    assert browser.sent == []  # a source hears nothing
    assert recorder.pulls == []  # a listener says nothing
    assert level(phone.heard()) == {70}
    assert level(recorder.heard()) == {570}
    assert mixer.members("r") == ["browser-stream", "phone", "recorder"]


def test_set_prompt_on_a_room_leg_is_ignored(mixer: ConferenceMixer) -> None:
    a = FakeLeg("a")
    mixer.add_leg("r", a)
    mixer.set_prompt("a", PromptPlayer(to_frames(tone(3)), "welcome"))
    mixer.tick(0.0)
    assert level(a.heard()) == {0}


def test_misuse(mixer: ConferenceMixer) -> None:
    mixer.add_leg("r", FakeLeg("a"))
    with pytest.raises(MixerError):
        mixer.add_leg("r", FakeLeg("a"))
    with pytest.raises(MixerError):
        mixer.set_muted("nobody", True)
    with pytest.raises(MixerError):
        mixer.move_leg("nobody", "r")


class BrokenLeg(FakeLeg):
    def pull_frame(self, now: float) -> Pcm | None:
        raise RuntimeError("socket gone")

    def send_payload(self, payload: bytes) -> None:
        raise RuntimeError("socket gone")


def test_a_failing_leg_does_not_stop_the_others(mixer: ConferenceMixer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.mixer")
    broken = BrokenLeg("broken")
    wrong = FakeLeg("wrong", voice=np.ones(80, dtype=np.int16) * 1000)
    a, b = FakeLeg("a", voice=tone(100)), FakeLeg("b")
    room_of(mixer, "r", broken, wrong, a, b)
    for k in range(5):
        mixer.tick(k * 0.02)
    assert len(b.sent) == 5
    assert level(b.heard()) == {100}  # the 80-sample frame was dropped
    # Ten failures (pull and send, five ticks) are logged once, not fifty times a second.
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


def sine(freq: float, rate: int, frames: int, amplitude: float = 8000.0) -> list[Pcm]:
    t = np.arange(frames * rate // 50) / rate
    pcm = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return list(pcm.reshape(frames, rate // 50))


@dataclass
class RatedLeg(FakeLeg):
    sample_rate: int = 8000
    frames: list[Pcm] = field(default_factory=list)

    def pull_frame(self, now: float) -> Pcm | None:
        self.pulls.append(now)
        return self.frames.pop(0) if self.frames else None


class WideEncoders(FakeEncoders):
    """Accepts 160 (narrowband codecs) or 320 (G722) samples."""

    def __call__(self, codec: str) -> EncodeFn:
        self.lookups.append(codec)
        want = 320 if codec == "G722" else 160

        def encode(pcm: Pcm) -> bytes:
            assert pcm.dtype == np.int16 and pcm.shape == (want,), (codec, pcm.shape)
            self.calls[codec] += 1
            return codec.encode() + b"|" + pcm.tobytes()

        return encode


def dominant(frames: list[Pcm], rate: int) -> float:
    pcm = np.concatenate(frames).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_a_room_of_narrowband_phones_mixes_at_8_khz_without_resampling() -> None:
    mixer = ConferenceMixer(WideEncoders())
    a = RatedLeg("a", frames=[tone(100)] * 3)
    b = RatedLeg("b")
    room_of(mixer, "r", a, b)
    assert mixer.room_rate("r") == 8000
    mixer.tick(0.0)
    assert level(b.heard()) == {100}  # bit-exact: no filter in the way


def test_wideband_and_narrowband_phones_hear_each_other() -> None:
    mixer = ConferenceMixer(WideEncoders())
    wide = RatedLeg("wide", codec_name="G722", sample_rate=16000,
                    frames=sine(5000, 16000, 25) + sine(1000, 16000, 25))
    narrow = RatedLeg("narrow", frames=[np.zeros(160, np.int16)] * 25 + sine(700, 8000, 25))
    room_of(mixer, "r", wide, narrow)
    assert mixer.room_rate("r") == 16000
    for k in range(50):
        mixer.tick(k * 0.02)
    heard_wide = [decode(p)[1] for p in wide.sent]
    heard_narrow = [decode(p)[1] for p in narrow.sent]
    assert all(len(f) == 320 for f in heard_wide) and all(len(f) == 160 for f in heard_narrow)
    # The narrowband phone hears the wideband one's 1 kHz, and not its 5 kHz (above 4 kHz).
    assert abs(dominant(heard_narrow[30:], 8000) - 1000) < 30
    assert np.abs(np.concatenate(heard_narrow[5:20])).max() < 400
    # The wideband phone hears the narrowband one's 700 Hz, upsampled.
    assert abs(dominant(heard_wide[30:], 16000) - 700) < 30
    # When the wideband phone leaves, the room goes back to 8 kHz.
    mixer.remove_leg("wide")
    assert mixer.room_rate("r") == 8000


def test_stateful_codecs_never_share_an_encoder() -> None:
    enc = WideEncoders()
    mixer = ConferenceMixer(enc)
    speaker = RatedLeg("s", codec_name="G722", sample_rate=16000, frames=sine(500, 16000, 5))
    quiet = [RatedLeg(f"q{i}", codec_name="G722", sample_rate=16000) for i in range(3)]
    room_of(mixer, "r", speaker, *quiet)
    for k in range(5):
        mixer.tick(k * 0.02)
    # G.722 keeps ADPCM state: every phone's stream comes from its own encoder, every tick,
    # whether it speaks or not (a hand-over between encoders desynchronises its decoder).
    assert enc.lookups.count("G722") == 4
    assert enc.calls["G722"] == 20
    assert quiet[0].sent == quiet[1].sent  # the same mix, each encoded separately
    assert quiet[0].sent[0] is not quiet[1].sent[0]


def test_stateless_codecs_share_one_frame_with_one_encoder_per_room() -> None:
    enc = WideEncoders()
    mixer = ConferenceMixer(enc)
    speaker = RatedLeg("s", frames=[tone(500)] * 5)
    quiet = [RatedLeg(f"q{i}") for i in range(3)]
    room_of(mixer, "r", speaker, *quiet)
    for k in range(5):
        mixer.tick(k * 0.02)
    assert enc.lookups.count("PCMU") == 5  # 4 listeners + 1 shared
    assert enc.calls["PCMU"] == 10  # per tick: the speaker's N-1 and the shared mix
    assert all(q.sent[0] is quiet[0].sent[0] for q in quiet)


def test_voice_tap_sees_what_the_caller_contributed() -> None:
    mixer = ConferenceMixer(WideEncoders())
    a = RatedLeg("a", frames=[tone(500), tone(3), tone(500), tone(500)])
    b = RatedLeg("b")
    room_of(mixer, "r", a, b)
    seen: list[object] = []
    mixer.set_tap("a", lambda f, voiced: seen.append(None if f is None else int(f[0])))
    mixer.tick(0.0)
    mixer.tick(0.02)  # below the silence threshold: given (the uplink keeps a hangover)
    mixer.set_muted("a", True)
    mixer.tick(0.04)  # muted: None
    mixer.set_muted("a", False)
    mixer.tick(0.06)
    assert seen == [500, 3, None, 500]



def test_voice_taps_run_after_the_rooms_are_mixed_with_the_frame_they_had() -> None:
    """Mixing queues the taps; run_taps() runs them after the tick's packets are queued, so
    their codec work never delays a phone's packet. The frame is a copy: a source that
    reuses its buffer for the next pull does not change what the tap sees."""
    mixer = ConferenceMixer(WideEncoders())
    buffer = tone(500)
    a = RatedLeg("a", frames=[buffer])
    b = RatedLeg("b")
    room_of(mixer, "r", a, b)
    order: list[str] = []
    b.send_payload = lambda payload: order.append("b sent")  # type: ignore[method-assign]
    mixer.set_tap("a", lambda f, voiced: order.append(f"tap {None if f is None else int(f[0])}"))
    mixer.begin_tick(0.0)
    assert not mixer.run_slice(0)
    assert order == ["b sent"] and mixer.taps_pending
    buffer[:] = 7  # the source's buffer is reused
    assert not mixer.run_taps(0)
    assert order == ["b sent", "tap 500"] and not mixer.taps_pending


def test_run_taps_in_slices_and_begin_tick_runs_the_ones_left() -> None:
    mixer = ConferenceMixer(WideEncoders())
    legs = [RatedLeg(f"l{i}", frames=[tone(100 + i)] * 3) for i in range(5)]
    room_of(mixer, "r", *legs)
    seen: list[tuple[float, int]] = []
    for i, leg in enumerate(legs):
        mixer.set_tap(leg.leg_id, lambda f, voiced, i=i: seen.append((i, int(f[0]))))
    mixer.begin_tick(0.0)
    mixer.run_slice(0)
    assert mixer.run_taps(2) and mixer.run_taps(2)  # 4 of 5 run
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    mixer.set_tap("l1", None)
    mixer.begin_tick(0.02)  # the last tap of tick 0 runs first
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    mixer.run_slice(0)
    assert not mixer.run_taps(0)
    assert [i for i, _ in seen][5:] == [0, 2, 3, 4]  # l1's tap was unset: skipped


def test_skipped_ticks_drain_the_sources_and_move_the_listeners_clocks_on() -> None:
    mixer = ConferenceMixer(WideEncoders())
    a = RatedLeg("a", frames=[tone(100), tone(200), tone(300), tone(400)])
    b = RatedLeg("b", frames=[tone(500)] * 4)
    skipped: list[int] = []
    b.skip_frames = skipped.append  # type: ignore[attr-defined]  # a's listener cannot
    room_of(mixer, "r", a, b)
    mixer.skip(2, 0.04)
    assert a.pulls == [0.04, 0.04] and b.pulls == [0.04, 0.04] and skipped == [2]
    mixer.tick(0.06)
    assert b.heard()[0] == 300  # a's third frame: the two skipped were dropped
    mixer.skip(0, 0.08)
    assert skipped == [2]


def test_skipped_ticks_give_the_voice_taps_empty_frames_after_the_unfinished_tick() -> None:
    # The tap's stream to the bridge counts frames to keep its RTP timestamps: a skipped
    # tick must be a frame too, or the stream falls behind the wall clock for good.
    mixer = ConferenceMixer(WideEncoders())
    a = RatedLeg("a", frames=[tone(100)] * 4)
    b = RatedLeg("b", frames=[tone(500)] * 4)
    room_of(mixer, "r", a, b)
    seen: list[int | None] = []
    mixer.set_tap("a", lambda frame, voiced: seen.append(None if frame is None
                                                         else int(frame[0])))
    mixer.begin_tick(0.0)  # a tick left unfinished: its tap comes before the skipped ones
    mixer.skip(2, 0.06)
    assert seen == [100, None, None]
    mixer.tick(0.08)
    assert seen == [100, None, None, 100]


@dataclass
class OwnEncoderLeg(RatedLeg):
    """A leg that brings its own encoders (as PhoneLeg does from the phone's SDP)."""

    made: list[int] = field(default_factory=list)  # the rate of each encoder made

    def new_encoder(self) -> EncodeFn:
        rate = self.sample_rate
        self.made.append(rate)

        def encode(pcm: Pcm) -> bytes:
            assert pcm.shape == (rate // 50,), (rate, pcm.shape)
            return f"own{rate}".encode() + b"|" + pcm.tobytes()

        return encode


def test_a_listener_with_its_own_encoder_gets_it_and_a_codec_change_is_taken() -> None:
    enc = WideEncoders()
    mixer = ConferenceMixer(enc)
    opus = OwnEncoderLeg("opus", codec_name="OPUS", sample_rate=8000,
                         frames=[np.zeros(160, np.int16)] * 2 + [np.zeros(320, np.int16)] * 2)
    other = RatedLeg("pcmu", frames=[tone(100)] * 4)
    room_of(mixer, "r", opus, other)
    assert "OPUS" not in enc.lookups and opus.made == [8000]
    assert mixer.room_rate("r") == 8000  # an 8 kHz Opus phone keeps the room narrowband
    mixer.tick(0.0)
    assert decode(opus.sent[-1])[0] == "own8000" and level(decode(opus.sent[-1])[1]) == {100}
    # A re-INVITE makes it a 16 kHz stream: a new encoder at that rate, the room goes wideband.
    opus.sample_rate = 16000
    mixer.codec_changed("opus")
    assert opus.made == [8000, 16000] and mixer.room_rate("r") == 16000
    mixer.tick(0.02)
    mixer.tick(0.04)
    assert decode(opus.sent[-1])[0] == "own16000" and len(decode(opus.sent[-1])[1]) == 320
    assert len(other.heard()) == 160
    # A G.711 phone that changes codec gets the lookup's encoder for the new one.
    other.codec_name = "PCMA"
    mixer.codec_changed("pcmu")
    mixer.tick(0.06)
    assert enc.lookups[-1] == "PCMA" and decode(other.sent[-1])[0] == "PCMA"
    with pytest.raises(MixerError):
        mixer.codec_changed("nobody")
