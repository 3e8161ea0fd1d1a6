"""DTMF: RFC 4733 telephone-events in RTP (receiver and sender) and SIP INFO bodies.

Receiver: one ``DtmfStarted`` per event (at the first packet we see of it, whichever that
is: the marker packet, an update, or even an end packet when the others were lost) and one
``DtmfEnded`` (at the first end packet; redundant end packets and late updates are
ignored; an event whose end packets were all lost ends when a new event starts or at
``get_timer()``). Events are told apart by their RTP timestamp.

Sender: ``dtmf_packets(digit)`` gives the payloads and send times for one digit: a first
packet with the marker bit, an update every 20 ms (same timestamp, growing duration) and
the end packet three times.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass

from .rtp import RtpPacket

log = logging.getLogger(__name__)

#: RFC 4733 event codes 0..15
DTMF_DIGITS = "0123456789*#ABCD"
_EVENT_OF_DIGIT = {d: i for i, d in enumerate(DTMF_DIGITS)}
_EVENT = struct.Struct("!BBH")
_HALF32 = 1 << 31
_MOD32 = 1 << 32


def digit_to_event(digit: str) -> int:
    """Event code for a digit ("0".."9", "*", "#", "A".."D"); ``ValueError`` otherwise."""
    code = _EVENT_OF_DIGIT.get(digit.upper()) if len(digit) == 1 else None
    if code is None:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet RFC 4733 payload."""

    event: int
    end: bool
    volume: int        # 0..63, -dBm0
    duration: int      # timestamp units since the event's timestamp

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload shorter than 4 octets")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return _EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )


# --- receiver -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfStarted:
    digit: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class DtmfEnded:
    digit: str
    timestamp: int
    duration_ms: int
    #: False when no end packet came and the event was closed by a new one or a timeout
    confirmed: bool = True


DtmfEvent = DtmfStarted | DtmfEnded


@dataclass(slots=True)
class _Current:
    timestamp: int
    event: int
    duration: int
    last_update: float
    offset: int = 0        # duration of earlier segments of a long event


class DtmfReceiver:
    def __init__(self, clock_rate: int = 8000, timeout: float = 2.0) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self.garbage = 0
        self._current: _Current | None = None
        self._finished: deque[int] = deque(maxlen=16)
        self._events: deque[DtmfEvent] = deque()

    def next_event(self) -> DtmfEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        cur = self._current
        return None if cur is None else cur.last_update + self.timeout

    def handle_timer(self, now: float) -> None:
        cur = self._current
        if cur is not None and now >= cur.last_update + self.timeout:
            self._finish(confirmed=False)

    def receive_packet(self, packet: RtpPacket, now: float) -> None:
        self.receive(packet.timestamp, packet.marker, packet.payload, now)

    def receive(self, timestamp: int, marker: bool, payload: bytes, now: float) -> None:
        try:
            te = TelephoneEvent.parse(payload)
        except ValueError:
            self.garbage += 1
            return
        if te.event >= len(DTMF_DIGITS):
            return   # flash, tones and other events are not digits
        if timestamp in self._finished:
            return   # a redundant end packet, or a late update of an event already ended
        cur = self._current
        if cur is not None and cur.timestamp != timestamp:
            delta = (timestamp - cur.timestamp) % _MOD32
            if delta >= _HALF32:
                return   # older than the current event: a late packet of an earlier one
            if (
                te.event == cur.event
                and not marker
                and delta <= cur.duration + self.clock_rate // 10
                and cur.duration >= 0xFFFF - self.clock_rate
            ):
                # RFC 4733 2.5.1.3: a long event continues in a new segment
                self._finished.append(cur.timestamp)
                cur.offset += delta
                cur.timestamp = timestamp
                cur.duration = te.duration
                cur.last_update = now
                if te.end:
                    self._finish(confirmed=True)
                return
            self._finish(confirmed=False)
            cur = None
        if cur is None:
            cur = self._current = _Current(timestamp, te.event, te.duration, now)
            self._events.append(DtmfStarted(DTMF_DIGITS[te.event], timestamp))
        else:
            cur.duration = max(cur.duration, te.duration)
            cur.last_update = now
        if te.end:
            self._finish(confirmed=True)

    def _finish(self, confirmed: bool) -> None:
        cur = self._current
        if cur is None:
            return
        self._current = None
        self._finished.append(cur.timestamp)
        duration_ms = (cur.offset + cur.duration) * 1000 // self.clock_rate
        self._events.append(
            DtmfEnded(DTMF_DIGITS[cur.event], cur.timestamp, duration_ms, confirmed)
        )


# --- sender ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    payload: bytes
    marker: bool
    end: bool
    offset: float      # seconds after the first packet of the digit


def dtmf_packets(
    digit: str,
    duration_ms: int = 160,
    volume: int = 10,
    clock_rate: int = 8000,
    interval_ms: int = 20,
    end_repeats: int = 3,
) -> list[DtmfPacket]:
    """The packets for one digit; all carry the same RTP timestamp (the event start).

    Updates go every ``interval_ms`` with a growing duration; the last one has the end bit
    and the full duration and is sent ``end_repeats`` times, ``interval_ms`` apart.
    """
    code = digit_to_event(digit)
    step = clock_rate * interval_ms // 1000
    count = max(1, round(duration_ms / interval_ms))
    total = min(count * step, 0xFFFF)
    packets: list[DtmfPacket] = []
    for k in range(count - 1):
        payload = TelephoneEvent(code, False, volume, (k + 1) * step).serialize()
        packets.append(DtmfPacket(payload, k == 0, False, k * interval_ms / 1000.0))
    end_payload = TelephoneEvent(code, True, volume, total).serialize()
    for r in range(max(1, end_repeats)):
        offset = (count - 1 + r) * interval_ms / 1000.0
        packets.append(DtmfPacket(end_payload, count == 1 and r == 0, True, offset))
    return packets


# --- SIP INFO bodies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    digit: str
    duration_ms: int | None = None


_MAX_INFO_BODY = 1024


def _digit_from_text(text: str) -> str | None:
    text = text.strip()
    if len(text) == 1 and text.upper() in _EVENT_OF_DIGIT:
        return text.upper()
    if text.isdigit() and len(text) == 2 and 10 <= int(text) <= 15:
        return DTMF_DIGITS[int(text)]   # some senders put the RFC 4733 event code
    return None


def parse_dtmf_relay(body: bytes) -> DtmfInfo | None:
    """``application/dtmf-relay``: ``Signal=5\\r\\nDuration=160``; garbage gives None."""
    if len(body) > _MAX_INFO_BODY:
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    digit: str | None = None
    duration: int | None = None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        name = name.strip().lower()
        if name == "signal":
            digit = _digit_from_text(value)
            if digit is None:
                return None
        elif name == "duration":
            value = value.strip()
            if value.isdigit() and len(value) <= 6:
                duration = int(value)
    if digit is None:
        return None
    return DtmfInfo(digit, duration)


def parse_dtmf(body: bytes) -> DtmfInfo | None:
    """``application/dtmf``: the digit alone (``5``); garbage gives None."""
    if len(body) > 16:
        return None
    try:
        digit = _digit_from_text(body.decode("ascii"))
    except UnicodeDecodeError:
        return None
    return None if digit is None else DtmfInfo(digit)


def parse_info_body(content_type: str | None, body: bytes) -> DtmfInfo | None:
    """Dispatch on the INFO Content-Type (parameters ignored); None if not a digit."""
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/dtmf-relay":
        return parse_dtmf_relay(body)
    if media == "application/dtmf":
        return parse_dtmf(body)
    return None
