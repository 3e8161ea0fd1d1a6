"""The load generator of the browser-meetings figures: synthetic audio endpoints with real
ICE and DTLS-SRTP (aiortc's RTCIceGatherer / RTCIceTransport / RTCDtlsTransport, no peer
connection, no codec), in rooms of 10, against the bridge runner (tests/bench/bridge_runner.py).

    python -m tests.bench.bridge_load --control PORT --bridge-pid PID --plan FILE --out FILE

Each endpoint is allocated, updated with its transport and one audio source, and connected
exactly as a browser would be (the generator is ICE-controlled and the DTLS client). Once a
room is connected, each of its endpoints sends 50 SRTP packets/s: 12 bytes of RTP header,
the RFC 6464 audio-level and transport-cc one-byte extensions (as Chromium sends them), and
an 80-byte payload (Opus at about 32 kb/s). Sends are spread over ten 2 ms slots per 20 ms.

Once connected, each endpoint's ICE socket is read by the generator itself, every 10 ms, in
batches with recvmmsg (tests/bench/recvmmsg.py, `Poller`; asyncio's transport is paused;
STUN and DTLS still go to aioice and aiortc), which keeps the generator's cost
per received packet low enough to load the bridge past saturation: every SRTP packet is
counted in a ring indexed by its RTP timestamp (the bridge keeps the sender's timestamps,
and every endpoint stamps tick k as k * 960), and one in 32 is decrypted to prove it is real
SRTP under the right keys. A measurement window is a range of ticks [k0, k1): expected = the
packets sent in those ticks times the receivers of their rooms, received = the packets
counted for those ticks that arrived within 200 ms of their tick's send time (a later packet
is as good as lost to a browser's jitter buffer; a bridge that falls behind real time shows
up here before its socket buffers overflow). Loss is therefore measured at the receivers,
whatever the bridge's own counters say.

The plan (JSON) says which endpoint counts to step through; the result (JSON) has one record
per measured window. The generator stops itself within the plan's budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aioice.ice  # noqa: E402
from aiortc import (  # noqa: E402
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
)

from bridge.api import (  # noqa: E402
    DtlsFingerprint,
    IceCandidate,
    MediaSource,
    TransportDescription,
)
from native.srtp import srtp  # noqa: E402
from tests.bench.bridge_runner import Control, to_json, transport_from_json  # noqa: E402
from tests.bench.common import CpuMeter, socket_inodes, steal_seconds, udp_counters  # noqa: E402
from tests.bench.recvmmsg import MmsgReader  # noqa: E402

log = logging.getLogger("bench.bridge_load")

TICK = 0.020          # one audio packet per endpoint per tick
SLOTS = 10            # sends spread over SLOTS sub-ticks of a tick
RING = 1 << 13        # ticks remembered by the counters (164 s)
MASK = RING - 1
TS_STEP = 960         # 20 ms at 48 kHz
LATE_SKIP = 0.100     # a sub-tick later than this is skipped, and counts as saturation
LATE_COUNT = 0.010    # a sub-tick later than this counts as late
TOO_LATE = 0.200      # a packet received this long after its tick's send time is lost
VERIFY_EVERY = 32     # decrypt one received packet in this many
DRAIN_ROUNDS = 4      # recvmmsg calls per socket per poll, at most (64 datagrams each)
DRAIN_PERIOD = 0.010  # every socket is read this often (not on readiness: see Poller)
READER = MmsgReader(64, 2048)  # the process's one receive buffer (one thread)
CONNECT_TIMEOUT = 20.0
HDR = struct.Struct("!BBHII")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
EXT_HDR = b"\xbe\xde\x00\x02"  # RFC 8285 one-byte header, 2 words


@dataclass
class Plan:
    steps: list[int]                 # endpoint counts, multiples of room_size
    window_s: float = 10.0
    settle_s: float = 3.0
    budget_s: float = 240.0
    room_size: int = 10
    payload: int = 80
    floor_packets: int = 0           # 0: no floor measurement
    loss_limit: float = 0.01
    contended_percent: float = 5.0   # a failure with this much waiting is measured again
    stop_on_saturation: bool = True


@dataclass
class Counters:
    """Shared by every endpoint: the per-tick ring and the totals."""

    expected: list[int] = field(default_factory=lambda: [0] * RING)
    received: list[int] = field(default_factory=lambda: [0] * RING)
    too_late: list[int] = field(default_factory=lambda: [0] * RING)  # of received
    t0: float = 0.0  # the send clock's start: tick k is sent from t0 + k * TICK
    rtcp: int = 0
    verified: int = 0
    auth_failures: int = 0
    sent: int = 0
    late_subticks: int = 0  # the send clock's own lateness (the generator falling behind)
    skipped_sends: int = 0
    max_late: float = 0.0


class SyntheticEndpoint:
    """One endpoint: aiortc's ICE and DTLS transports, then a fast path for media."""

    def __init__(self, room: Room, index: int, certificate: RTCCertificate,
                 counters: Counters) -> None:
        self.room = room
        self.index = index
        self.endpoint_id = f"e{index}"
        self.ssrc = random.randrange(1, 1 << 32)
        # No sequence number wrap for 16 minutes: a receiver that decrypts one packet in
        # VERIFY_EVERY could otherwise miss the wrap and guess the wrong SRTP rollover counter.
        self.seq = random.randrange(0, 1 << 14)
        self.twcc = 0
        self.counters = counters
        self.gatherer = RTCIceGatherer(iceServers=[])
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [certificate])
        self.sendto: Callable[[bytes, tuple[str, int]], int] | None = None
        self.addr: tuple[str, int] = ("", 0)
        self.protect: Callable[[bytes], bytes] | None = None
        self.profile = ""
        self._payload = b""
        self._sock: socket.socket | None = None

    async def connect(self, control: Control, payload: int) -> None:
        conf = self.room.conference_id
        alloc = await control.call("allocate", conference=conf, endpoint=self.endpoint_id)
        remote = transport_from_json(alloc["transport"])
        await self.gatherer.gather()
        for c in remote.candidates:
            await self.ice.addRemoteCandidate(RTCIceCandidate(
                component=c.component, foundation=c.foundation, ip=c.host, port=c.port,
                priority=c.priority, protocol=c.protocol, type=c.type))
        await self.ice.addRemoteCandidate(None)
        # Our agent knows both sides before the bridge starts its checks towards us.
        ice = asyncio.get_running_loop().create_task(self.ice.start(RTCIceParameters(
            usernameFragment=remote.ice_ufrag, password=remote.ice_pwd)))
        params = self.gatherer.getLocalParameters()
        local = TransportDescription(
            ice_ufrag=params.usernameFragment or "", ice_pwd=params.password or "",
            fingerprints=tuple(DtlsFingerprint(f.algorithm, f.value)
                               for f in self.dtls.getLocalParameters().fingerprints),
            setup="active", candidates=tuple(
                IceCandidate(c.foundation, c.component, c.protocol.lower(), c.priority, c.ip,
                             c.port, c.type) for c in self.gatherer.getLocalCandidates()))
        source = MediaSource(self.endpoint_id, "audio", self.ssrc, stream_id=self.endpoint_id,
                             track_id=f"{self.endpoint_id}-audio")
        await control.call("update", conference=conf, endpoint=self.endpoint_id,
                           transport=to_json(local), sources=[to_json(source)])
        await ice
        if self.ice.state != "completed":
            raise ConnectionError(f"{conf}/{self.endpoint_id}: ICE {self.ice.state}")
        await self.dtls.start(RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(f.algorithm, f.value) for f in remote.fingerprints],
            role="client"))
        if self.dtls.state != "connected":
            raise ConnectionError(f"{conf}/{self.endpoint_id}: DTLS {self.dtls.state}")
        # aiortc internals, for the load only (the bridge's own are in bridge/aiortc_adapter.py)
        pair = self.ice._connection._nominated[1]
        self.addr = pair.remote_addr
        self.protect = srtp(self.dtls._tx_srtp).protect  # libsrtp from C, as the bridge
        ssl = self.dtls._ssl
        self.profile = ssl.get_selected_srtp_profile().decode() if ssl is not None else ""
        self._payload = bytes(random.randrange(256) for _ in range(payload))
        self._take_socket(pair.protocol)

    def _take_socket(self, protocol: Any) -> None:
        """Read the ICE socket ourselves, in batches, from a duplicate of its descriptor:
        asyncio's transport stops reading (pause_reading), SRTP is counted here, and STUN
        and DTLS still go to aioice's protocol. Sending uses the duplicate too."""
        transport = protocol.transport
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        sock.setblocking(False)
        self._sock = sock
        self.sendto = sock.sendto
        original = protocol.datagram_received
        counters = self.counters
        received = counters.received
        too_late = counters.too_late
        clock = asyncio.get_running_loop().time
        unprotect = srtp(self.dtls._rx_srtp).unprotect
        fd = sock.fileno()
        reader = READER
        read, buf, length, headers = reader.read, reader.buffer, reader.length, reader.size
        addr = self.addr
        unpack = U32.unpack_from
        seen = 0

        def drain() -> None:
            nonlocal seen
            # Ticks sent before this one are too late to be played (no per-packet clock read).
            late_tick = int((clock() - TOO_LATE - counters.t0) / TICK)
            for _ in range(DRAIN_ROUNDS):
                n = read(fd)
                if n <= 0:  # nothing waiting, or an ICMP error reported on the socket
                    return
                for i in range(n):
                    off = i * headers
                    first = buf[off]
                    if 127 < first < 192:
                        if 191 < buf[off + 1] < 224:
                            counters.rtcp += 1
                            continue
                        tick = unpack(buf, off + 4)[0] // TS_STEP
                        received[tick & MASK] += 1
                        if tick < late_tick:
                            too_late[tick & MASK] += 1
                        seen += 1
                        if not seen % VERIFY_EVERY:
                            try:
                                unprotect(bytes(buf[off:off + length(i)]))
                            except Exception:
                                counters.auth_failures += 1
                            else:
                                counters.verified += 1
                    else:  # STUN (consent) and DTLS: only the bridge's address talks to us
                        original(bytes(buf[off:off + length(i)]), addr)
                if n < reader.batch:
                    return

        POLLER.add(fd, drain)

    def send(self, tick: int, level: int) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.twcc = (self.twcc + 1) & 0xFFFF
        plain = (HDR.pack(0x90, 111, self.seq, (tick * TS_STEP) & 0xFFFFFFFF, self.ssrc)
                 + EXT_HDR + bytes((0x10, 0x80 | level, 0x31)) + U16.pack(self.twcc)
                 + b"\x00\x00\x00" + self._payload)
        assert self.protect is not None and self.sendto is not None
        self.sendto(self.protect(plain), self.addr)

    async def close(self) -> None:
        if self._sock is not None:
            POLLER.remove(self._sock.fileno())
            self._sock.close()
            self._sock = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.dtls.stop(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ice.stop(), 5.0)


