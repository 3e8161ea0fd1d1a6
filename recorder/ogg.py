"""A small Ogg Opus writer (RFC 7845): the room mix, flushed page by page.

The file is OpusHead and OpusTags pages, then audio pages of at most `packets_per_page` 20 ms
packets (one page a second by default). Each page goes to the file and is flushed to the
operating system as soon as it is full, so a crash or kill -9 loses at most the page being
filled: what is on disk plays to its last page (Ogg has no index to finish). `close()`
writes the last page with the end-of-stream flag.

Granule positions count 48 kHz samples of output, starting at `pre_skip` (RFC 7845 4).
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import BinaryIO

SAMPLES_PER_FRAME = 960  # 20 ms at 48 kHz


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def opus_head(channels: int = 1, input_rate: int = 48000, pre_skip: int = 312) -> bytes:
    """The OpusHead packet (RFC 7845 5.1), also Matroska's CodecPrivate for A_OPUS."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def opus_tags(vendor: str, comments: dict[str, str] | None = None) -> bytes:
    v = vendor.encode()
    out = [b"OpusTags", struct.pack("<I", len(v)), v, struct.pack("<I", len(comments or {}))]
    for key, value in (comments or {}).items():
        c = f"{key}={value}".encode()
        out += [struct.pack("<I", len(c)), c]
    return b"".join(out)


def page(serial: int, sequence: int, granule: int, packets: list[bytes], *,
         bos: bool = False, eos: bool = False) -> bytes:
    """One Ogg page holding whole packets (each under 255 * 255 bytes in total)."""
    lacing = bytearray()
    for packet in packets:
        n = len(packet)
        lacing += b"\xff" * (n // 255) + bytes([n % 255])
    if len(lacing) > 255:
        raise ValueError("ogg: too many packets for one page")
    flags = (0x02 if bos else 0) | (0x04 if eos else 0)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0,
                         len(lacing)) + bytes(lacing)
    body = b"".join(packets)
    crc = ogg_crc(header + body)
    return header[:22] + struct.pack("<I", crc) + header[26:] + body


class OggOpusWriter:
    def __init__(self, fh: BinaryIO, *, serial: int = 0x5357, input_rate: int = 48000,
                 pre_skip: int = 312, packets_per_page: int = 50,
                 comments: dict[str, str] | None = None) -> None:
        self.fh = fh
        self.serial = serial
        self.pre_skip = pre_skip
        self.packets_per_page = max(1, min(packets_per_page, 200))
        self.sequence = 0
        self.granule = pre_skip
        self.packets: list[bytes] = []
        self.bytes = 0
        self.closed = False
        self._write(page(serial, 0, 0, [opus_head(1, input_rate, pre_skip)], bos=True))
        self._write(page(serial, 1, 0, [opus_tags("switchboard", comments)]))
        self.sequence = 2

    def write(self, packet: bytes, samples: int = SAMPLES_PER_FRAME) -> None:
        """One Opus packet of ``samples`` (48 kHz) output samples."""
        self.packets.append(packet)
        self.granule += samples
        if len(self.packets) >= self.packets_per_page:
            self.flush_page()

    def flush_page(self, *, eos: bool = False) -> None:
        if not self.packets and not eos:
            return
        self._write(page(self.serial, self.sequence, self.granule, self.packets, eos=eos))
        self.sequence += 1
        self.packets = []

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()
        self.bytes += len(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.flush_page(eos=True)
        with contextlib.suppress(OSError, ValueError):
            os.fsync(self.fh.fileno())
        self.fh.close()
