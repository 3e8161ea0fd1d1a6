"""ConferenceAudio: endpoints asked for in the background, released whatever the timing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gateway.browser_audio import parse_rtp
from gateway.conference_audio import ConferenceAudio
from gateway.mixer import ConferenceMixer
from gateway.uplink import LEVEL_SILENT, audio_level


@dataclass(frozen=True)
class Alloc:
    endpoint_id: str
    media: str


class Provider:
    """focus.phones.PhoneMedia's shape; `gate` holds every allocation until set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.live: set[tuple[str, str]] = set()
        self.released: list[tuple[str, str]] = []

    async def open_room(self, room: str) -> Alloc:
        await self.gate.wait()
        self.live.add((room, "mix"))
        return Alloc("mix", f"local:{room}/mix")

    async def attach(self, room: str, participant_id: str, ssrc: int) -> Alloc:
        await self.gate.wait()
        self.live.add((room, participant_id))
        return Alloc(participant_id, f"local:{room}/{participant_id}")

    async def release(self, room: str, endpoint_id: str) -> None:
        self.released.append((room, endpoint_id))
        self.live.discard((room, endpoint_id))


class Link:
    def __init__(self, media: str) -> None:
        self.media = media
        self.sent: list[bytes] = []
        self.closed = False

    def send_rtp(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


class Leg:
    codec_name = "PCMU"
    sample_rate = 8000

    def __init__(self, leg_id: str, amplitude: int) -> None:
        self.leg_id = leg_id
        self.amplitude = amplitude
        self.sent: list[bytes] = []

    def pull_frame(self, now: float) -> np.ndarray:
        t = np.arange(160) / 8000
        return (self.amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)

    def send_payload(self, payload: bytes) -> None:
        self.sent.append(payload)


def setup() -> tuple[ConferenceAudio, ConferenceMixer, Provider, dict[str, Link]]:
    from gateway.media.codecs import codec_by_name

    mixer = ConferenceMixer(lambda name: codec_by_name(name).encode)
    provider = Provider()
    links: dict[str, Link] = {}

    def connect(media: str, on_rtp: object, on_rtcp: object) -> Link:
        links[media] = Link(media)
        return links[media]

    audio = ConferenceAudio(mixer, provider, connect, lambda: 0.0)
    return audio, mixer, provider, links


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_speaking_caller_is_sent_as_opus_and_everything_is_released() -> None:
    audio, mixer, provider, links = setup()
    loud, quiet = Leg("l1", 8000), Leg("l2", 0)
    mixer.add_leg("r", loud)
    mixer.add_leg("r", quiet)
    audio.set_receivers("r", 1)  # a browser listens
    audio.caller_joined("r", "p1", "l1", 8000)
    audio.caller_joined("r", "p2", "l2", 8000)
    await settle()
    assert provider.live == {("r", "mix"), ("r", "p1"), ("r", "p2")}
    for k in range(10):
        audio.before_tick(k * 0.02)
        mixer.tick(k * 0.02)
    assert len(links["local:r/p1"].sent) == 10  # one Opus packet per tick of speech
    assert links["local:r/p2"].sent == []  # silence sends nothing
    parsed = parse_rtp(links["local:r/p1"].sent[0], 1)
    assert parsed is not None and parsed[4] == audio_level(loud.pull_frame(0.0)) < LEVEL_SILENT
    assert audio.stats()["uplink_packets"] == 10
    audio.caller_left("p1")
    audio.caller_left("p2")
    await audio.close()
    assert provider.live == set() and audio.rooms == {} and audio.callers == {}
    assert all(link.closed for link in links.values())
    assert audio.stats()["media_tasks"] == 0


async def test_caller_gone_before_its_endpoint_came_back_is_released() -> None:
    audio, mixer, provider, links = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    provider.gate.clear()
    audio.caller_joined("r", "p1", "l1", 8000)
    audio.caller_left("p1")
    assert audio.rooms == {}
    provider.gate.set()
    await settle()
    await audio.close()
    assert provider.live == set()
    assert sorted(provider.released) == [("r", "mix"), ("r", "p1")]
    assert links == {}  # nothing was ever connected


async def test_a_failing_bridge_is_counted_and_leaks_nothing() -> None:
    audio, mixer, provider, _ = setup()

    async def broken(room: str, participant_id: str, ssrc: int) -> Alloc:
        raise TimeoutError("bridge away")

    provider.attach = broken  # type: ignore[method-assign]
    mixer.add_leg("r", Leg("l1", 8000))
    audio.caller_joined("r", "p1", "l1", 8000)
    await settle()
    mixer.tick(0.0)  # the tap has no uplink: nothing happens
    audio.caller_left("p1")
    await audio.close()
    assert audio.failures == 1 and provider.live == set()


async def test_wideband_callers_get_their_own_opus_complexity() -> None:
    from gateway.conference_audio import AudioSettings
    from gateway.media.opus import OpusCodec

    audio, mixer, _, _ = setup()
    audio.settings = AudioSettings(opus_complexity=1, opus_complexity_wideband=6)
    wide = Leg("l2", 0)
    wide.sample_rate = 16000
    mixer.add_leg("r", Leg("l1", 0))
    mixer.add_leg("r", wide)
    audio.set_receivers("r", 1)
    audio.caller_joined("r", "nb", "l1", 8000)
    audio.caller_joined("r", "wb", "l2", 16000)
    await settle()
    encoders = {pid: caller.uplink.encoder for pid, caller in audio.callers.items()
                if caller.uplink is not None}
    assert isinstance(encoders["nb"], OpusCodec) and isinstance(encoders["wb"], OpusCodec)
    assert (encoders["nb"].sample_rate, encoders["nb"].complexity) == (8000, 1)
    assert (encoders["wb"].sample_rate, encoders["wb"].complexity) == (16000, 6)
    audio.caller_left("nb")
    audio.caller_left("wb")
    await audio.close()


async def test_a_callers_codec_change_changes_how_its_voice_is_sent() -> None:
    """A re-INVITE: G.711 -> G.722 re-encodes from 16 kHz; -> Opus passes the phone's own
    packets through (the encoder is gone); unknown callers are ignored."""
    from gateway.media.opus import OpusCodec

    audio, mixer, _, links = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    audio.set_receivers("r", 1)
    audio.caller_joined("r", "p1", "l1", 8000)
    await settle()
    caller = audio.callers["p1"]
    assert caller.uplink is not None
    first = caller.uplink.encoder
    assert isinstance(first, OpusCodec) and first.sample_rate == 8000
    audio.caller_codec_changed("p1", 16000)
    wide = caller.uplink.encoder
    assert isinstance(wide, OpusCodec) and wide.sample_rate == 16000 and caller.rate == 16000
    audio.caller_codec_changed("p1", 16000, passthrough=True)
    assert caller.uplink.encoder is None and caller.rate == 0
    mixer.tick(0.0)  # the tap: a voiced frame, so the phone's packet goes through
    caller.on_phone_packet(111, b"\x0b\x01\x02", 960, True)
    link = links["local:r/p1"]
    parsed = parse_rtp(link.sent[-1], 1)
    assert parsed is not None and parsed[5] == b"\x0b\x01\x02"
    audio.caller_codec_changed("nobody", 8000)
    audio.caller_left("p1")
    await audio.close()
