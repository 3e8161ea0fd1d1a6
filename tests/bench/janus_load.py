"""The load of the side-by-side benchmark (issue 14): plain-RTP participants that talk all
the time and note, for every packet they receive, the kernel's receive timestamp.

- `RtpParticipant`: one UDP socket on 127.0.0.1 (SO_TIMESTAMPNS on), sending pre-encoded
  frames (PCMU speech, or Opus speech with payload type 111) 50 times a second to wherever
  the server listens for it, and keeping (arrival, RTP timestamp, SSRC) of what it gets
  while `recording`. Reading is done in sweeps (`drain`), not per packet: the arrival time
  is the kernel's, so a sweep that runs late does not make a packet late.
- `RtpLoad`: all of them, a send clock (20 ms split in ten 2 ms slots, as the browser load
  of the capacity figure) and a drain sweep every 50 ms, on the bench's event loop (core 1).
- How each side's participants join: `join_janus()` (AudioBridge `join` with an `rtp`
  object, over the HTTP API, in a thread) and `call_switchboard()` (a SIP call per phone:
  conference_peers.SipUac with this socket's port in its SDP, `X-Room-Name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .phase import Packet, Receiver

log = logging.getLogger("bench.versus")

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
TIMESPEC = struct.Struct("qq")
RTP = struct.Struct("!BBHII")
TICK = 0.020
SLOTS = 10
SWEEP_S = 0.05
RCVBUF = 1 << 18


@dataclass(frozen=True)
class Voice:
    """What a participant sends: pre-encoded 20 ms frames, their payload type and clock."""

    payloads: Sequence[bytes]
    payload_type: int
    clock_rate: int      # RTP clock: 8000 for PCMU, 48000 for Opus

    @property
    def ts_step(self) -> int:
        return self.clock_rate // 50


def read_packet(data: bytes, ancdata: Sequence[tuple[int, int, bytes]]) -> Packet | None:
    """(arrival from the kernel, RTP timestamp, SSRC) of one received datagram; None for
    what is not RTP (too short, another version, RTCP)."""
    if len(data) < 12 or data[0] >> 6 != 2 or 191 < data[1] < 224:
        return None
    arrival = None
    for level, kind, raw in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = TIMESPEC.unpack_from(raw)
            arrival = sec + nsec / 1e9
    if arrival is None:
        return None
    _, _, _, ts, ssrc = RTP.unpack_from(data)
    return Packet(arrival, ts, ssrc)


@dataclass
class RtpParticipant:
    name: str
    room: str
    voice: Voice
    receive_clock: int                 # RTP clock of what the server sends it
    remote: tuple[str, int] | None = None
    sock: socket.socket = field(init=False)
    port: int = field(init=False)
    ssrc: int = field(default_factory=lambda: random.randrange(1, 1 << 32))
    seq: int = field(default_factory=lambda: random.randrange(0, 1 << 16))
    offset: int = field(default_factory=lambda: random.randrange(0, 1000))
    sent: int = 0
    received: int = 0
    recording: bool = False
    packets: list[Packet] = field(default_factory=list)
    extra: Any = None                  # the SIP dialog of a phone, the Janus id

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def send(self, tick: int) -> None:
        if self.remote is None:
            return
        v = self.voice
        self.seq = (self.seq + 1) & 0xFFFF
        header = RTP.pack(0x80, v.payload_type, self.seq, (tick * v.ts_step) & 0xFFFFFFFF,
                          self.ssrc)
        with contextlib.suppress(OSError):
            self.sock.sendto(header + v.payloads[(tick + self.offset) % len(v.payloads)],
                             self.remote)
            self.sent += 1

    def drain(self, limit: int = 400) -> None:
        recvmsg, space = self.sock.recvmsg, socket.CMSG_SPACE(TIMESPEC.size)
        for _ in range(limit):
            try:
                data, anc, _, _ = recvmsg(2048, space)
            except OSError:  # nothing left, or an ICMP error
                return
            packet = read_packet(data, anc)
            if packet is None:
                continue
            self.received += 1
            if self.recording:
                self.packets.append(packet)

    def receiver(self, expected: int) -> Receiver:
        return Receiver(f"{self.name} ({self.room})", list(self.packets), self.receive_clock,
                        expected)

    def close(self) -> None:
        self.sock.close()


class RtpLoad:
    """Every participant, their send clock and the receive sweeps."""

    def __init__(self) -> None:
        self.participants: list[RtpParticipant] = []
        self.slots: list[list[RtpParticipant]] = [[] for _ in range(SLOTS)]
        self.loop = asyncio.get_running_loop()
        self.t0 = 0.0
        self.sub = 0
        self.late_slots = 0     # send slots that ran more than 10 ms late (the load's own lag)
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def add(self, participant: RtpParticipant) -> None:
        self.slots[len(self.participants) % SLOTS].append(participant)
        self.participants.append(participant)

    def start(self) -> None:
        self.t0 = self.loop.time() + 0.05
        self._timer = self.loop.call_at(self.t0, self._on_slot)
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def _on_slot(self) -> None:
        now = self.loop.time()
        period = TICK / SLOTS
        while self.t0 + self.sub * period <= now:
            tick, slot = divmod(self.sub, SLOTS)
            if now - (self.t0 + self.sub * period) > 0.010:
                self.late_slots += 1
            for p in self.slots[slot]:
                p.send(tick)
            self.sub += 1
        self._timer = self.loop.call_at(self.t0 + self.sub * period, self._on_slot)

    def _sweep(self) -> None:
        for p in self.participants:
            p.drain()
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def record(self, on: bool) -> None:
        """Start (or stop) keeping what arrives: drain first, so a window holds only what
        arrived inside it."""
        for p in self.participants:
            p.drain(100_000)
            p.recording = on
            if on:
                p.packets = []

    def close(self) -> None:
        for handle in (self._timer, self._sweeper):
            if handle is not None:
                handle.cancel()
        for p in self.participants:
            p.close()
        self.participants = []
        self.slots = [[] for _ in range(SLOTS)]


# --- joining each side ---------------------------------------------------------------------


def join_janus(api: Any, room_ids: dict[str, int], participants: Sequence[RtpParticipant],
               codecs: Sequence[str]) -> list[str]:
    """Join each participant to its room over the HTTP API (blocking: run in a thread); the
    errors. Janus answers with the port it listens on: that becomes the participant's
    remote."""
    errors: list[str] = []
    for p, codec in zip(participants, codecs, strict=True):
        try:
            joined = api.join(room_ids[p.room], p.name, ip="127.0.0.1", port=p.port,
                              codec=codec)
        except Exception as err:  # one failed join is reported, the others go on
            errors.append(f"{p.name}: {err}"[:200])
            continue
        p.extra = joined.participant
        p.remote = (joined.ip, joined.port)
    return errors


def phone_sdp(port: int) -> str:
    return (f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
            f"a=sendrecv\r\n")


async def call_switchboard(sip: tuple[str, int], participants: Sequence[RtpParticipant],
                           batch: int = 10) -> list[str]:
    """A SIP call for each participant (PCMU, its socket's port in the SDP); the errors."""
    from .conference_peers import SipUac

    errors: list[str] = []

    async def one(p: RtpParticipant) -> None:
        uac = SipUac(sip, p.name, p.room, phone_sdp(p.port))
        await uac.open()
        p.extra = uac
        host, port, pts = await uac.invite(15.0)
        if 0 not in pts:
            raise RuntimeError(f"answered payload types {pts}")
        p.remote = (host, port)

    for start in range(0, len(participants), batch):
        group = participants[start:start + batch]
        done = await asyncio.gather(*(one(p) for p in group), return_exceptions=True)
        errors += [f"{p.name}: {r!r}"[:200] for p, r in zip(group, done, strict=True)
                   if isinstance(r, BaseException)]
    return errors


async def hang_up(participants: Sequence[RtpParticipant]) -> None:
    from .conference_peers import SipUac

    uacs = [p.extra for p in participants if isinstance(p.extra, SipUac)]
    for start in range(0, len(uacs), 50):
        await asyncio.gather(*(u.bye(2.0) for u in uacs[start:start + 50]),
                             return_exceptions=True)
    for u in uacs:
        u.close()
