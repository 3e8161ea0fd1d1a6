"""RtpSession with G.722 and Opus over UDP on 127.0.0.1: frame sizes, timestamps, the
audio hook, FEC on loss, 40 ms packets and DTMF on the 48 kHz clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import numpy as np
import opuslib
import pytest

from gateway.call import PhoneLeg
from gateway.media.codecs import codec_by_name
from gateway.media.dtmf import TelephoneEvent
from gateway.media.opus import OpusCodec
from gateway.media.rtp import RtpPacket
from gateway.rtp_session import PortAllocator, RtpSession

HOST = "127.0.0.1"


class Phone(asyncio.DatagramProtocol):
    """A bare UDP socket playing the phone."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)

    def send(self, packet: RtpPacket, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(packet.serialize(), (HOST, port))

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def rtp(self) -> list[RtpPacket]:
        out = []
        for data in self.received:
            with contextlib.suppress(ValueError):
                if not 192 <= data[1] <= 223:
                    out.append(RtpPacket.parse(data))
        return out

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture
async def phone_and_session() -> AsyncIterator[tuple[Phone, RtpSession]]:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(Phone, local_addr=(HOST, 0))
    session = RtpSession("call-wb", PortAllocator(42000, 42999), HOST, sip_host=HOST)
    await session.open()
    yield phone, session
    session.close()
    phone.close()


def tones(rate: int, frames: int, freqs: list[int], amp: float = 7000.0) -> np.ndarray:
    """A tone that changes pitch every 5 frames (a lost frame cannot be guessed)."""
    fs = rate // 50
    per_sample = np.repeat(np.resize(np.array(freqs, dtype=np.float64), frames // 5 + 1),
                           5 * fs)[: fs * frames]
    return np.rint(amp * np.sin(np.cumsum(2 * np.pi * per_sample / rate))).astype(np.int16)


async def play(phone: Phone, session: RtpSession, payloads: list[bytes | None], step: int,
               ticks_per_packet: int = 1, drain: int = 10, pt: int = 107) -> list[np.ndarray]:
    """The phone sends one packet every ``ticks_per_packet`` 20 ms ticks (None: lost), the
    gateway pulls a frame every tick; returns the frames pulled."""
    loop = asyncio.get_running_loop()
    out: list[np.ndarray] = []
    for tick in range(len(payloads) * ticks_per_packet + drain):
        k, rest = divmod(tick, ticks_per_packet)
        if rest == 0 and k < len(payloads) and payloads[k] is not None:
            phone.send(RtpPacket(pt, 500 + k, 90000 + step * k, 0xCAFE, marker=k == 0,
                                 payload=payloads[k] or b""), session.local_port)
        await asyncio.sleep(0.02)
        frame = session.pull_frame(loop.time())
        if frame is not None:
            out.append(frame)
    return out


def steady(session: RtpSession) -> bool:
    """No stall of this process broke the stream (the one underrun is its end): exact
    comparisons hold."""
    return session.stats()["jb_underruns"] <= 1


def first_match(frames: list[np.ndarray], expected: list[np.ndarray], k: int = 5) -> int:
    """Where ``expected[0]`` is among ``frames`` (found by the distinctive ``expected[k]``)."""
    for i, f in enumerate(frames):
        if i >= k and np.array_equal(f, expected[k]):
            return i - k
    raise AssertionError("the expected frames never came out")


# --- G.722 -----------------------------------------------------------------------------


async def test_g722_session_frames_and_timestamps(
        phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    assert session.sample_rate == 8000 and session.frame_samples == 160   # no codec yet
    codec = codec_by_name("G722")
    session.set_remote(HOST, phone.port, codec, 101)
    assert session.sample_rate == 16000 and session.frame_samples == 320
    leg = PhoneLeg("leg1", session, "G722")
    assert leg.sample_rate == 16000
    n = np.arange(320 * 30)
    pcm = (5000 * np.sin(2 * np.pi * 5000 * n / 16000)).astype(np.int16)
    sender = codec_by_name("G722")
    payloads: list[bytes | None] = [sender.encode(f) for f in np.split(pcm, 30)]
    frames = await play(phone, session, payloads, step=160, pt=9)
    assert len(frames) >= 25
    assert all(f.shape == (320,) and f.dtype == np.int16 for f in frames)
    got = np.concatenate(frames).astype(np.float64)[3200:]
    spectrum = np.abs(np.fft.rfft(got * np.hanning(got.size)))
    assert abs(np.argmax(spectrum) * 16000 / got.size - 5000) < 20      # wideband survived
    # sending: timestamps advance by 160 per 20 ms frame on G.722's 8 kHz clock
    for _ in range(3):
        session.send_payload(sender.silence())
    assert await wait_for(lambda: len(phone.rtp()) == 3)
    p = phone.rtp()
    assert [(x.timestamp - p[0].timestamp) & 0xFFFFFFFF for x in p] == [0, 160, 320]
    assert {x.payload_type for x in p} == {9}
    # the same codec again (a re-INVITE) keeps the running decoder
    session.set_remote(HOST, phone.port, codec_by_name("G722"), 101)
    assert session.codec is codec


# --- Opus ------------------------------------------------------------------------------


async def test_opus_session_hook_sees_every_audio_packet(
        phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    seen: list[tuple[int, bytes, int, bool]] = []
    session.on_audio_packet = lambda *args: seen.append(args)
    session.set_remote(HOST, phone.port, codec_by_name("opus", 107, sample_rate=16000), 101)
    sender = OpusCodec(107, 16000)
    pcm = tones(16000, 20, [440, 880])
    payloads = [sender.encode(f) for f in np.split(pcm, 20)]
    # a DTMF packet between: not audio, not for the hook
    phone.send(RtpPacket(101, 499, 90000, 0xCAFE, payload=TelephoneEvent(5, False, 10, 0)
                         .serialize()), session.local_port)
    frames = await play(phone, session, list(payloads), step=960)
    assert [s[1] for s in seen] == payloads
    assert [s[2] - 90000 for s in seen] == [960 * k for k in range(20)]
    assert [s[0] for s in seen] == [107] * 20 and [s[3] for s in seen] == [True] + [False] * 19
    assert all(f.shape == (320,) for f in frames)
    reference = OpusCodec(107, 16000)
    expected = [reference.decode(p) for p in payloads]
    if steady(session):
        start = first_match(frames, expected)
        assert all(np.array_equal(f, e) for f, e in zip(frames[start:], expected, strict=False))
    # a hook that raises costs nothing but a counter
    def broken(pt: int, payload: bytes, ts: int, marker: bool) -> None:
        raise RuntimeError("hook failed")

    session.on_audio_packet = broken
    await play(phone, session, [sender.encode(np.zeros(320, np.int16))], step=960, drain=2)
    assert session.counters.internal_errors == 1
    # sending: 960 ticks per frame on the 48 kHz clock
    for _ in range(3):
        session.send_payload(sender.silence())
    assert await wait_for(lambda: len(phone.rtp()) == 3)
    p = phone.rtp()
    assert [(x.timestamp - p[0].timestamp) & 0xFFFFFFFF for x in p] == [0, 960, 1920]


async def test_opus_lost_packet_is_rebuilt_from_fec(
        phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    session.set_remote(HOST, phone.port, codec_by_name("opus", 107, sample_rate=16000), 101)
    sender = OpusCodec(107, 16000)
    payloads = [sender.encode(f) for f in np.split(tones(16000, 30, [300, 700, 450, 900]), 30)]
    lost = 18
    frames = await play(phone, session, [p if k != lost else None
                                         for k, p in enumerate(payloads)], step=960)
    reference = OpusCodec(107, 16000)
    expected = [reference.decode(p).astype(np.float64) for p in payloads]
    assert session.stats()["jb_lost"] >= 1
    if not steady(session):
        return
    start = first_match(frames, [e.astype(np.int16) for e in expected])
    assert session.stats()["jb_lost"] == 1
    rebuilt = frames[start + lost].astype(np.float64)
    level = np.sqrt(np.mean(expected[lost] ** 2))
    # FEC: a few % of the level off; concealment from the past would be ~90 % off here
    assert np.sqrt(np.mean((rebuilt - expected[lost]) ** 2)) < 0.25 * level


async def test_opus_forty_ms_packets(phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    session.set_remote(HOST, phone.port, codec_by_name("opus", 107, sample_rate=8000), None)
    assert session.frame_samples == 160
    enc = opuslib.Encoder(8000, 1, opuslib.APPLICATION_VOIP)
    pcm = tones(8000, 24, [300, 600])
    payloads: list[bytes | None] = [enc.encode(c.tobytes(), 320) for c in np.split(pcm, 12)]
    frames = await play(phone, session, payloads, step=1920, ticks_per_packet=2)
    reference = OpusCodec(107, 8000)
    expected = np.concatenate([reference.decode(p) for p in payloads if p is not None])
    assert all(f.shape == (160,) for f in frames)
    if steady(session):
        start = first_match(frames, np.split(expected, 24))
        assert np.array_equal(np.concatenate(frames[start : start + 24]), expected)
        assert session.stats()["jb_lost"] == 0


async def test_corrupt_opus_payload_is_concealed(
        phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    session.set_remote(HOST, phone.port, codec_by_name("opus", 107), None)
    sender = OpusCodec(107, 16000)
    payloads: list[bytes | None] = [sender.encode(f) for f in np.split(tones(16000, 8, [440]), 8)]
    payloads[5] = bytes([0x0B]) + b"\xff" * 3          # code 3, impossible frame count
    frames = await play(phone, session, payloads, step=960)
    assert session.stats()["rx_undecodable"] == 1
    assert len(frames) >= 8 and all(f.shape == (320,) for f in frames)


async def test_dtmf_with_opus_counts_on_the_48khz_clock(
        phone_and_session: tuple[Phone, RtpSession]) -> None:
    phone, session = phone_and_session
    session.set_remote(HOST, phone.port, codec_by_name("opus", 107), 101)
    sender = OpusCodec(107, 16000)
    session.send_payload(sender.silence())
    assert session.send_dtmf("7", duration_ms=100)
    assert await wait_for(lambda: sum(p.payload_type == 101 for p in phone.rtp()) >= 7)
    await asyncio.sleep(0.15)
    session.send_payload(sender.silence())
    assert await wait_for(lambda: phone.rtp()[-1].payload_type == 107)
    packets = phone.rtp()
    audio0, events, after = packets[0], packets[1:-1], packets[-1]
    assert {p.payload_type for p in events} == {101}
    # the event sits on the audio's 48 kHz timeline, its duration counted in 48 kHz ticks
    assert {p.timestamp for p in events} == {(audio0.timestamp + 960) & 0xFFFFFFFF}
    final = TelephoneEvent.parse(events[-1].payload)
    assert final.end and final.event == 7 and final.duration == 4800
    assert (after.timestamp - events[0].timestamp) & 0xFFFFFFFF >= 4800
    # and events from the phone in 48 kHz units are understood
    got: list[str] = []
    session.on_dtmf = got.append
    for i, duration in enumerate((960, 1920, 2880, 2880)):
        phone.send(RtpPacket(101, 900 + i, 480000, 0xCAFE, marker=i == 0,
                             payload=TelephoneEvent(3, i == 3, 10, duration).serialize()),
                   session.local_port)
    assert await wait_for(lambda: got == ["3"])
