"""The bench phone of the conference figures (tests/bench/conference.py), the audio the
peers send, and how what they received is turned back into what they played.

Everything runs in this process, on 127.0.0.1, in one asyncio loop, so every time below is
the same clock (`loop.time()`).

- `BenchPhone`: a phone caller. A small SIP user agent client (`SipUac`: INVITE with one
  codec, `X-Room-Name` so no PIN prompt, ACK, BYE; in-dialog requests answered 200) and an
  RTP socket that sends one packet every 20 ms from a `Program` (silence until something is
  played) and keeps every packet it receives. Codecs: the project's (gateway/media).
  Random loss (seeded) in both directions: a dropped packet is not sent, or is thrown away
  on arrival; `rebuild()` turns what was kept into what the phone played, concealing the
  losses with gateway/media/plc.py.
- Audio: espeak-ng speech (`make_speech`), PESQ (`mos`), `timeline()` (frames placed by
  their RTP timestamps), the browsers' Opus (`opus_frames`, `program_track`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import random
import re
import secrets
import struct
import subprocess
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.media.codecs import codec_by_name
from gateway.uplink import audio_level

log = logging.getLogger("bench.conference")

Pcm = npt.NDArray[np.int16]
FRAME_S = 0.020
RTP = struct.Struct("!BBHII")
SENTENCES = ("The birch canoe slid on the smooth planks.",
             "Glue the sheet to the dark blue background.",
             "It is easy to tell the depth of a well.",
             "These days a chicken leg is a rare dish.")
VOICES = ("en-us+f3", "en-us+m3")
RATES = (8000, 16000, 48000)


# --- audio ---------------------------------------------------------------------------------


def read_wav(path: Path) -> Pcm:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def write_wav(path: Path, pcm: Pcm, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[:300]}")


def make_speech(workdir: Path, sentences: int = 4) -> dict[int, Pcm]:
    """espeak-ng speech, a female and a male voice in turn (P.862 practice: both), at 8, 16
    and 48 kHz (peak -6 dBFS), by rate."""
    workdir.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, sentence in enumerate(SENTENCES[:sentences]):
        part = workdir / f"speech-espeak-{i}.wav"
        _run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", "160", "-w", str(part),
              sentence])
        parts.append(str(part))
    raw = workdir / "speech-espeak.wav"
    _run(["sox", *parts, str(raw)] if len(parts) > 1 else ["cp", parts[0], str(raw)])
    out: dict[int, Pcm] = {}
    for rate in RATES:
        path = workdir / f"speech-{rate}.wav"
        _run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
              str(path), "norm", "-6"])
        out[rate] = read_wav(path)
    return out


def codec_alone(name: str, speech: Pcm) -> float | str:
    """PESQ of `speech` through the phone's codec alone (encode, decode): the ceiling of a
    trial on that codec."""
    from .conference_peers import phone_codec

    codec = phone_codec(name)
    n = codec.frame_samples
    frames = [codec.decode(codec.encode(speech[i:i + n])) for i in range(0, speech.size - n, n)]
    return mos(codec.sample_rate, speech, np.concatenate(frames))


def resample(pcm: Pcm, rate: int, to: int, workdir: Path, name: str) -> Pcm:
    """`pcm` from `rate` to `to` Hz with sox (its default very high quality filter)."""
    if rate == to:
        return pcm
    src = write_wav(workdir / f"{name}-{rate}.wav", pcm, rate)
    dst = workdir / f"{name}-{to}.wav"
    _run(["sox", str(src), "-r", str(to), str(dst)])
    return read_wav(dst)


def tone(rate: int, seconds: float = 0.2, freq: float = 1000.0, amplitude: float = 0.5) -> Pcm:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def timeline(frames: Sequence[tuple[float, float, Pcm]], rate: int, start: float,
             end: float, base: float | None = None) -> Pcm:
    """Frames (arrival time, media time in seconds, samples at `rate`) placed on the loop's
    clock from `start` to `end`: media time 0 plays at `base`, by default the earliest time
    any frame allows (the smallest arrival - media time), so the jitter of the arrivals
    does not matter."""
    out = np.zeros(max(0, round((end - start) * rate)), dtype=np.int16)
    if not frames:
        return out
    if base is None:
        base = min(arrival - media for arrival, media, _ in frames)
    for _, media, pcm in frames:
        at = round((base + media - start) * rate)
        lo, hi = max(at, 0), min(at + pcm.size, out.size)
        if hi > lo:
            out[lo:hi] = pcm[lo - at:hi - at]
    return out


def rebuild(packets: Sequence[Any], codec: Any, start: float, end: float) -> Pcm:
    """What a phone played from its received packets (conference_peers.Received), decoded in
    sequence order with `codec` (a fresh one: decoders keep state) and placed by timestamp:
    a gap in sequence numbers is loss, concealed (gateway/media/plc.py); a gap in
    timestamps alone is silence."""
    from gateway.media.plc import Concealer

    if not packets:
        return timeline([], codec.sample_rate, start, end)
    first = packets[0]
    order = sorted(((p.seq - first.seq + 0x8000) % 0x10000 - 0x8000,
                    (p.ts - first.ts + 0x80000000) % 0x100000000 - 0x80000000, i)
                   for i, p in enumerate(packets))
    plc = Concealer(codec.frame_samples, codec.sample_rate)
    frames: list[tuple[float, float, Pcm]] = []
    base = min(packets[i].arrival - ts / codec.clock_rate for _, ts, i in order)
    prev: tuple[int, int] | None = None
    for seq, ts, i in order:
        if prev is not None:
            if seq == prev[0]:
                continue  # a duplicate
            for k in range(1, min(seq - prev[0], 50)):  # lost on the way: conceal
                concealed = plc.conceal()
                if concealed is not None:
                    frames.append((0.0, (prev[1] + k * codec.ts_step) / codec.clock_rate,
                                   concealed))
        frames.append((0.0, ts / codec.clock_rate, plc.good(codec.decode(packets[i].payload))))
        prev = (seq, ts)
    return timeline(frames, codec.sample_rate, start, end, base=base)


def mos(rate: int, ref: Pcm, deg: Pcm) -> float | str:
    """PESQ MOS-LQO: narrowband at 8 kHz, wideband at 16 kHz; an error as a string."""
    from pesq import pesq

    try:
        return round(float(pesq(rate, ref.astype(np.float32), deg.astype(np.float32),
                                 "nb" if rate == 8000 else "wb")), 2)
    except Exception as err:
        return f"{type(err).__name__}: {err}"[:120]


# --- audio programs ----------------------------------------------------------------------


class Program:
    """Frames of 20 ms at `rate`: silence, or a clip that `play()` starts at the next frame.
    `started` is the loop time the clip's first frame was taken (None before)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frame = rate // 50
        self._clip: Pcm | None = None
        self._pos = 0
        self.started: float | None = None
        self.silence = np.zeros(self.frame, dtype=np.int16)

    def play(self, clip: Pcm) -> None:
        n = -(-clip.size // self.frame) * self.frame
        self._clip = np.pad(clip.astype(np.int16), (0, n - clip.size))
        self._pos = 0
        self.started = None

    @property
    def playing(self) -> bool:
        return self._clip is not None

    def next_frame(self, now: float) -> Pcm:
        clip = self._clip
        if clip is None:
            return self.silence
        if self._pos == 0:
            self.started = now
        frame = clip[self._pos:self._pos + self.frame]
        self._pos += self.frame
        if self._pos >= clip.size:
            self._clip = None
        return frame


# --- codecs of the bench phone ------------------------------------------------------------


@dataclass
class PhoneCodec:
    name: str            # rtpmap name
    payload_type: int
    sample_rate: int
    clock_rate: int      # RTP clock (8000 for G.722 too, RFC 3551)
    encode: Callable[[Pcm], bytes]
    decode: Callable[[bytes], Pcm]

    @property
    def frame_samples(self) -> int:
        return self.sample_rate // 50

    @property
    def ts_step(self) -> int:
        return self.clock_rate // 50


def phone_codec(name: str) -> PhoneCodec:
    """A fresh codec (its own encoder and decoder state) for the bench phone: the project's
    own (gateway/media), as the gateway uses them."""
    codec = codec_by_name(name)
    return PhoneCodec(codec.name, codec.payload_type, codec.sample_rate, codec.clock_rate,
                      codec.encode, codec.decode)


# --- the phone's SIP: a user agent client for one call ------------------------------------


class SipError(RuntimeError):
    """The bench phone's call failed (a final error response, or no answer in time)."""


def _parse_sip(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """(start line, headers by lower-case full name, body) of a SIP message."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    compact = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
               "l": "content-length", "c": "content-type"}
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = compact.get(name.strip().lower(), name.strip().lower())
        headers.setdefault(key, []).append(value.strip())
    return lines[0], headers, body


def sdp_media(body: bytes) -> tuple[str, int, list[int]]:
    """(connection address, audio port, payload types) of an SDP answer."""
    text = body.decode("utf-8", "replace")
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", text, re.M)
    if host is None or media is None:
        raise SipError(f"no audio in the SDP answer: {text[:200]!r}")
    return host.group(1), int(media.group(1)), [int(p) for p in media.group(2).split()]


class SipUac(asyncio.DatagramProtocol):
    """One outgoing call over UDP; RFC 3261 timers A/E kept simple (0.5 s doubling)."""

    def __init__(self, server: tuple[str, int], user: str, room: str, sdp: str) -> None:
        self.server = server
        self.user = user
        self.room = room
        self.sdp = sdp
        self.call_id = secrets.token_hex(8) + "@bench"
        self.tag = secrets.token_hex(4)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.remote_tag = ""
        self.remote_target = ""
        self.answer = b""
        self.ended = asyncio.Event()
        self._responses: asyncio.Queue[tuple[int, str, bytes]] = asyncio.Queue()
        self._ack = b""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]

    def _request(self, method: str, uri: str, cseq: int, body: str = "",
                 extra: tuple[str, ...] = ()) -> bytes:
        me = f"127.0.0.1:{self.port}"
        to = f"<sip:bench@{self.server[0]}:{self.server[1]}>"
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{secrets.token_hex(6)};rport",
                 "Max-Forwards: 70",
                 f"From: \"{self.user}\" <sip:{self.user}@{me}>;tag={self.tag}",
                 f"To: {to}" + (f";tag={self.remote_tag}" if self.remote_tag else ""),
                 f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{self.user}@{me}>", "User-Agent: switchboard-bench", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            start, headers, body = _parse_sip(data)
        except Exception:
            return
        if start.startswith("SIP/2.0 "):
            status = int(start.split()[1])
            cseq = headers.get("cseq", [""])[0]
            if status == 200 and cseq.endswith("INVITE") and self._ack:
                self._send(self._ack)  # a retransmitted 200: ACK again
            self._responses.put_nowait((status, cseq, data))
            return
        method = start.split()[0]
        reply = ["SIP/2.0 200 OK"] + [f"Via: {v}" for v in headers.get("via", [])]
        reply += [f"{name}: {headers[key][0]}" for name, key in
                  (("From", "from"), ("To", "to"), ("Call-ID", "call-id"), ("CSeq", "cseq"))
                  if key in headers]
        sdp = self.sdp if method in ("INVITE", "UPDATE") and body else ""
        reply += [f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>"]
        if sdp:
            reply.append("Content-Type: application/sdp")
        reply.append(f"Content-Length: {len(sdp)}")
        if method != "ACK":
            self._send(("\r\n".join(reply) + "\r\n\r\n" + sdp).encode(), addr)
        if method == "BYE":
            log.info("phone %s: the server hung up", self.user)
            self.ended.set()

    def _send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr or self.server)

    async def _transaction(self, data: bytes, method: str, timeout: float) -> bytes:
        """Send (retransmitting) until a final response to `method`; that response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval, provisional = 0.5, False
        self._send(data)
        next_send = loop.time() + interval
        while (left := deadline - loop.time()) > 0:
            try:
                status, cseq, raw = await asyncio.wait_for(
                    self._responses.get(), min(left, max(0.01, next_send - loop.time())))
            except TimeoutError:
                if not provisional:
                    interval = min(interval * 2, 4.0)
                    self._send(data)
                next_send = loop.time() + interval
                continue
            if not cseq.endswith(method):
                continue
            if status < 200:
                provisional = True
                continue
            return raw
        raise SipError(f"phone {self.user}: no final answer to {method} in {timeout:g} s")

    async def invite(self, timeout: float = 10.0) -> tuple[str, int, list[int]]:
        uri = f"sip:bench@{self.server[0]}:{self.server[1]}"
        raw = await self._transaction(
            self._request("INVITE", uri, 1, self.sdp, (f"X-Room-Name: {self.room}",)),
            "INVITE", timeout)
        start, headers, body = _parse_sip(raw)
        status = int(start.split()[1])
        to = headers.get("to", [""])[0]
        self.remote_tag = to.split("tag=", 1)[1].split(";")[0] if "tag=" in to else ""
        contact = headers.get("contact", [f"<{uri}>"])[0]
        self.remote_target = contact[contact.find("<") + 1:contact.find(">")] \
            if "<" in contact else contact.split(";")[0]
        ack = self._request("ACK", self.remote_target, 1)
        self._send(ack)
        if status != 200:
            raise SipError(f"phone {self.user}: INVITE answered {start}")
        self._ack = ack
        self.answer = body
        return sdp_media(body)

    async def bye(self, timeout: float = 4.0) -> None:
        if self.ended.is_set() or not self.remote_target:
            return
        with contextlib.suppress(SipError):
            await self._transaction(self._request("BYE", self.remote_target, 2), "BYE",
                                    timeout)
        self.ended.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


# --- the phone's RTP ----------------------------------------------------------------------


@dataclass
class Received:
    arrival: float
    seq: int
    ts: int
    payload: bytes


@dataclass
class LossCounters:
    sent: int = 0
    dropped_out: int = 0
    received: int = 0
    dropped_in: int = 0


class BenchPhone(asyncio.DatagramProtocol):
    """A phone caller: SIP via `SipUac`, RTP from this socket, `loss` dropped each way."""

    def __init__(self, server_sip: tuple[str, int], room: str, codec: PhoneCodec, *,
                 name: str = "Bench phone", loss: float = 0.0, seed: int = 1) -> None:
        self.codec = codec
        self.program = Program(codec.sample_rate)
        self.loss = loss
        self.rng_out = random.Random(seed)
        self.rng_in = random.Random(seed + 1000)
        self.counters = LossCounters()
        self.received: list[Received] = []
        self.levels: list[tuple[float, int]] = []  # (arrival, RFC 6464 level) of each kept
        self.name = name
        self.server_sip = server_sip
        self.room = room
        self.remote: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.ssrc = random.Random(seed).randrange(1, 1 << 32)
        self.seq = 0
        self.ts = 0
        self.sip: SipUac | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0
        self._live = phone_codec(codec.name)

    async def call(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        c = self.codec
        sdp = (f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
               f"t=0 0\r\nm=audio {self.port} RTP/AVP {c.payload_type}\r\n"
               f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}\r\na=ptime:20\r\n"
               f"a=sendrecv\r\n")
        self.sip = SipUac(self.server_sip, self.name.replace(" ", "-").lower(), self.room, sdp)
        await self.sip.open()
        host, port, pts = await self.sip.invite(timeout)
        if c.payload_type not in pts:
            raise SipError(f"phone {self.name}: the server answered payload types {pts}")
        self.remote = (host, port)
        self._t0 = loop.time()
        self._timer = loop.call_at(self._t0, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._t0 + self._n * FRAME_S <= now:  # catch up after a late wake-up
            self._send(self.program.next_frame(now))
            self._n += 1
        self._timer = loop.call_at(self._t0 + self._n * FRAME_S, self._tick)

    def _send(self, pcm: Pcm) -> None:
        payload = self.codec.encode(pcm)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.codec.ts_step) & 0xFFFFFFFF
        self.counters.sent += 1
        if self.loss and self.rng_out.random() < self.loss:
            self.counters.dropped_out += 1
            return
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(RTP.pack(0x80, self.codec.payload_type, self.seq, self.ts,
                                           self.ssrc) + payload, self.remote)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = asyncio.get_running_loop().time()
        if len(data) < 12 or data[0] >> 6 != 2 or (data[1] & 0x7F) != self.codec.payload_type:
            return  # RTCP, or telephone-event
        b0, _, seq, ts, _ = RTP.unpack_from(data)
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10 and len(data) >= offset + 4:
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        self.counters.received += 1
        if self.loss and self.rng_in.random() < self.loss:
            self.counters.dropped_in += 1
            return
        packet = Received(now, seq, ts, data[offset:])
        self.received.append(packet)
        # The level of what it says, from a decoder of its own fed in arrival order.
        self.levels.append((now, audio_level(self._live.decode(packet.payload))))

    def quiet_for(self, seconds: float) -> bool:
        """Has what the phone heard in the last `seconds` been silence (no prompt, no tone)?"""
        recent = self.levels[-round(seconds / FRAME_S):]
        return len(recent) >= round(seconds / FRAME_S) and all(lv > 60 for _, lv in recent)

    async def hangup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sip is not None:
            await self.sip.bye()
            self.sip.close()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


# --- what the browsers send ---------------------------------------------------------------


def opus_frames(pcm48k: Any, seconds: float = 10.0) -> list[tuple[bytes, int]]:
    """Speech at 48 kHz as (Opus payload, RFC 6464 level) per 20 ms: what a browser's
    microphone would send, encoded once for every synthetic browser."""
    import numpy as np

    from gateway.media.opus import OpusCodec
    from gateway.uplink import audio_level

    codec = OpusCodec(111, sample_rate=48000, complexity=5, bitrate=32000)
    count = min(pcm48k.size // 960, int(seconds * 50))
    out = []
    for i in range(count):
        frame = np.ascontiguousarray(pcm48k[i * 960:(i + 1) * 960], dtype=np.int16)
        out.append((codec.encode(frame), audio_level(frame)))
    return out


def use_loopback_only() -> None:
    """aioice skips 127.0.0.1 when it enumerates host addresses: gather on it alone."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def program_track(rate: int = 48000) -> Any:
    """A MediaStreamTrack of `Program` frames, paced on the loop's clock."""
    from aiortc import MediaStreamTrack
    from av import AudioFrame

    class ProgramTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.program = Program(rate)
            self._start: float | None = None
            self._n = 0

        async def recv(self) -> AudioFrame:
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            due = self._start + self._n * FRAME_S
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            pcm = self.program.next_frame(loop.time())
            frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = self._n * self.program.frame
            frame.time_base = fractions.Fraction(1, rate)
            self._n += 1
            return frame

    return ProgramTrack()
