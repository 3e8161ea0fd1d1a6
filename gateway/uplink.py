"""A phone caller's voice towards the bridge: Opus RTP with RFC 6464 audio levels, sans-I/O.

One `VoiceUplink` per phone caller in a conference. The mixer's voice tap hands it, every
20 ms tick, what the caller contributed at the leg's own rate (8 kHz for G.711, 16 kHz for
G.722): it is encoded to Opus once (libopus takes 8 and 16 kHz input directly, so nothing is
resampled) and sent as one RTP packet on the caller's own SSRC, with the frame's level in
the ssrc-audio-level header extension so the bridge's dominant-speaker logic and the
browsers' speaking indicators see phone callers as they see browsers.

Silence sends nothing, as a browser with Opus DTX would: a muted caller or no frame at once,
quiet frames (the mixer's verdict: not voiced) only after `HANGOVER_FRAMES` of them, so the
short gaps between words are sent and the browser's Opus decoder never predicts across a
hole (that alone cost 0.7 PESQ MOS). The RTP timestamp keeps running and the first packet
after a pause carries the marker bit (RFC 3551 talkspurt).

A caller whose phone speaks Opus is passed through: `on_phone_packet` forwards the phone's
Opus payload unchanged (no decode, no encode), with the level of the leg's latest decoded
frame, while the tap says the caller is sending.

An uplink runs only while someone can hear it (the room has receivers: see
gateway/conference_audio.py): `stop(now)` drops the encoder and sends nothing more;
`start(now, encoder)` takes a fresh encoder and goes on where a stream that had kept running
would be: the sequence number continues, the timestamp jumps ahead by the time stopped
(whole 20 ms frames, so a receiver's jitter buffer sees a pause, never a step backwards), and
the first packet carries the marker bit. While stopped, nothing is computed per tick (the
mixer's tap is off, so `on_frame` is not even called) and a pass-through phone's packets are
dropped.

Packets leave through a `PacketLink` (the in-process bridge link now, plain UDP to a bridge
on another host later).
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

OPUS_CLOCK = 48000
TICKS_PER_FRAME = OPUS_CLOCK // 50
LEVEL_SILENT = 127  # -dBov of digital silence in RFC 6464 terms
HANGOVER_FRAMES = 10  # quiet frames still sent after speech (200 ms)
_HEADER_EXT = struct.Struct("!BBHIIHHBBBB")  # RTP header, 0xBEDE, one 4-byte element


class PacketLink(Protocol):
    """Where the uplink's RTP goes (bridge plain endpoint)."""

    def send_rtp(self, data: bytes) -> None: ...


class FrameEncoder(Protocol):
    def encode(self, pcm: Pcm) -> bytes: ...


def audio_level(frame: Pcm) -> int:
    """RFC 6464 level of a frame: 0 (loudest, 0 dBov) .. 127 (silence), in -dBov."""
    if frame.size == 0:
        return LEVEL_SILENT
    samples = frame.astype(np.float32)
    power = float(np.dot(samples, samples)) / frame.size
    if power <= 0.0:
        return LEVEL_SILENT
    dbov = 10.0 * math.log10(power / (32768.0 * 32768.0))
    return max(0, min(LEVEL_SILENT, round(-dbov)))


def rtp_with_level(payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool,
                   level: int, voice: bool, ext_id: int, payload: bytes) -> bytes:
    """An RTP packet with one RFC 8285 one-byte header extension element: the audio level."""
    return _HEADER_EXT.pack(
        0x90, payload_type | (0x80 if marker else 0), seq & 0xFFFF, timestamp & 0xFFFFFFFF,
        ssrc, 0xBEDE, 1, (ext_id << 4) | 0, (0x80 if voice else 0) | level, 0, 0,
    ) + payload


