"""Recordings end to end without sockets: a fake bridge sends RTP into the recorder's link,
a fake focus holds the roster; the files are read back with FFmpeg's demuxers (PyAV).
Also metadata.json, the webhook's signature and the limits."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web

from focus import Focus
from recorder.finalize import SIGNATURE_HEADER, sign, verify, webhook_body
from recorder.media import FRAME_SAMPLES, RATE, OpusEncoder
from recorder.service import RecorderSettings, RecordingRefused, Recordings
from recorder.session import Limits, Recording

T0 = 5000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Src:
    endpoint_id: str
    kind: str
    ssrc: int


@dataclass(frozen=True)
class RecvSrc:
    source: Src
    ssrc: int


class FakeLink:
    def __init__(self, on_rtp: Callable[[bytes], None]) -> None:
        self.on_rtp = on_rtp
        self.closed = False

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class Alloc:
    media: str


class FakeBridge:
    def __init__(self) -> None:
        self.sources: list[RecvSrc] = []
        self.links: dict[str, FakeLink] = {}
        self.expired: list[str] = []

    async def allocate_plain(self, room: str, endpoint_id: str) -> Alloc:
        return Alloc(f"local:{room}/{endpoint_id}")

    async def expire(self, room: str, endpoint_id: str) -> None:
        self.expired.append(endpoint_id)

    async def receive_sources(self, room: str, endpoint_id: str) -> tuple[RecvSrc, ...]:
        return tuple(self.sources)

    def connect(self, media: str, on_rtp: Callable[[bytes], None],
                on_rtcp: Callable[[bytes], None]) -> FakeLink:
        link = self.links[media] = FakeLink(on_rtp)
        return link


def rtp(ssrc: int, seq: int, ts: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class Speaker:
    def __init__(self, ssrc: int, freq: float) -> None:
        self.ssrc, self.freq, self.i = ssrc, freq, 0
        self.enc = OpusEncoder(32000)

    def packet(self) -> bytes:
        t = (np.arange(FRAME_SAMPLES) + self.i * FRAME_SAMPLES) / RATE
        pcm = (6000 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        data = rtp(self.ssrc, self.i, 1000 + self.i * 960, self.enc.encode(pcm))
        self.i += 1
        return data


def settings(tmp_path: Path, **over: Any) -> RecorderSettings:
    base: dict[str, Any] = {"path": str(tmp_path / "rec"), "min_free_mb": 0}
    base.update(over)
    return RecorderSettings(**base)


async def run_frames(rec: Recordings, clock: Clock, link: FakeLink,
                     speakers: Callable[[int], list[Speaker]], frames: int) -> None:
    for i in range(frames):
        clock.now += 0.02
        for sp in speakers(i):
            link.on_rtp(sp.packet())
        rec.tick()
        if i % 25 == 0:
            await asyncio.sleep(0)  # the owners' lookup runs


def band_energy(samples: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    hz = np.fft.rfftfreq(samples.size, 1 / RATE)
    return float(spectrum[(hz > freq - 20) & (hz < freq + 20)].sum())


async def test_two_speakers_a_late_one_and_a_muted_gap(tmp_path: Path) -> None:
    focus, bridge, clock = Focus(), FakeBridge(), Clock()
    alice = focus.join("standup", "browser", "Alice")
    phone = focus.join("standup", "phone", "+1 555 0100", mixed_by="gateway")
    changes: list[tuple[str, bool]] = []
    rec = Recordings(settings(tmp_path), focus, bridge, bridge.connect, clock=clock,
                     wall=lambda: 1_700_000_000.0 + clock.now - T0,
                     on_change=lambda room, on: changes.append((room, on)))
    assert focus.audio_receivers("standup", "gateway") == 1  # Alice
    recording = await rec.start("standup", "test")
    assert focus.audio_receivers("standup", "gateway") == 2  # and the recording
    assert changes == [("standup", True)]
    (link,) = bridge.links.values()
    a, p = Speaker(11, 440), Speaker(22, 1000)
    bridge.sources = [RecvSrc(Src(alice.id, "audio", 11), 11),
                      RecvSrc(Src(phone.id, "audio", 22), 22)]

    def who(i: int) -> list[Speaker]:
        out = [p] if i >= 100 else []  # the phone starts talking 2 s in
        if not 150 <= i < 250:  # Alice mutes for 2 s (sends nothing)
            out.append(a)
        return out

    await run_frames(rec, clock, link, who, 500)
    stopped = rec.stop("standup", "test over")
    assert stopped is recording and link.closed
    assert changes[-1] == ("standup", False) and not focus.recorded("standup")
    await rec.close()
    assert bridge.expired == [f"recorder-{recording.id[-8:]}"]
    folder = tmp_path / "rec" / recording.id
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["room"] == "standup" and meta["reason"] == "test over"
    assert {(x["id"], x["kind"], x["name"]) for x in meta["participants"]} == {
        (alice.id, "browser", "Alice"), (phone.id, "phone", "+1 555 0100")}
    tracks = {t["name"]: t for t in meta["tracks"]}
    assert tracks["Alice"]["participant"] == alice.id and tracks["Alice"]["track"] == 1
    assert tracks["+1 555 0100"]["participant"] == phone.id
    assert abs(tracks["+1 555 0100"]["start"] - 2.0) < 0.1
    assert abs(meta["duration"] - 10.0) < 0.05
    with av.open(str(folder / "tracks.mkv")) as c:
        assert [s.metadata.get("title") for s in c.streams.audio] == ["Alice", "+1 555 0100"]
    decoded = {}
    for idx in range(2):
        with av.open(str(folder / "tracks.mkv")) as c:
            decoded[idx] = np.concatenate([f.to_ndarray().reshape(-1)
                                           for f in c.decode(c.streams.audio[idx])])
    # every track as long as the wall-clock time it covers (within a frame)
    for idx, name in enumerate(("Alice", "+1 555 0100")):
        covers = meta["duration"] - tracks[name]["start"]
        assert abs(decoded[idx].size / RATE - covers) <= 0.02, name
    # Alice's track: her tone, silence while muted, not the phone's tone
    muted = decoded[0][int(3.2 * RATE):int(4.8 * RATE)]
    assert float(np.abs(muted).max()) < 0.003  # (float samples, full scale 1.0)
    assert band_energy(decoded[0], 440) > 20 * band_energy(decoded[0], 1000)
    assert band_energy(decoded[1], 1000) > 20 * band_energy(decoded[1], 440)
    with av.open(str(folder / "mix.opus")) as c:
        mix = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert abs(mix.size / RATE - 10.0) <= 0.03
    both = mix[int(6 * RATE):int(9 * RATE)]
    assert band_energy(both, 440) > 0.3 * band_energy(both, 1000) > 0
    # listed and described as the API gives them
    item = rec.describe(recording.id)
    assert item is not None and item["state"] == "done"
    assert {f["kind"] for f in item["files"]} == {"mix", "tracks", "metadata"}
    assert rec.listing("standup")[0]["id"] == recording.id and rec.listing("other") == []
    assert rec.file_path(recording.id, "../metadata.json") is None
    assert rec.file_path(recording.id, "mix.opus") == folder / "mix.opus"


async def test_refusals(tmp_path: Path) -> None:
    focus, bridge, clock = Focus(), FakeBridge(), Clock()
    rec = Recordings(settings(tmp_path), focus, bridge, bridge.connect, clock=clock)
    with pytest.raises(RecordingRefused) as info:
        await rec.start("nobody", "test")
    assert info.value.code == "empty"
    focus.join("standup", "browser", "Alice")
    await rec.start("standup", "test")
    with pytest.raises(RecordingRefused) as info:
        await rec.start("standup", "test")
    assert info.value.code == "busy"
    await rec.close()
    full = Recordings(settings(tmp_path, min_free_mb=10**12), focus, bridge, bridge.connect,
                      clock=clock)
    with pytest.raises(RecordingRefused) as info:
        await full.start("standup", "test")
    assert info.value.code == "disk"
    assert not focus.recorded("standup")


async def test_auto_stop_when_the_room_empties_and_when_idle(tmp_path: Path) -> None:
    focus, bridge, clock = Focus(), FakeBridge(), Clock()
    rec = Recordings(settings(tmp_path, idle_timeout=3.0), focus, bridge, bridge.connect,
                     clock=clock)
    bob = focus.join("standup", "browser", "Bob")
    first = await rec.start("standup", "test")
    (link,) = bridge.links.values()
    sp = Speaker(5, 300)
    await run_frames(rec, clock, link, lambda i: [sp] if i < 50 else [], 100)
    assert rec.recording_of("standup") is first  # 1 s without audio: not idle yet
    await run_frames(rec, clock, link, lambda i: [], 110)
    assert rec.recording_of("standup") is None and first.reason == "idle"
    second = await rec.start("standup", "test")
    focus.leave(bob.id, "hangup")
    rec.tick()
    assert rec.recording_of("standup") is None and second.reason == "room empty"
    await rec.close()


async def test_limits_duration_and_size(tmp_path: Path) -> None:
    clock = Clock()
    short = Recording("r1", "standup", tmp_path / "r1", T0, 0.0,
                      Limits(max_duration=2.0, max_bytes=10**9))
    assert short.tick(T0 + 1.0) is None and short.tick(T0 + 2.0) == "max duration"
    small = Recording("r2", "standup", tmp_path / "r2", T0, 0.0,
                      Limits(max_bytes=20_000))
    sp = Speaker(1, 500)
    reason = None
    clock.now = T0
    for _ in range(1000):
        clock.now += 0.02
        small.on_rtp(sp.packet(), clock.now)
        reason = small.tick(clock.now)
        if reason:
            break
    assert reason == "max size" and 20_000 <= small.bytes() < 40_000
    assert small.on_rtp(b"\x00" * 5, clock.now) is None and small.malformed == 1
    small.stop(clock.now, 1.0, reason)
    short.stop(T0 + 2, 1.0, "max duration")


def test_webhook_signature() -> None:
    meta = {"id": "x", "room": "r", "state": "done", "files": []}
    body = webhook_body(meta)
    header = sign(body, "hook-secret")
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(body, "hook-secret", header)
    assert not verify(body + b" ", "hook-secret", header)
    assert not verify(body, "other-secret", header)


async def test_finalize_command_and_signed_webhook(tmp_path: Path, aiohttp_server: Any) -> None:
    got: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), request.headers.get(SIGNATURE_HEADER, "")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    marker = tmp_path / "finalized"
    focus, bridge, clock = Focus(), FakeBridge(), Clock()
    focus.join("standup", "browser", "Alice")
    rec = Recordings(settings(tmp_path, finalize_command=f"sh -c 'ls \"$0\" > {marker}'",
                              webhook_url=f"http://127.0.0.1:{server.port}/hook",
                              webhook_secret="hook-secret"),
                     focus, bridge, bridge.connect, clock=clock)
    recording = await rec.start("standup", "test")
    clock.now += 1
    rec.tick()
    rec.stop("standup", "done")
    await rec.close()
    assert recording.state == "done"
    assert set(marker.read_text().split()) == {"metadata.json", "mix.opus", "tracks.mkv"}
    (body, header), = got
    assert verify(body, "hook-secret", header)
    data = json.loads(body)
    assert data["event"] == "recording.done" and data["id"] == recording.id
    assert {f["name"] for f in data["files"]} == {"metadata.json", "mix.opus", "tracks.mkv"}


async def test_mix_as_aac_in_m4a(tmp_path: Path) -> None:
    focus, bridge, clock = Focus(), FakeBridge(), Clock()
    focus.join("standup", "browser", "Alice")
    rec = Recordings(settings(tmp_path, mix_format="m4a"), focus, bridge, bridge.connect,
                     clock=clock)
    recording = await rec.start("standup", "test")
    (link,) = bridge.links.values()
    sp = Speaker(3, 700)
    await run_frames(rec, clock, link, lambda i: [sp], 200)
    rec.stop("standup", "done")
    await rec.close()
    folder = tmp_path / "rec" / recording.id
    assert not (folder / "mix.opus").exists()
    with av.open(str(folder / "mix.m4a")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        mix = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert abs(mix.size / RATE - 4.0) < 0.05
    assert band_energy(mix[RATE:], 700) > 20 * band_energy(mix[RATE:], 1400)
    assert {f["kind"] for f in rec.describe(recording.id)["files"]} == {  # type: ignore[index]
        "mix", "tracks", "metadata"}