class Poller:
    """Reads every endpoint's socket every DRAIN_PERIOD instead of on each readiness: with
    hundreds of sockets each readiness event brought one to three datagrams, and the
    selector's and the callback's cost per event was most of the generator's time. A packet
    is counted at most DRAIN_PERIOD after it arrived, well inside TOO_LATE."""

    def __init__(self) -> None:
        self._drains: dict[int, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, fd: int, drain: Callable[[], None]) -> None:
        self._drains[fd] = drain
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DRAIN_PERIOD, self._poll)

    def remove(self, fd: int) -> None:
        self._drains.pop(fd, None)
        if not self._drains and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for drain in list(self._drains.values()):
            drain()
        # every DRAIN_PERIOD from the start of the last poll, never back to back
        self._timer = loop.call_at(max(start + DRAIN_PERIOD, loop.time() + 0.0005), self._poll)


POLLER = Poller()


@dataclass
class Room:
    conference_id: str
    endpoints: list[SyntheticEndpoint] = field(default_factory=list)
    active: bool = False


class Load:
    """The rooms, the send clock, and the measurement windows."""

    def __init__(self, plan: Plan, control: Control, bridge_pid: int) -> None:
        self.plan = plan
        self.control = control
        self.bridge_pid = bridge_pid
        self.counters = Counters()
        self.rooms: list[Room] = []
        self.certificate = RTCCertificate.generateCertificate()
        self.slots: list[list[SyntheticEndpoint]] = [[] for _ in range(SLOTS)]
        self.loop = asyncio.get_running_loop()
        self.t0 = 0.0
        self.sub = 0
        self.tick = 0
        self._timer: asyncio.TimerHandle | None = None
        self._next_index = 0
        self._next_room = 0
        self.profile = ""
        self.connect_seconds: list[float] = []

    # --- the send clock ------------------------------------------------------------------

    def start_clock(self) -> None:
        self.t0 = self.counters.t0 = self.loop.time() + 0.05
        self._timer = self.loop.call_at(self.t0, self._on_subtick)

    def stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_subtick(self) -> None:
        now = self.loop.time()
        period = TICK / SLOTS
        c = self.counters
        while True:
            due = self.t0 + self.sub * period
            if due > now:
                break
            tick, slot = divmod(self.sub, SLOTS)
            self.tick = tick
            if slot == 0:
                c.expected[tick & MASK] = 0
                c.received[tick & MASK] = 0
                c.too_late[tick & MASK] = 0
            lag = now - due
            c.max_late = max(c.max_late, lag)
            endpoints = self.slots[slot]
            if lag > LATE_COUNT:
                c.late_subticks += 1
            if lag > LATE_SKIP:
                c.skipped_sends += len(endpoints)
            else:
                speaker = (tick // 250) % self.plan.room_size  # a new loud one every 5 s
                expected = 0
                for ep in endpoints:
                    ep.send(tick, 20 if ep.index % self.plan.room_size == speaker else 90)
                    expected += len(ep.room.endpoints) - 1
                c.expected[tick & MASK] += expected
                c.sent += len(endpoints)
            self.sub += 1
        self._timer = self.loop.call_at(self.t0 + self.sub * period, self._on_subtick)

    # --- rooms ---------------------------------------------------------------------------

    async def add_room(self) -> Room:
        room = Room(f"bench-{self._next_room}")
        self._next_room += 1
        for _ in range(self.plan.room_size):
            room.endpoints.append(SyntheticEndpoint(room, self._next_index, self.certificate,
                                                    self.counters))
            self._next_index += 1
        self.rooms.append(room)
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(
                *(ep.connect(self.control, self.plan.payload) for ep in room.endpoints)),
                CONNECT_TIMEOUT)
        except Exception as err:
            states = sorted({f"ICE {ep.ice.state}, DTLS {ep.dtls.state}"
                             for ep in room.endpoints})
            await self._discard(room)
            if isinstance(err, TimeoutError):
                raise ConnectionError(f"a room did not connect within {CONNECT_TIMEOUT:g} s "
                                      f"({', '.join(states)})") from None
            raise
        self.connect_seconds.append(time.monotonic() - started)
        self.profile = room.endpoints[0].profile
        for ep in room.endpoints:
            self.slots[ep.index % SLOTS].append(ep)
        room.active = True
        return room

    async def _discard(self, room: Room) -> None:
        """Stop a room's sending, expire its endpoints at the bridge, close our side."""
        if room in self.rooms:
            self.rooms.remove(room)
        if room.active:
            room.active = False
            for ep in room.endpoints:
                self.slots[ep.index % SLOTS].remove(ep)
        await asyncio.gather(*(self.control.call("expire", conference=room.conference_id,
                                                 endpoint=ep.endpoint_id)
                               for ep in room.endpoints), return_exceptions=True)
        await asyncio.gather(*(ep.close() for ep in room.endpoints))

    async def resize(self, n: int) -> None:
        rooms = n // self.plan.room_size
        while len(self.rooms) > rooms:
            await self._discard(self.rooms[-1])
        while len(self.rooms) < rooms:
            # Two rooms at a time: quicker, and gentle on the bridge's event loop.
            batch = min(2, rooms - len(self.rooms))
            done = await asyncio.gather(*(self.add_room() for _ in range(batch)),
                                        return_exceptions=True)
            failures = [x for x in done if isinstance(x, BaseException)]
            if failures:  # once more, one room at a time, before calling it a failure
                log.warning("a room did not connect (%s): trying again", failures[0])
                await self.add_room()

    @property
    def endpoints(self) -> int:
        return sum(len(r.endpoints) for r in self.rooms if r.active)

    async def close(self) -> None:
        self.stop_clock()
        while self.rooms:
            await self._discard(self.rooms[-1])

    # --- a measurement window ------------------------------------------------------------

    async def _at_tick(self, tick: int) -> None:
        """Sleep until the send clock starts `tick`."""
        await asyncio.sleep(max(0.0, self.t0 + tick * TICK - self.loop.time()))
        while self.tick < tick:
            await asyncio.sleep(0.002)

    async def measure(self, n: int) -> dict[str, Any]:
        plan = self.plan
        k0 = self.tick + 2
        k1 = k0 + max(1, round(plan.window_s / TICK))
        await self._at_tick(k0)
        c = self.counters
        late0, skipped0, sent0 = c.late_subticks, c.skipped_sends, c.sent
        auth0, verified0, rtcp0 = c.auth_failures, c.verified, c.rtcp
        s0 = await self.control.call("stats")
        bridge_cpu = CpuMeter(self.bridge_pid).start()
        cores = os.sched_getaffinity(self.bridge_pid)
        steal0 = steal_seconds(cores)
        gen_cpu = CpuMeter(os.getpid()).start()
        bridge_udp0 = udp_counters(socket_inodes(self.bridge_pid))
        gen_udp0 = udp_counters(socket_inodes(os.getpid()))
        await self._at_tick(k1)
        gen_cpu.stop()
        s1 = await self.control.call("stats")
        bridge_cpu.stop()  # after the answer: CPU and counters cover the same stretch
        steal = steal_seconds(cores) - steal0
        bridge_udp1 = udp_counters(socket_inodes(self.bridge_pid))
        gen_udp1 = udp_counters(socket_inodes(os.getpid()))
        late1, skipped1, sent1 = c.late_subticks, c.skipped_sends, c.sent
        # Packets of the window still on their way; later than TOO_LATE they count as lost.
        await asyncio.sleep(max(0.0, self.t0 + k1 * TICK + TOO_LATE + 0.05 - self.loop.time()))
        expected = sum(c.expected[k & MASK] for k in range(k0, k1))
        too_late = sum(c.too_late[k & MASK] for k in range(k0, k1))
        received = sum(c.received[k & MASK] for k in range(k0, k1)) - too_late
        forwarded = s1.get("forwarder_packets_out", 0) - s0.get("forwarder_packets_out", 0)
        loss = 1.0 - received / expected if expected else 1.0
        if forwarded <= 0:  # conferences ended in the window: the bridge's totals dropped
            forwarded = 0
        rec: dict[str, Any] = {
            "n": n, "endpoints": self.endpoints, "rooms": len(self.rooms),
            "window_s": round(bridge_cpu.wall, 3), "ticks": k1 - k0,
            "expected": expected, "received": received, "loss": loss, "too_late": too_late,
            "forwarded": forwarded,
            "bridge_rtp_in": s1.get("forwarder_packets_in", 0) - s0.get("forwarder_packets_in", 0),
            "bridge_packets_sent": s1.get("packets_sent", 0) - s0.get("packets_sent", 0),
            "bridge_cpu_s": round(bridge_cpu.cpu, 3),
            "bridge_cpu_percent": round(bridge_cpu.percent, 1),
            "bridge_wait_percent": round(bridge_cpu.wait_percent, 1),
            "bridge_core_steal_percent": round(100 * steal / max(bridge_cpu.wall, 1e-9), 1),
            "us_per_forwarded": bridge_cpu.cpu / forwarded * 1e6 if forwarded else None,
            "generator_cpu_percent": round(gen_cpu.percent, 1),
            "generator_wait_percent": round(gen_cpu.wait_percent, 1),
            "bridge_socket_drops": bridge_udp1.drops - bridge_udp0.drops,
            "generator_socket_drops": gen_udp1.drops - gen_udp0.drops,
            "late_subticks": late1 - late0, "skipped_sends": skipped1 - skipped0,
            "max_late_ms": round(1000 * c.max_late, 1),
            "rtcp_received": c.rtcp - rtcp0,
            "verified": c.verified - verified0, "auth_failures": c.auth_failures - auth0,
            "endpoints_connected": s1.get("endpoints_connected", 0),
            "endpoints_failed": s1.get("events_failed", 0) - s0.get("events_failed", 0),
            "endpoints_failed_total": s1.get("events_failed", 0),
            "failed_last": s1.get("failed_last", []),
            "unprotect_errors": s1.get("unprotect_errors", 0) - s0.get("unprotect_errors", 0),
        }
        sent = sent1 - sent0
        skipped = rec["skipped_sends"] / (sent + rec["skipped_sends"]) if sent else 1.0
        rec["generator_saturated"] = rec["generator_cpu_percent"] >= 90.0 or skipped > 0.001
        reasons = []
        if skipped > plan.loss_limit:  # the bridge was not offered the load of N endpoints
            reasons.append(f"the generator skipped {100 * skipped:.1f}% of its sends")
        if loss > plan.loss_limit:
            reasons.append(f"loss {100 * loss:.2f}% at the receivers ({too_late} of the "
                           f"{expected} packets arrived but later than {TOO_LATE:g} s)")
        if rec["endpoints_failed"]:
            reasons.append(f"{rec['endpoints_failed']} endpoints failed")
        if rec["endpoints_connected"] < n:
            reasons.append(f"{rec['endpoints_connected']}/{n} endpoints connected")
        if rec["auth_failures"]:
            reasons.append(f"{rec['auth_failures']} sampled packets failed SRTP auth")
        rec["reasons"] = reasons
        rec["ok"] = not reasons
        log.warning("N=%d: loss %.3f%%, %d forwarded, bridge CPU %.0f%% (waited %.0f%%), "
                    "generator CPU %.0f%%%s", n, 100 * loss, forwarded, bridge_cpu.percent,
                    bridge_cpu.wait_percent, gen_cpu.percent, f" -> FAIL {reasons}" * bool(reasons))
        return rec


