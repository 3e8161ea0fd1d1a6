"""The browsers of the conference figures: the /ws client, aiortc as a browser, and the
synthetic browsers of the `capacity` figure.

- `Signaling`: one /ws connection (docs/signaling.md).
- `BenchBrowser`: aiortc's RTCPeerConnection as the browser (quality, latency): answers
  every offer, sends a `program_track()` on its a0 slot, records what each remote
  participant's track plays (decoded frames with their RTP timestamps), and notes the RFC
  6464 level of every RTP packet it sends and receives (after SRTP), with the time.
- `parse_offer()` / `build_answer()`: the server's offer read, and an answer written by hand
  the way a browser writes one (BUNDLE, rtcp-mux, `a=setup:active`, its ICE candidates in the
  first m-line; `a0` sendonly with `a=msid` and one `a=ssrc`; `v0`/`s0` inactive; every
  receive slot recvonly, or inactive when the offer's is).
- `SyntheticBrowser` (capacity): joins a room over /ws, answers every offer, and connects
  with real ICE and DTLS-SRTP (aiortc's RTCIceGatherer / RTCIceTransport / RTCDtlsTransport,
  no peer connection and no codec, as tests/bench/bridge_load.py does); then it sends 50
  SRTP packets/s of pre-encoded Opus speech with the RFC 6464 level of each frame, and
  counts what it receives on its socket (read in batches; one packet in 64 is decrypted to
  prove the keys). `BrowserLoad`: all of them and their send clock (20 ms, spread over ten
  2 ms slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.bench.conference_peers import Pcm, Program, program_track

log = logging.getLogger("bench.conference")

TICK = 0.020
SLOTS = 10
TS_STEP = 960
VERIFY_EVERY = 64
DRAIN_BATCH = 64
JOIN_TIMEOUT = 25.0
LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


# --- signaling ----------------------------------------------------------------------------


class Signaling:
    """One /ws connection: `send()` a message, `next(type)` waits for one of those types
    (or `closed`); every message also stays in `messages` for whoever reads them all."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.ws: Any = None
        self.session: Any = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._own_session = False

    async def open(self, session: Any = None) -> None:
        import aiohttp

        if session is None:
            session = aiohttp.ClientSession()
            self._own_session = True
        self.session = session
        self.ws = await session.ws_connect(self.base_url.replace("http", "ws", 1) + "/ws",
                                           autoping=True, max_msg_size=1 << 20)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import aiohttp

        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "error":
                    log.warning("signaling error: %s", data)
                self.messages.put_nowait(data)
        finally:
            self.messages.put_nowait({"type": "closed", "code": self.ws.close_code})

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await asyncio.wait_for(self.messages.get(), max(0.0, deadline - loop.time()))
            if msg["type"] in types or msg["type"] == "closed":
                return msg

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str(json.dumps({"type": "leave"}))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3.0)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._own_session and self.session is not None:
            await self.session.close()


# --- SDP, by hand -------------------------------------------------------------------------


@dataclass
class OfferSection:
    kind: str
    mid: str
    direction: str
    formats: str                                      # the m-line's payload types
    codec_lines: list[str] = field(default_factory=list)  # rtpmap, fmtp, rtcp-fb


@dataclass
class Offer:
    sections: list[OfferSection]
    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[tuple[str, str]]
    candidates: list[str]                             # a=candidate values, component 1 UDP
    ice_lite: bool
    level_id: int | None                              # extmap id of the audio level


