"""IVR prompts: loading the shipped WAV files (or an operator's) and playing them in 20 ms frames.

The shipped prompts live in ``gateway/prompts/`` (made by ``scripts/make-prompts.sh`` with
espeak-ng and sox). An operator can override any of them by putting a file with the same name
(``welcome.wav``, ...) in a configured folder. Every file must be an uncompressed 8 kHz, mono,
16-bit WAV; anything else is refused at start-up with a :class:`PromptError` naming the file, so
a bad file never reaches a caller's ear.

A :class:`PromptSet` keeps each prompt as read-only frames (shape ``(n, 160)``, int16, the last
frame zero-padded), so starting a :class:`PromptPlayer` copies nothing. No I/O happens after
:meth:`PromptSet.load`.
"""

from __future__ import annotations

import logging
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz

SHIPPED_DIR = Path(__file__).with_name("prompts")

PROMPT_TEXTS: dict[str, str] = {
    "welcome": "Welcome. Please enter your meeting PIN, followed by the pound key.",
    "invalid_pin": "That PIN is not valid. Please try again.",
    "joining": "Joining the meeting.",
    "only_participant": "You are the only participant in this meeting.",
    "goodbye": "Goodbye.",
    "muted": "You are muted.",
    "unmuted": "You are unmuted.",
    "muted_by_moderator": "You have been muted by the moderator. Press star six to unmute.",
    "removed": "You have been removed from the meeting.",
    "blocked": "Too many attempts. Please try again later.",
    "room_not_found": "That meeting could not be found.",
    "room_full": "This meeting is full. Goodbye.",
    "busy": "We cannot check your PIN right now. Please call again later.",
    # the room policy (gateway/phone_lobby.py, gateway/call_policy.py)
    "enter_password": "This meeting has a password. Please enter it, followed by the pound key.",
    "invalid_password": "That password is not right. Please try again.",
    "password_failed": "That password is not right. Goodbye.",
    "password_not_typable": "This meeting's password cannot be typed on a phone.",
    "not_allowed": "This meeting is for invited participants only. Goodbye.",
    "lobby_wait": "Please wait, the host will let you in.",
    "admitted": "You are now in the meeting.",
    "denied": "The host did not let you in. Goodbye.",
    "lobby_timeout": "Nobody has let you in yet. Please call again later. Goodbye.",
    "host_joined": (
        "You are the host. Star one lets everyone in, star two locks or unlocks, star "
        "three records."
    ),
    "admitted_all": "Everyone who was waiting is now in the meeting.",
    "nobody_waiting": "Nobody is waiting.",
    "room_locked": "The meeting is locked. New callers will wait in the lobby.",
    "room_unlocked": "The meeting is unlocked.",
    "recording_on": "This meeting is now being recorded.",
    "recording_off": "This meeting is no longer being recorded.",
    "recording_failed": "The recording could not start.",
    "moved_to_lobby": "The host moved you to the lobby.",
}
PROMPT_NAMES: tuple[str, ...] = tuple(PROMPT_TEXTS)

Frames = npt.NDArray[np.int16]  # shape (n, FRAME_SAMPLES)


