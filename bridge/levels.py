"""Audio levels (RFC 6464) and the dominant speaker chosen from them, with hysteresis.

The level is what the sender puts in the `ssrc-audio-level` header extension: 0 is the
loudest (0 dBov), 127 silence (-127 dBov). The forwarder adds every packet's level to its
endpoint's `SpeakerState` (two additions, no call); `DominantSpeaker.tick(now)` runs a few
times a second, turns each endpoint's mean level over the interval into an activity score,
smooths it, and lets a new speaker take over only after it was clearly louder than the
current one for `switch_after` seconds (as Jitsi's dominant speaker identification: a cough
or a short "yes" does not move the stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.rtp import scan_extensions


def audio_level(data: bytes, ext_id: int) -> int | None:
    """The RFC 6464 level (0 loudest .. 127 silence) of an RTP packet, one-byte or two-byte
    header extension form; None when the packet carries none."""
    if len(data) < 12 or ext_id <= 0:
        return None
    pos = scan_extensions(data, ext_id, -1, -1)[0]
    if pos < 0:
        return None
    return data[pos] & 0x7F


def voice_activity(data: bytes, ext_id: int) -> bool | None:
    """The V flag of the extension (the sender's own voice activity detection), or None."""
    if len(data) < 12 or ext_id <= 0:
        return None
    pos = scan_extensions(data, ext_id, -1, -1)[0]
    if pos < 0:
        return None
    return bool(data[pos] & 0x80)


@dataclass(frozen=True, slots=True)
class SpeakerSettings:
    silence_level: int = 75  # mean levels at or above this (-75 dBov) count as silence
    smoothing: float = 0.5  # weight of the newest interval in the smoothed score
    switch_after: float = 1.0  # seconds a challenger must stay clearly louder
    margin: float = 6.0  # "clearly": this many dB of activity above the current speaker
    min_activity: float = 8.0  # a score below this never takes the floor
    remember: int = 32  # recent speakers kept for last-N ordering


class SpeakerState:
    """Per endpoint: the levels of the current interval (the forwarder adds to these) and the
    smoothed activity score."""

    __slots__ = ("count", "endpoint_id", "level_sum", "score")

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        self.level_sum = 0
        self.count = 0
        self.score = 0.0


class DominantSpeaker:
    """Chooses the dominant speaker among endpoints; remembers recent speakers."""

    def __init__(self, settings: SpeakerSettings | None = None) -> None:
        self.settings = settings or SpeakerSettings()
        self._states: dict[str, SpeakerState] = {}
        self._recent: list[str] = []  # most recent first; [0] is the dominant speaker
        self._dominant: str | None = None
        self._challenger: str | None = None
        self._challenger_since = 0.0

    @property
    def dominant(self) -> str | None:
        return self._dominant

    @property
    def recent(self) -> tuple[str, ...]:
        """Recent speakers, most recent first (the dominant speaker first)."""
        return tuple(self._recent)

    def __len__(self) -> int:
        return len(self._states)

    def add(self, endpoint_id: str) -> SpeakerState:
        state = self._states.get(endpoint_id)
        if state is None:
            state = self._states[endpoint_id] = SpeakerState(endpoint_id)
        return state

    def remove(self, endpoint_id: str) -> bool:
        """Forget an endpoint; True when the dominant speaker changed (the most recent other
        speaker, or nobody, takes over)."""
        self._states.pop(endpoint_id, None)
        if endpoint_id in self._recent:
            self._recent.remove(endpoint_id)
        if self._challenger == endpoint_id:
            self._challenger = None
        if self._dominant != endpoint_id:
            return False
        self._dominant = self._recent[0] if self._recent else None
        return True

    def tick(self, now: float) -> bool:
        """Close the current interval; True when the dominant speaker changed."""
        cfg = self.settings
        best: SpeakerState | None = None
        for state in self._states.values():
            activity = 0.0
            if state.count:
                activity = max(0.0, cfg.silence_level - state.level_sum / state.count)
            state.level_sum = state.count = 0
            state.score += cfg.smoothing * (activity - state.score)
            if state.endpoint_id != self._dominant and (best is None or state.score > best.score):
                best = state
        if best is None or best.score < cfg.min_activity:
            self._challenger = None
            return False
        if self._dominant is None:
            self._take_floor(best.endpoint_id)
            return True
        current = self._states.get(self._dominant)
        current_score = current.score if current is not None else 0.0
        if best.score <= current_score + cfg.margin:
            self._challenger = None
            return False
        if self._challenger != best.endpoint_id:
            self._challenger = best.endpoint_id
            self._challenger_since = now
            return False
        if now - self._challenger_since < cfg.switch_after:
            return False
        self._take_floor(best.endpoint_id)
        return True

    def _take_floor(self, endpoint_id: str) -> None:
        self._dominant = endpoint_id
        self._challenger = None
        if endpoint_id in self._recent:
            self._recent.remove(endpoint_id)
        self._recent.insert(0, endpoint_id)
        del self._recent[self.settings.remember:]