class VoiceUplink:
    """One caller's Opus source at the bridge."""

    def __init__(self, participant_id: str, ssrc: int, link: PacketLink,
                 encoder: FrameEncoder | None, *, payload_type: int = 111,
                 level_ext_id: int = 1, initial_seq: int = 0, initial_ts: int = 0,
                 stopped_at: float | None = None) -> None:
        """``encoder``: Opus at the leg's PCM rate; None for a pass-through (Opus) phone.
        ``stopped_at``: the uplink starts stopped (nobody hears it yet), at that time."""
        self.participant_id = participant_id
        self.ssrc = ssrc
        self.link = link
        self.encoder = encoder
        self.payload_type = payload_type
        self.level_ext_id = level_ext_id
        self.seq = initial_seq & 0xFFFF
        self.timestamp = initial_ts & 0xFFFFFFFF
        self.talking = False  # the last tick sent a packet
        self.level = LEVEL_SILENT
        self.packets = 0
        self.errors = 0
        self.closed = False
        self.hangover = 0  # quiet frames still to send
        self.sending = False  # the last tick's frame was sent (or passed through)
        self._ts_offset: int | None = None
        self.running = stopped_at is None
        self.stopped_at = 0.0 if stopped_at is None else stopped_at
        if stopped_at is not None:
            self.encoder = None
        self.starts = 0

    def stop(self, now: float) -> None:
        """Nobody can hear this caller any more: drop the encoder, send nothing."""
        if not self.running:
            return
        self.running = False
        self.stopped_at = now
        self.encoder = None
        self.sending = False
        self.talking = False
        self.hangover = 0
        self.level = LEVEL_SILENT

    def start(self, now: float, encoder: FrameEncoder | None) -> None:
        """Someone can hear this caller again: encode with ``encoder`` (a fresh one: no
        prediction from audio before the pause) or pass the phone's Opus through (None).
        The timestamp advances by the whole frames elapsed since `stop`; the next packet
        is marked as a new talkspurt."""
        if self.running or self.closed:
            return
        frames = max(0, round((now - self.stopped_at) * 50))
        self.timestamp = (self.timestamp + frames * TICKS_PER_FRAME) & 0xFFFFFFFF
        self.running = True
        self.starts += 1
        self.use_encoder(encoder)

    def on_frame(self, frame: Pcm | None, voiced: bool) -> None:
        """The mixer's voice tap: one call per tick while the caller is in the room."""
        if self.closed or not self.running:
            return
        if frame is not None and voiced:
            self.hangover = HANGOVER_FRAMES
        elif frame is not None and self.hangover > 0:
            self.hangover -= 1
        else:
            frame = None
        self.sending = frame is not None
        if frame is None:
            self.level = LEVEL_SILENT
            self.talking = False
        else:
            self.level = audio_level(frame)
            if self.encoder is not None:
                try:
                    payload = self.encoder.encode(frame)
                except Exception:
                    self._error("encode")
                else:
                    self._send(payload, self.timestamp)
        self.timestamp = (self.timestamp + TICKS_PER_FRAME) & 0xFFFFFFFF

    def on_phone_packet(self, payload: bytes, timestamp: int, marker: bool) -> None:
        """An Opus phone's packet, forwarded without transcoding (pass-through mode): the
        phone's own timestamps (48 kHz, like ours) keep their spacing, shifted once."""
        if self.closed or not self.running or self.encoder is not None or not payload \
                or not self.sending:
            return
        if self._ts_offset is None:
            self._ts_offset = (self.timestamp - timestamp) & 0xFFFFFFFF
        self._send(payload, (timestamp + self._ts_offset) & 0xFFFFFFFF, marker)

    def use_encoder(self, encoder: FrameEncoder | None) -> None:
        """The caller's codec changed (a re-INVITE): encode from now on with ``encoder``, or
        pass the phone's Opus through (None). Sequence numbers and timestamps go on; the
        next packet is marked as a new talkspurt. (While stopped, `start` takes the
        encoder instead.)"""
        if not self.running:
            return
        self.encoder = encoder
        self._ts_offset = None
        self.talking = False

    def _send(self, payload: bytes, timestamp: int, marker: bool = False) -> None:
        marker = marker or not self.talking
        self.talking = True
        packet = rtp_with_level(self.payload_type, self.seq, timestamp, self.ssrc, marker,
                                self.level, self.level < LEVEL_SILENT, self.level_ext_id,
                                payload)
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self.link.send_rtp(packet)
        except Exception:
            self._error("send")
            return
        self.packets += 1

    def _error(self, what: str) -> None:
        if self.errors % 1000 == 0:
            log.exception("participant %s: uplink %s failed (error %d)", self.participant_id,
                          what, self.errors + 1)
        self.errors += 1

    def close(self) -> None:
        self.closed = True