class PromptError(Exception):
    """A prompt file is missing or not an 8 kHz mono 16-bit WAV (the operator's fault)."""


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """Read an 8 kHz, mono, 16-bit PCM WAV file into an int16 array; PromptError otherwise."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except FileNotFoundError as exc:
        raise PromptError(f"prompt file {path}: not found") from exc
    except (wave.Error, EOFError, OSError) as exc:
        raise PromptError(f"prompt file {path}: not a readable PCM WAV file ({exc})") from exc
    problems = []
    if rate != SAMPLE_RATE:
        problems.append(f"sample rate {rate} Hz, need {SAMPLE_RATE}")
    if channels != 1:
        problems.append(f"{channels} channels, need mono")
    if width != 2:
        problems.append(f"{8 * width}-bit samples, need 16-bit")
    if problems:
        raise PromptError(
            f"prompt file {path}: {'; '.join(problems)} "
            f"(convert with: sox IN.wav -r 8000 -c 1 -b 16 -e signed-integer OUT.wav)"
        )
    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    if samples.size == 0:
        raise PromptError(f"prompt file {path}: no audio")
    return samples


def to_frames(samples: npt.NDArray[np.int16], frame_samples: int = FRAME_SAMPLES) -> Frames:
    """Cut samples into read-only frames of ``frame_samples``, zero-padding the last one."""
    count = -(-samples.size // frame_samples)  # ceiling division
    frames = np.zeros((count, frame_samples), dtype=np.int16)
    frames.reshape(-1)[: samples.size] = samples
    frames.flags.writeable = False
    return frames


class PromptPlayer:
    """Plays one clip (prompt or tone) as 20 ms frames; the mixer pulls one frame per tick.

    ``next_frame()`` returns a read-only view of the next frame, or None once the clip has
    ended or :meth:`stop` was called. ``finished`` tells the two apart from ``stopped``.
    """

    __slots__ = ("_frames", "_index", "name", "stopped")

    def __init__(self, frames: Frames, name: str = "") -> None:
        if frames.ndim != 2:
            raise ValueError("frames must have shape (n, frame_samples)")
        self._frames = frames
        self._index = 0
        self.name = name
        self.stopped = False

    @property
    def frame_count(self) -> int:
        return int(self._frames.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds (at 50 frames per second)."""
        return self.frame_count * 0.020

    @property
    def finished(self) -> bool:
        """True once every frame was played (not set by stop())."""
        return self._index >= self.frame_count

    @property
    def done(self) -> bool:
        """True when no more frames will come: finished or stopped."""
        return self.stopped or self._index >= self.frame_count

    def next_frame(self) -> npt.NDArray[np.int16] | None:
        if self.stopped or self._index >= self._frames.shape[0]:
            return None
        frame: npt.NDArray[np.int16] = self._frames[self._index]
        self._index += 1
        return frame

    def stop(self) -> None:
        self.stopped = True

    def __iter__(self) -> Iterator[npt.NDArray[np.int16]]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def __repr__(self) -> str:
        return f"PromptPlayer({self.name!r}, {self._index}/{self.frame_count})"


class PromptSet:
    """The IVR's prompts, as frames, keyed by name ("welcome", "invalid_pin", ...)."""

    def __init__(self, frames: dict[str, Frames]) -> None:
        self._frames = dict(frames)

    @classmethod
    def load(
        cls,
        override_dir: str | Path | None = None,
        shipped_dir: str | Path = SHIPPED_DIR,
        names: tuple[str, ...] = PROMPT_NAMES,
    ) -> PromptSet:
        """Load every prompt from ``shipped_dir``, each replaced by ``override_dir/<name>.wav``
        when that file exists. Raises PromptError naming the first bad or missing file."""
        shipped = Path(shipped_dir)
        override = Path(override_dir) if override_dir is not None else None
        if override is not None and not override.is_dir():
            raise PromptError(f"prompt folder {override}: not a directory")
        frames: dict[str, Frames] = {}
        for name in names:
            path = shipped / f"{name}.wav"
            if override is not None and (override / f"{name}.wav").is_file():
                path = override / f"{name}.wav"
                log.info("prompt %s: using operator's file %s", name, path)
            frames[name] = to_frames(read_wav(path))
        if override is not None:
            known = {f"{name}.wav" for name in names}
            for extra in sorted(p.name for p in override.glob("*.wav") if p.name not in known):
                log.warning("prompt folder %s: ignoring unknown prompt %s", override, extra)
        return cls(frames)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._frames)

    def __contains__(self, name: object) -> bool:
        return name in self._frames

    def frames(self, name: str) -> Frames:
        try:
            return self._frames[name]
        except KeyError:
            raise KeyError(f"no prompt named {name!r}") from None

    def samples(self, name: str) -> npt.NDArray[np.int16]:
        """The prompt as one flat int16 array (including the zero padding of the last frame)."""
        return self.frames(name).reshape(-1)

    def duration(self, name: str) -> float:
        return int(self.frames(name).shape[0]) * 0.020

    def player(self, name: str) -> PromptPlayer:
        return PromptPlayer(self.frames(name), name)
