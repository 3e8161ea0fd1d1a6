"""A UDP socket a test owns and names in a call's SDP: it records every RTP packet the
server sends there, with its arrival time (in a thread, bounded in time)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from peers import audio, procs


@dataclass
class RtpPacket:
    at: float
    source: tuple[str, int]
    payload_type: int
    seq: int
    payload: bytes


class RtpReceiver:
    """A UDP socket the test owns, named in the call's SDP: it records every RTP packet the
    server sends there (in a thread, bounded by `max_s`)."""

    def __init__(self, max_s: float = 60.0) -> None:
        self.port = procs.find_port_block(2, kinds=("udp",))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((procs.LOOPBACK, self.port))
        self.sock.settimeout(0.2)
        self.packets: list[RtpPacket] = []
        self._stop = threading.Event()
        self._max_s = max_s
        self._thread = threading.Thread(target=self._run, name="rtp-receiver", daemon=True)

    def __enter__(self) -> RtpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            csrc = data[0] & 0x0F
            offset = 12 + 4 * csrc
            if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
                offset += 4 + 4 * struct.unpack("!H", data[offset + 2:offset + 4])[0]
            end = len(data) - (data[-1] if data[0] & 0x20 else 0)
            self.packets.append(RtpPacket(time.monotonic(), source, data[1] & 0x7F,
                                          struct.unpack("!H", data[2:4])[0],
                                          data[offset:end]))

    def audio(self, first_s: float) -> tuple[list[RtpPacket], np.ndarray]:
        """The packets of the first `first_s` seconds after the first one, and their PCMU
        payloads decoded in arrival order."""
        if not self.packets:
            return [], np.zeros(0)
        t0 = self.packets[0].at
        window = [p for p in self.packets if p.at - t0 <= first_s]
        pcmu = b"".join(p.payload for p in window if p.payload_type == 0)
        return window, audio.ulaw_decode(pcmu)