def parse_offer(sdp: str) -> Offer:
    """What an answer needs from the server's offer (docs/signaling.md, "The offer's shape")."""
    sections: list[OfferSection] = []
    ufrag = pwd = ""
    fingerprints: list[tuple[str, str]] = []
    candidates: list[str] = []
    ice_lite = False
    level_id: int | None = None
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            kind, _, _, *formats = line[2:].split()
            sections.append(OfferSection(kind, "", "sendrecv", " ".join(formats)))
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        if name == "ice-lite":
            ice_lite = True
        if not sections:
            continue
        section = sections[-1]
        if name == "mid":
            section.mid = value
        elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            section.direction = name
        elif name in ("rtpmap", "fmtp", "rtcp-fb"):
            section.codec_lines.append(line)
        elif name == "ice-ufrag" and not ufrag:
            ufrag = value
        elif name == "ice-pwd" and not pwd:
            pwd = value
        elif name == "fingerprint" and len(sections) == 1:
            algorithm, _, digest = value.partition(" ")
            fingerprints.append((algorithm, digest))
        elif name == "candidate" and len(sections) == 1:
            parts = value.split()
            if len(parts) > 2 and parts[1] == "1" and parts[2].lower() == "udp":
                candidates.append(value)
        elif name == "extmap" and value.split()[1:2] == [LEVEL_URI]:
            level_id = int(value.split()[0].split("/")[0])
    return Offer(sections, ufrag, pwd, fingerprints, candidates, ice_lite, level_id)


