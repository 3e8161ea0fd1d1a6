"""The bridge under test for the browser-meetings figures: one `bridge.service.Bridge` alone in
its own process (the bench pins it to core 0), driven over JSON lines on a TCP socket on
127.0.0.1 by the load generator (tests/bench/bridge_load.py).

    python -m tests.bench.bridge_runner --ports LOW-HIGH --ready FILE

The runner binds the control socket on a free port, writes that port to FILE (atomically),
and serves until SIGTERM or a "quit" request; then it expires every endpoint. Requests are
one JSON object a line with an "id"; each answer carries the same id and "result" or
"error", so requests on one connection may overlap:

- {"op": "allocate", "conference", "endpoint"} -> the EndpointAllocation (dataclasses.asdict)
- {"op": "update", "conference", "endpoint", "transport", "sources"} -> null
- {"op": "expire", "conference", "endpoint"} -> null
- {"op": "stats"} -> Bridge.stats() plus "events_connected", "events_failed", "failed_last"
- {"op": "floor", "packets", "profile", "size"} -> the floor of forwarding, in CPU
  microseconds per packet: one SRTP protect, one UDP sendto, and both (see `floor`)
- {"op": "quit"} -> null, then the runner stops

`Control` below is the client side (used by the load generator).

The bridge logs at warning level: a record per packet or per endpoint would be measured too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pylibsrtp  # noqa: E402

from bridge.api import (  # noqa: E402
    BridgeEvent,
    DtlsFingerprint,
    EndpointConnected,
    EndpointFailed,
    EndpointUpdate,
    IceCandidate,
    MediaSource,
    TransportDescription,
)
from bridge.service import Bridge, BridgeSettings  # noqa: E402

log = logging.getLogger("bench.bridge_runner")

# libsrtp profile -> (name in OpenSSL's use_srtp list, master key + salt length)
PROFILES: dict[str, tuple[int, int]] = {
    "SRTP_AES128_CM_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "SRTP_AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "SRTP_AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
}
FLOOR_SINK_BUFFER = 64 * 1024 * 1024  # every floor packet fits: none is dropped at the sink
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; Python does not name it


# --- the control protocol's data, both ways -------------------------------------------------


def transport_from_json(d: dict[str, Any]) -> TransportDescription:
    return TransportDescription(
        ice_ufrag=d["ice_ufrag"], ice_pwd=d["ice_pwd"],
        fingerprints=tuple(DtlsFingerprint(**f) for f in d["fingerprints"]),
        setup=d["setup"], candidates=tuple(IceCandidate(**c) for c in d["candidates"]),
        ice_lite=bool(d.get("ice_lite", False)),
    )


def source_from_json(d: dict[str, Any]) -> MediaSource:
    return MediaSource(**d)


def to_json(value: Any) -> Any:
    return asdict(value)


class Control:
    """JSON-lines client of the bridge runner; requests may overlap."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port,
                                                                   limit=1 << 20)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            line = await self._reader.readline()
            if not line:
                break
            reply = json.loads(line)
            fut = self._pending.pop(reply.get("id"), None)
            if fut is not None and not fut.done():
                if "error" in reply:
                    fut.set_exception(RuntimeError(f"bridge runner: {reply['error']}"))
                else:
                    fut.set_result(reply.get("result"))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("bridge runner closed the connection"))

    async def call(self, op: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        assert self._writer is not None
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self._writer.write(json.dumps({"id": self._next, "op": op, **kwargs}).encode() + b"\n")
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# --- the floor: what forwarding one packet cannot cost less than ----------------------------


def rtp_packet(ssrc: int, seq: int, size: int) -> bytes:
    """A plain RTP packet of `size` bytes (header, one-byte extensions, payload) like the
    load's Opus packets."""
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, ssrc)
    ext = b"\xbe\xde\x00\x02" + bytes((0x10, 0xDA, 0x31)) + struct.pack("!H", seq & 0xFFFF)
    ext += b"\x00\x00\x00"
    return header + ext + b"\x5a" * max(0, size - len(header) - len(ext))


