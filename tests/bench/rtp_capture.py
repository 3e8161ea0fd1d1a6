"""Arrival times of RTP packets on loopback, as the phones see them, for tests/bench/phase.py.

sipp never reads its media sockets, so the legs bench watches the loopback interface instead:
a packet socket (AF_PACKET, root only) on ``lo`` with kernel receive timestamps
(SO_TIMESTAMPNS), so the time recorded is when the packet crossed loopback (on lo: when it
reached the phone's socket), not when this thread got to read it. Only UDP over IPv4 whose
source port is in ``src_ports`` and which looks like RTP (version 2, not RTCP) is kept, per
stream (source port, destination port): (arrival time, RTP timestamp). The timestamp, not
the sequence number, places a packet in its stream, as a phone's jitter buffer does: a tick
the server skipped moves the timestamp on (a gap), not the sequence.

``RtpCapture(src_ports).start()`` ... ``stop()`` -> ``streams()``; ``available()`` says
whether this process may open the socket.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

log = logging.getLogger("bench.capture")

ETH_P_IP = 0x0800
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
PACKET_OUTGOING = 4
_TS = struct.Struct("@qq")  # struct timespec
MAX_SECONDS = 600.0         # a capture stops by itself after this long


def available() -> bool:
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    except (OSError, AttributeError):
        return False
    s.close()
    return True


class RtpCapture:
    def __init__(self, src_ports: range, *, iface: str = "lo") -> None:
        self.src_ports = src_ports
        self.iface = iface
        self._streams: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seen = 0

    def start(self) -> RtpCapture:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        sock.bind((self.iface, ETH_P_IP))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True,
                                        name="rtp-capture")
        self._thread.start()
        return self

    def stop(self) -> dict[tuple[int, int], tuple[list[float], list[int]]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        return self._streams

    def streams(self) -> dict[tuple[int, int], tuple[list[float], list[int]]]:
        return self._streams

    def _run(self, sock: socket.socket) -> None:
        lo, hi = self.src_ports.start, self.src_ports.stop
        streams = self._streams
        cmsg_space = socket.CMSG_SPACE(_TS.size)
        deadline = time.monotonic() + MAX_SECONDS
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    data, anc, _flags, addr = sock.recvmsg(2048, cmsg_space)
                except TimeoutError:
                    continue
                if addr[2] == PACKET_OUTGOING or len(data) < 40 or data[9] != 17:
                    continue
                ihl = (data[0] & 0x0F) * 4
                sport, dport = struct.unpack_from("!HH", data, ihl)
                if not lo <= sport < hi:
                    continue
                rtp = ihl + 8
                if data[rtp] & 0xC0 != 0x80 or 72 <= (data[rtp + 1] & 0x7F) <= 76:
                    continue
                stamp = None
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _TS.unpack(value[:_TS.size])
                        stamp = sec + nsec * 1e-9
                if stamp is None:
                    stamp = time.time()
                (ts,) = struct.unpack_from("!I", data, rtp + 4)
                times, stamps = streams.setdefault((sport, dport), ([], []))
                times.append(stamp)
                stamps.append(ts)
                self.seen += 1
        except OSError:
            log.exception("rtp capture failed")
        finally:
            sock.close()