def build_answer(offer: Offer, *, ufrag: str, pwd: str, fingerprints: list[tuple[str, str]],
                 candidates: list[str], ssrc: int, cname: str, version: int = 1) -> str:
    """A browser's answer to `offer`: sending audio on `ssrc` from slot a0, receiving every
    active receive slot, with our ICE/DTLS parameters (DTLS client: setup active)."""
    lines = ["v=0", f"o=- {abs(hash(cname)) % 10**12} {version} IN IP4 127.0.0.1", "s=-",
             "t=0 0", "a=group:BUNDLE " + " ".join(s.mid for s in offer.sections),
             "a=msid-semantic: WMS *"]
    for index, section in enumerate(offer.sections):
        if section.mid == "a0":
            direction = "sendonly"
        elif section.mid in ("v0", "s0"):
            direction = "inactive"
        else:
            direction = "recvonly" if section.direction in ("sendonly", "sendrecv") \
                else "inactive"
        lines += [f"m={section.kind} 9 UDP/TLS/RTP/SAVPF {section.formats}",
                  "c=IN IP4 0.0.0.0", f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
        lines += [f"a=fingerprint:{alg} {value}" for alg, value in fingerprints]
        lines += ["a=setup:active", f"a=mid:{section.mid}"]
        if index == 0:
            lines += [f"a=candidate:{c}" for c in candidates] + ["a=end-of-candidates"]
        if section.kind == "audio" and offer.level_id is not None:
            lines.append(f"a=extmap:{offer.level_id} {LEVEL_URI}")
        lines += [f"a={direction}", "a=rtcp-mux", *section.codec_lines]
        if section.mid == "a0":
            track = f"{cname}-audio"
            lines += [f"a=msid:{cname} {track}", f"a=ssrc:{ssrc} cname:{cname}",
                      f"a=ssrc:{ssrc} msid:{cname} {track}"]
    return "\r\n".join(lines) + "\r\n"


# --- a synthetic browser ------------------------------------------------------------------


@dataclass
class LoadCounters:
    sent: int = 0
    received: int = 0
    rtcp: int = 0
    verified: int = 0
    auth_failures: int = 0
    offers: int = 0
    answer_errors: int = 0
    late_ticks: int = 0


class SyntheticBrowser:
    """One browser participant without a codec: ICE + DTLS-SRTP, pre-encoded Opus."""

    def __init__(self, base_url: str, room: str, index: int, certificate: Any,
                 counters: LoadCounters) -> None:
        from aiortc import RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

        self.room = room
        self.index = index
        self.name = f"load-{index}"
        self.counters = counters
        self.signaling = Signaling(base_url)
        self.ssrc = random.randrange(1, 1 << 32)
        self.seq = random.randrange(0, 1 << 14)
        self.offset = random.randrange(0, 1000)  # where in the speech loop it starts
        self.level_id = 1
        self.gatherer = RTCIceGatherer(iceServers=[])
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [certificate])
        self.connected = False
        self.received = 0
        self._local: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._sendto: Any = None
        self._protect: Any = None
        self._addr: tuple[str, int] = ("", 0)
        self._task: asyncio.Task[None] | None = None

    async def join(self, session: Any) -> None:
        from aiortc import (
            RTCDtlsFingerprint,
            RTCDtlsParameters,
            RTCIceParameters,
        )
        from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

        sig = self.signaling
        await sig.open(session)
        await sig.send({"type": "join", "version": 1, "room": self.room, "name": self.name,
                        "audio": True, "video": False})
        msg = await sig.next("offer", timeout=JOIN_TIMEOUT)
        if msg["type"] != "offer":
            raise ConnectionError(f"{self.name}: no offer ({msg})")
        offer = parse_offer(msg["sdp"])
        self.level_id = offer.level_id or 1
        await self.gatherer.gather()
        for value in offer.candidates:
            await self.ice.addRemoteCandidate(candidate_from_sdp(value))
        await self.ice.addRemoteCandidate(None)
        ice = asyncio.get_running_loop().create_task(self.ice.start(RTCIceParameters(
            usernameFragment=offer.ice_ufrag, password=offer.ice_pwd, iceLite=offer.ice_lite)))
        params = self.gatherer.getLocalParameters()
        self._local = {
            "ufrag": params.usernameFragment, "pwd": params.password,
            "fingerprints": [(f.algorithm, f.value)
                             for f in self.dtls.getLocalParameters().fingerprints],
            "candidates": [candidate_to_sdp(c) for c in self.gatherer.getLocalCandidates()],
            "ssrc": self.ssrc, "cname": self.name}
        await self._answer(msg, offer)
        self._task = asyncio.get_running_loop().create_task(self._offers())
        await asyncio.wait_for(ice, JOIN_TIMEOUT)
        if self.ice.state != "completed":
            raise ConnectionError(f"{self.name}: ICE {self.ice.state}")
        await asyncio.wait_for(self.dtls.start(RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(a, v) for a, v in offer.fingerprints],
            role="client")), JOIN_TIMEOUT)
        if self.dtls.state != "connected":
            raise ConnectionError(f"{self.name}: DTLS {self.dtls.state}")
        # aiortc internals, for the load only (as tests/bench/bridge_load.py)
        pair = self.ice._connection._nominated[1]
        self._addr = pair.remote_addr
        self._protect = self.dtls._tx_srtp.protect
        self._take_socket(pair.protocol)
        self.connected = True

    async def _answer(self, msg: dict[str, Any], offer: Offer) -> None:
        sdp = build_answer(offer, version=msg["revision"], **self._local)
        await self.signaling.send({"type": "answer", "sdp": sdp, "revision": msg["revision"]})
        self.counters.offers += 1

    async def _offers(self) -> None:
        """Answer every later offer (a phone's or a browser's source came or went)."""
        while True:
            msg = await self.signaling.next("offer", timeout=1e9)
            if msg["type"] == "closed":
                self.connected = False
                return
            try:
                await self._answer(msg, parse_offer(msg["sdp"]))
            except Exception:
                self.counters.answer_errors += 1
                log.exception("%s: answering offer %s failed", self.name, msg.get("revision"))

    def _take_socket(self, protocol: Any) -> None:
        """Read the ICE socket ourselves, in batches, from a duplicate of its descriptor;
        STUN and DTLS still go to aioice's protocol."""
        transport = protocol.transport
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        sock.setblocking(False)
        self._sock = sock
        self._sendto = sock.sendto
        original, addr, counters = protocol.datagram_received, self._addr, self.counters
        unprotect = self.dtls._rx_srtp.unprotect
        recv = sock.recv

        def drain() -> None:
            for _ in range(DRAIN_BATCH):
                try:
                    data = recv(2048)
                except OSError:  # nothing to read, or an ICMP error
                    return
                if data and 127 < data[0] < 192:
                    if 191 < data[1] < 224:
                        counters.rtcp += 1
                        continue
                    self.received += 1
                    counters.received += 1
                    if not counters.received % VERIFY_EVERY:
                        try:
                            unprotect(data)
                        except Exception:
                            counters.auth_failures += 1
                        else:
                            counters.verified += 1
                else:
                    original(data, addr)

        asyncio.get_running_loop().add_reader(sock.fileno(), drain)

    def send(self, tick: int, frames: list[tuple[bytes, int]]) -> None:
        from gateway.uplink import rtp_with_level

        payload, level = frames[(tick + self.offset) % len(frames)]
        self.seq = (self.seq + 1) & 0xFFFF
        plain = rtp_with_level(111, self.seq, tick * TS_STEP, self.ssrc, False, level,
                               level < 127, self.level_id, payload)
        with contextlib.suppress(OSError):
            self._sendto(self._protect(plain), self._addr)
            self.counters.sent += 1

    async def close(self) -> None:
        self.connected = False
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.signaling.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.dtls.stop(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ice.stop(), 5.0)