def floor(packets: int, profile: str, size: int) -> dict[str, float]:
    """CPU microseconds per packet (this thread's CPU time) of: SRTP protect alone, a UDP
    sendto of the protected packet alone, and the two together (what the bridge's send path
    does per forwarded packet, with nothing else). The sink socket on 127.0.0.1 is not read
    but its buffer holds every packet, so the kernel delivers each one in full."""
    srtp_profile, key_length = PROFILES[profile]
    plain = [rtp_packet(0x1234, i, size) for i in range(packets)]

    def session() -> pylibsrtp.Session:
        policy = pylibsrtp.Policy(key=os.urandom(key_length),
                                  ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                  srtp_profile=srtp_profile)
        return pylibsrtp.Session(policy)

    out: dict[str, float] = {"packets": float(packets), "size": float(size)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        try:
            sink.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, FLOOR_SINK_BUFFER)
        except OSError:  # not root: the largest the system allows
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FLOOR_SINK_BUFFER)
        sink.bind(("127.0.0.1", 0))
        addr = sink.getsockname()
        sender.setblocking(False)
        sendto = sender.sendto

        tx = session()
        protect = tx.protect
        t0 = time.thread_time()
        protected = [protect(p) for p in plain]
        out["protect_us"] = (time.thread_time() - t0) / packets * 1e6
        t0 = time.thread_time()
        for data in protected:
            sendto(data, addr)
        out["sendto_us"] = (time.thread_time() - t0) / packets * 1e6
        _drain(sink)

        tx = session()
        protect = tx.protect
        t0 = time.thread_time()
        for p in plain:
            sendto(protect(p), addr)
        out["protect_sendto_us"] = (time.thread_time() - t0) / packets * 1e6
        _drain(sink)
    return out


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(10_000_000):
            sock.recv(2048)


# --- the server -----------------------------------------------------------------------------


class Runner:
    def __init__(self, bridge: Bridge, stop: asyncio.Event) -> None:
        self.bridge = bridge
        self.stop = stop
        self.connected = 0
        self.failed = 0
        self.failed_last: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        bridge.subscribe(self._on_event)

    def _on_event(self, event: BridgeEvent) -> None:
        if isinstance(event, EndpointConnected):
            self.connected += 1
        elif isinstance(event, EndpointFailed):
            self.failed += 1
            self.failed_last = [*self.failed_last[-4:],
                                f"{event.conference_id}/{event.endpoint_id}: {event.reason}"]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.stop.is_set():
                line = await reader.readline()
                if not line:
                    break
                task = asyncio.get_running_loop().create_task(self._answer(line, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=10.0)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        request: dict[str, Any] = {}
        try:
            request = json.loads(line)
            reply: dict[str, Any] = {"id": request.get("id"),
                                     "result": await self._do(request)}
        except Exception as err:  # the generator reports it; the runner carries on
            log.warning("request %s failed: %r", request.get("op"), err)
            reply = {"id": request.get("id"), "error": f"{type(err).__name__}: {err}"}
        if not writer.is_closing():
            writer.write(json.dumps(reply).encode() + b"\n")

    async def _do(self, r: dict[str, Any]) -> Any:
        op = r.get("op")
        bridge = self.bridge
        if op == "allocate":
            return to_json(await bridge.allocate(r["conference"], r["endpoint"]))
        if op == "update":
            transport = r.get("transport")
            sources = r.get("sources")
            await bridge.update(r["conference"], r["endpoint"], EndpointUpdate(
                transport=transport_from_json(transport) if transport else None,
                sources=tuple(source_from_json(s) for s in sources)
                if sources is not None else None))
            return None
        if op == "expire":
            await bridge.expire(r["conference"], r["endpoint"])
            return None
        if op == "stats":
            out: dict[str, Any] = dict(bridge.stats())
            out.update(events_connected=self.connected, events_failed=self.failed,
                       failed_last=self.failed_last, resources=bridge.resources())
            return out
        if op == "floor":
            return floor(int(r.get("packets", 20000)), str(r["profile"]), int(r["size"]))
        if op == "quit":
            self.stop.set()
            return None
        raise ValueError(f"unknown op {op!r}")


async def serve(args: argparse.Namespace) -> None:
    low, high = (int(p) for p in args.ports.split("-"))
    bridge = Bridge(BridgeSettings(address="127.0.0.1", udp_port=low, tcp_port=None,
                                   endpoint_timeout=args.endpoint_timeout))
    await bridge.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = Runner(bridge, stop)
    server = await asyncio.start_server(runner.handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    ready = Path(args.ready)
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(f"{port}\n")
    tmp.rename(ready)
    log.warning("bridge runner pid %d: control on 127.0.0.1:%d, media ports %d-%d",
                os.getpid(), port, low, high)
    try:
        await stop.wait()
    finally:
        server.close()
        try:
            await asyncio.wait_for(bridge.stop(), 20.0)
        except TimeoutError:
            log.error("bridge did not stop within 20 s")
        log.warning("bridge runner stopped: %s", bridge.resources())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", required=True, help="media UDP port range LOW-HIGH")
    parser.add_argument("--ready", required=True, help="file that gets the control port")
    parser.add_argument("--endpoint-timeout", type=float, default=15.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop  # as `switchboard serve` runs
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