def failed_step(n: int, load: Load, reason: str) -> dict[str, Any]:
    """The record of a step that could not be measured (its endpoints did not connect)."""
    return {"n": n, "endpoints": load.endpoints, "rooms": len(load.rooms), "window_s": 0.0,
            "expected": 0, "received": 0, "loss": 1.0, "forwarded": 0,
            "bridge_cpu_percent": 0.0, "bridge_wait_percent": 0.0, "us_per_forwarded": None,
            "generator_cpu_percent": 0.0, "generator_wait_percent": 0.0,
            "bridge_socket_drops": 0, "generator_socket_drops": 0, "late_subticks": 0,
            "skipped_sends": 0, "generator_saturated": False, "contended": False,
            "contended_windows": [], "reasons": [reason], "ok": False}


async def run(plan: Plan, control_port: int, bridge_pid: int, out: Path) -> None:
    started = time.monotonic()
    result: dict[str, Any] = {"plan": asdict(plan), "steps": [], "floor": None, "error": None,
                              "stopped": ""}

    def save() -> None:
        result["seconds"] = round(time.monotonic() - started, 1)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.rename(out)

    def left() -> float:
        return plan.budget_s - (time.monotonic() - started)

    control = Control()
    await control.open(control_port)
    load = Load(plan, control, bridge_pid)
    try:
        load.start_clock()
        step_cost = plan.settle_s + plan.window_s + 1.0

        def contended(rec: dict[str, Any]) -> bool:
            """Another process took the bridge's core, or the generator's and it fell
            behind (a generator that kept its schedule offered the whole load)."""
            return (rec["bridge_wait_percent"] >= plan.contended_percent
                    or (rec["generator_wait_percent"] >= plan.contended_percent
                        and rec["generator_saturated"]))

        async def step(n: int) -> dict[str, Any]:
            try:
                await load.resize(n)
            except ConnectionError as err:
                return failed_step(n, load, f"endpoints could not join: {err}")
            result["profile"] = load.profile
            result["connect_s_per_room"] = round(sum(load.connect_seconds)
                                                 / max(1, len(load.connect_seconds)), 2)
            if plan.floor_packets and result["floor"] is None:
                result["floor"] = await control.call(
                    "floor", packets=plan.floor_packets, profile=load.profile,
                    size=12 + 12 + plan.payload, timeout=60.0)
            await asyncio.sleep(plan.settle_s)
            rec = await load.measure(n)
            earlier: list[dict[str, Any]] = []
            # Another process on either core: the window says little; measure it again.
            while ((not rec["ok"] or rec["generator_saturated"]) and contended(rec)
                   and len(earlier) < 2 and left() > step_cost):
                log.warning("N=%d: bridge waited %.0f%%, generator %.0f%% for their cores: "
                            "measuring again", n, rec["bridge_wait_percent"],
                            rec["generator_wait_percent"])
                earlier.append(rec)
                rec = await load.measure(n)
            return rec | {"contended_windows": earlier, "contended": contended(rec)}

        for n in plan.steps:
            room_cost = (sum(load.connect_seconds) / len(load.connect_seconds)
                         if load.connect_seconds else 2.0)
            need = step_cost + max(0, n - load.endpoints) / plan.room_size / 2 * room_cost
            if left() < need:
                result["stopped"] = f"time budget spent before N={n}"
                break
            rec = await step(n)
            result["steps"].append(rec)
            save()
            if not rec["ok"] and rec["contended"]:
                result["stopped"] = (f"N={n} failed while the machine was busy (bridge waited "
                                     f"{rec['bridge_wait_percent']:.0f}%, generator "
                                     f"{rec['generator_wait_percent']:.0f}% for their cores)")
                break
            if not rec["ok"]:
                result["stopped"] = f"N={n} failed: {'; '.join(rec['reasons'])}"
                break
            if rec["generator_saturated"] and plan.stop_on_saturation:
                result["stopped"] = f"generator saturated at N={n}"
                break
    except Exception as err:
        log.exception("load failed")
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        save()
        try:
            await asyncio.wait_for(load.close(), 30.0)
        except Exception as err:
            log.warning("closing the endpoints: %r", err)
        await control.close()
        save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=int, required=True, help="bridge runner's port")
    parser.add_argument("--bridge-pid", type=int, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The endpoints gather on 127.0.0.1 only (aioice skips loopback when it enumerates).
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    plan = Plan(**json.loads(args.plan.read_text()))
    # The stdlib loop, not uvloop: its datagram transport can pause reading, so the sockets
    # are drained in batches by `SyntheticEndpoint._take_socket`.
    asyncio.run(run(plan, args.control, args.bridge_pid, args.out))


if __name__ == "__main__":
    main()