class BrowserLoad:
    """Synthetic browsers and their send clock."""

    def __init__(self, base_url: str, frames: list[tuple[bytes, int]]) -> None:
        from aiortc import RTCCertificate

        self.base_url = base_url
        self.frames = frames
        self.counters = LoadCounters()
        self.browsers: list[SyntheticBrowser] = []
        self.certificate = RTCCertificate.generateCertificate()
        self.slots: list[list[SyntheticBrowser]] = [[] for _ in range(SLOTS)]
        self.session: Any = None
        self.loop = asyncio.get_running_loop()
        self.t0 = 0.0
        self.sub = 0
        self._timer: asyncio.TimerHandle | None = None
        self._next_index = 0

    async def add(self, rooms: list[str], per_room: int, batch: int = 6) -> list[str]:
        """Join `per_room` browsers to each room, `batch` at a time; the errors."""
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession()
        base = self._next_index
        todo = [SyntheticBrowser(self.base_url, room, base + i, self.certificate, self.counters)
                for i, room in enumerate(r for r in rooms for _ in range(per_room))]
        self._next_index += len(todo)
        errors: list[str] = []
        for start in range(0, len(todo), batch):
            group = todo[start:start + batch]
            done = await asyncio.gather(*(b.join(self.session) for b in group),
                                        return_exceptions=True)
            for browser, result in zip(group, done, strict=True):
                if isinstance(result, BaseException):
                    errors.append(f"{browser.name} in {browser.room}: {result!r}"[:200])
                    await browser.close()
                    continue
                self.browsers.append(browser)
                self.slots[browser.index % SLOTS].append(browser)
        return errors

    @property
    def connected(self) -> int:
        return sum(1 for b in self.browsers if b.connected)

    def start_clock(self) -> None:
        self.t0 = self.loop.time() + 0.05
        self._timer = self.loop.call_at(self.t0, self._on_subtick)

    def _on_subtick(self) -> None:
        now = self.loop.time()
        period = TICK / SLOTS
        while self.t0 + self.sub * period <= now:
            tick, slot = divmod(self.sub, SLOTS)
            if now - (self.t0 + self.sub * period) > 0.010:
                self.counters.late_ticks += 1
            for browser in self.slots[slot]:
                if browser.connected:
                    browser.send(tick, self.frames)
            self.sub += 1
        self._timer = self.loop.call_at(self.t0 + self.sub * period, self._on_subtick)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for start in range(0, len(self.browsers), 20):
            await asyncio.gather(*(b.close() for b in self.browsers[start:start + 20]),
                                 return_exceptions=True)
        self.browsers = []
        if self.session is not None:
            await self.session.close()


# --- the browser: aiortc -------------------------------------------------------------------


