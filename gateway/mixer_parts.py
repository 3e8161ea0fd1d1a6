"""What the conference mixer is made of: the protocols of its members (a :class:`Contributor`
gives frames, a :class:`Listener` takes encoded ones, a :class:`MixerLeg` is both), and its
per-member and per-room state (:class:`MixMember`, :class:`MixRoom`: rates, resampling
filters, the buffers reused every tick). ``gateway/mixer.py`` does the mixing with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gateway.media.resample import Resampler
from gateway.prompts import SAMPLE_RATE, PromptPlayer

log = logging.getLogger("gateway.mixer")  # the rate changes are the mixer's news

Pcm = npt.NDArray[np.int16]
EncodeFn = Callable[[Pcm], bytes]
EncoderLookup = Callable[[str], EncodeFn]
VoiceTap = Callable[["Pcm | None", bool], None]  # (frame, voiced)


class Contributor(Protocol):
    """Something whose audio goes into a room's mix."""

    def pull_frame(self, now: float) -> Pcm | None:
        """The next decoded 20 ms frame, or None for nothing (silence, not started)."""
        ...


class Listener(Protocol):
    """Something that hears a room's mix, encoded in its codec."""

    @property
    def codec_name(self) -> str: ...

    def send_payload(self, payload: bytes) -> None:
        """One encoded 20 ms frame out."""
        ...


class MixerLeg(Contributor, Listener, Protocol):
    """A phone call leg: it speaks into the room and hears it."""

    @property
    def leg_id(self) -> str: ...


def member_rate(obj: object | None, default: int = SAMPLE_RATE) -> int:
    if obj is None:
        return default
    rate = getattr(obj, "sample_rate", default)
    return int(rate) if isinstance(rate, int) else default


class MixMember:
    """One leg, source or listener, as the mixer sees it."""

    __slots__ = ("codec", "encode", "errors", "in_rate", "listener", "member_id", "muted",
                 "out_rate", "overlay", "prompt", "resamplers", "room", "row", "source", "tap")

    def __init__(self, member_id: str, source: Contributor | None, listener: Listener | None,
                 encode: EncodeFn | None) -> None:
        self.member_id = member_id
        self.source = source
        self.listener = listener
        self.codec = listener.codec_name if listener is not None else ""
        self.encode = encode
        self.room: MixRoom | None = None
        self.muted = False
        self.prompt: PromptPlayer | None = None   # what a solo leg hears
        self.overlay: PromptPlayer | None = None  # mixed over what the leg hears
        self.row = -1  # this tick: row in the room's frame block, -1 = contributed nothing
        self.errors = 0
        self.in_rate = member_rate(source)  # 0: follows the room
        self.out_rate = member_rate(listener)
        self.tap: VoiceTap | None = None
        self.resamplers: dict[tuple[str, int, int], Resampler] = {}

    def resample(self, what: str, frame: Pcm, from_rate: int, to_rate: int) -> Pcm:
        """``frame`` at ``to_rate`` through this member's own streaming filter for ``what``."""
        key = (what, from_rate, to_rate)
        r = self.resamplers.get(key)
        if r is None:
            r = self.resamplers[key] = Resampler(from_rate, to_rate)
        return r.process(frame)


class MixRoom:
    __slots__ = ("contributors", "listeners", "name", "out", "rate", "resamplers",
                 "shared", "shared_encoders", "tones", "voiced", "voices")

    def __init__(self, name: str) -> None:
        self.name = name
        self.contributors: list[MixMember] = []
        self.listeners: list[MixMember] = []
        self.tones: list[PromptPlayer] = []
        self.rate = 0
        self.voiced: list[MixMember] = []                               # member of each row
        self.voices: list[Pcm] = []                                     # frame of each row
        self.shared: dict[str, bytes] = {}                            # codec -> encoded mix
        self.shared_encoders: dict[str, EncodeFn] = {}                # codec -> its encoder
        self.resamplers: dict[tuple[str, int], Resampler] = {}       # tones, shared mixes
        self._allocate(SAMPLE_RATE, 4)

    def _allocate(self, rate: int, rows: int) -> None:
        # Reused every tick, grown as contributors join: a row per voice (its N-1 mix),
        # then the full mix
        self.rate = rate
        self.out = np.zeros((rows + 1, rate // 50), dtype=np.int16)

    def ensure_rows(self, rows: int) -> None:
        if rows + 1 > self.out.shape[0]:
            self._allocate(self.rate, max(rows, 2 * (self.out.shape[0] - 1)))

    def update_rate(self) -> None:
        """16 kHz while any member is wideband, else 8 kHz."""
        members = (*self.contributors, *self.listeners)
        rate = max((max(m.in_rate, m.out_rate if m.listener is not None else 0)
                    for m in members), default=SAMPLE_RATE)
        rate = 16000 if rate > SAMPLE_RATE else SAMPLE_RATE
        if rate != self.rate:
            log.info("mixer: room %s now mixes at %d Hz", self.name, rate)
            self._allocate(rate, self.out.shape[0] - 1)
            self.resamplers.clear()

    def resample(self, what: str, frame: Pcm, to_rate: int) -> Pcm:
        """A room-wide stream (``what``: tones, or the shared mix for one rate) at
        ``to_rate``, from the room's rate (tones: from 8 kHz)."""
        key = (what, to_rate)
        r = self.resamplers.get(key)
        if r is None:
            from_rate = SAMPLE_RATE if what == "tones" else self.rate
            r = self.resamplers[key] = Resampler(from_rate, to_rate)
        return r.process(frame)