class BenchBrowser:
    """A browser participant: aiortc's peer connection, answering the server's offers."""

    def __init__(self, base_url: str, room: str, name: str = "Bench browser") -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.room = room
        self.name = name
        self.signaling = Signaling(base_url)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = program_track()
        self.program: Program = self.track.program
        self.self_id = ""
        self.people: dict[str, dict[str, Any]] = {}
        self.mid_owner: dict[str, str] = {}
        # participant -> decoded frames: (loop time, RTP timestamp, mono 48 kHz samples)
        self.recordings: dict[str, list[tuple[float, int, Pcm]]] = {}
        # RTP packets with their RFC 6464 level: (loop time, seq, level), after SRTP
        self.levels_in: dict[str, list[tuple[float, int, int]]] = {}
        self.levels_out: list[tuple[float, int, int]] = []
        self.offers = 0
        self._added = False
        self._hooked = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.pc.on("track", self._on_track)

    async def join(self, timeout: float = 20.0) -> None:
        await self.signaling.open()
        await self.signaling.send({"type": "join", "version": 1, "room": self.room,
                                   "name": self.name, "audio": True, "video": False})
        joined = await self.signaling.next("joined", timeout=timeout)
        if joined["type"] != "joined":
            raise RuntimeError(f"browser {self.name}: join refused: {joined}")
        self.self_id = joined["self"]["id"]
        self.people = {p["id"]: p for p in joined.get("participants", [])}
        self._tasks.append(asyncio.get_running_loop().create_task(self._run()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pc.connectionState != "connected":
            if loop.time() > deadline or self.pc.connectionState in ("failed", "closed"):
                raise RuntimeError(f"browser {self.name}: media {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        while True:
            msg = await self.signaling.messages.get()
            kind = msg["type"]
            if kind == "offer":
                try:
                    await self._answer(msg)
                except Exception:
                    log.exception("browser %s: answering offer %s failed", self.name,
                                  msg.get("revision"))
            elif kind in ("participant-joined", "participant-updated"):
                self.people[msg["participant"]["id"]] = msg["participant"]
            elif kind == "participant-left":
                self.people.pop(msg["id"], None)
            elif kind == "closed":
                return

    async def _answer(self, offer: dict[str, Any]) -> None:
        from aiortc import RTCSessionDescription

        for mid, track in offer.get("tracks", {}).items():
            self.mid_owner[mid] = track["participant"]
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        if not self._added:
            self.pc.addTrack(self.track)
            self._added = True
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._hook_sender()
        await self.signaling.send({"type": "answer", "sdp": self.pc.localDescription.sdp,
                                   "revision": offer["revision"]})
        self.offers += 1

    def _hook_sender(self) -> None:
        """Note every RTP packet our audio sender hands to SRTP, with its level."""
        if self._hooked:
            return
        from gateway.browser_audio import parse_rtp

        sender = next(t.sender for t in self.pc.getTransceivers() if t.mid == "a0")
        dtls = sender.transport
        original = dtls._send_rtp
        out = self.levels_out

        async def send_rtp(data: bytes) -> None:
            if len(data) > 1 and not 191 < data[1] < 224:  # not RTCP
                parsed = parse_rtp(data, 1)
                if parsed is not None:
                    out.append((asyncio.get_running_loop().time(), parsed[1], parsed[4]))
            await original(data)

        dtls._send_rtp = send_rtp  # type: ignore[method-assign]
        self._hooked = True

    def _on_track(self, track: Any) -> None:
        transceiver = next((t for t in self.pc.getTransceivers()
                            if t.receiver.track is track), None)
        if transceiver is None or track.kind != "audio":
            return
        owner = self.mid_owner.get(transceiver.mid or "", transceiver.mid or "?")
        recording = self.recordings.setdefault(owner, [])
        levels = self.levels_in.setdefault(owner, [])
        receiver = transceiver.receiver
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            level = packet.extensions.audio_level
            levels.append((asyncio.get_running_loop().time(), packet.sequence_number,
                           level[1] if level is not None else 127))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._record(track, recording)))

    async def _record(self, track: Any, recording: list[tuple[float, int, Pcm]]) -> None:
        from aiortc.mediastreams import MediaStreamError

        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray().reshape(-1)
                channels = len(frame.layout.channels)
                if channels > 1:
                    pcm = pcm[::channels]
                if frame.sample_rate != 48000:
                    raise RuntimeError(f"unexpected decoded rate {frame.sample_rate}")
                recording.append((loop.time(), int(frame.pts), pcm.astype(np.int16)))

    def phone_ids(self) -> list[str]:
        return [pid for pid, p in self.people.items() if p.get("kind") == "phone"]

    async def close(self) -> None:
        await self.signaling.close()  # `leave` first: the server sees a leave, not a failure
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5.0)
