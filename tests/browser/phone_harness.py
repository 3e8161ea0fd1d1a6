"""baresip phones in the browser tests: phones that dial the real server with a PIN, next to
headless Chromium members of the same room (browser_harness.Crowd).

- `PhoneCodec` / `CODECS`: how baresip offers PCMU, G.722 and Opus (its codec names, and the
  sample rate and channels its audio source must run at for each).
- `Phone`: one baresip (tests/integration/peers/baresip.py) that plays a steady tone, dials
  a number of the server, keys in the PIN as RFC 2833 (`sndcode`), and records what it hears;
  `heard(seconds)` is the newest part of that recording.
- `PhoneBank`: every phone of a test, stopped by PID at the end.
- `reserve_rtp_ports()`: a block for the server's phone RTP that no phone will take.
- `fake_mic_wav()`: a seamless looping tone for Chromium's `--use-file-for-fake-audio-capture`.
- `roster(member)` / `wait_roster()` / `wait_left()`: the room as a browser sees it, replayed
  from the signaling messages Chromium received.
- `inbound_from()`, `bands()`: what a browser receives from one participant (the page's
  WebAudio probe, browser_harness.inbound_audio) and the energy at the test's frequencies.
- `Expectations`: checks that do not stop the test, all reported at its end, so one run says
  which parts of a scenario work and which do not.

Phones and the server send only to 127.0.0.1; every process is bounded in time (the
`timeout` wrapper of peers.procs) and stopped by PID.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from browser_harness import Member

REPO = Path(__file__).resolve().parents[2]
_INTEGRATION = REPO / "tests" / "integration"
if str(_INTEGRATION) not in sys.path:  # the integration harness imports `peers` top-level
    sys.path.insert(0, str(_INTEGRATION))

from peers import audio, procs  # noqa: E402
from peers.baresip import Baresip, BaresipError  # noqa: E402

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float64]

DIAL_NUMBER = "1000"  # any number: the server's default route asks for a PIN
KEY_GAP_S = 0.35      # between two DTMF keys
PROMPT_WAIT_S = 1.0   # listen to the welcome prompt a moment before keying the PIN


# -- phones -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhoneCodec:
    label: str          # for test ids and messages
    baresip: str        # the account's audio_codecs entry, as baresip 1.0.0 names it
    sample_rate: int    # baresip's ausrc_srate/auplay_srate (aufile needs the same rate)
    channels: int | None  # ausrc/auplay channels; None: the codec's own
    log_name: str       # in baresip's "Set audio encoder: NAME ..."


# baresip 1.0.0 lists its codecs as PCMU/8000/1, PCMA/8000/1, G722/16000/1, opus/48000/2.
# Opus runs with a mono source and player (baresip converts to the codec's 2 channels).
CODECS: dict[str, PhoneCodec] = {
    "PCMU": PhoneCodec("PCMU", "PCMU/8000/1", 8000, None, "PCMU"),
    "G722": PhoneCodec("G722", "G722/16000/1", 16000, None, "G722"),
    "opus": PhoneCodec("opus", "opus/48000/2", 48000, 1, "opus"),
}


def reserve_rtp_ports(count: int = 100) -> str:
    """A block of UDP ports for the server's `media.rtp_ports` ("LOW-HIGH"), handed out by
    peers.procs so that no phone's RTP block overlaps it."""
    low = procs.find_port_block(count, kinds=("udp",))
    return f"{low}-{low + count - 1}"


def fake_mic_wav(path: Path, freq: float, *, seconds: int = 10, amplitude: float = 0.3,
                 rate: int = 48000) -> Path:
    """A tone for Chromium's fake microphone, which loops the file: a whole number of
    seconds of an integer frequency and no fades, so the loop has no seam."""
    if freq != int(freq):
        raise ValueError("the fake microphone's tone must be a whole number of Hz")
    return audio.write_wav(path, audio.tone(freq, seconds, rate=rate, amplitude=amplitude,
                                            fade_s=0.0), rate=rate)  # fmt: skip


class Phone:
    """One baresip that plays a tone of `tone_hz`, calls in as `name` (its display name,
    which becomes the participant's name) and records what it hears."""

    def __init__(self, workdir: Path, name: str, tone_hz: float, *,
                 codec: PhoneCodec = CODECS["PCMU"], amplitude: float = 0.25,
                 timeout_s: float = 120.0) -> None:  # fmt: skip
        self.name = name
        self.tone_hz = tone_hz
        self.codec = codec
        channels = codec.channels or 1
        slug = "".join(c if c.isalnum() else "-" for c in name.lower())  # paths, SIP user
        source = audio.make_tone_wav(workdir / f"{slug}-{tone_hz:g}hz.wav", tone_hz,
                                     timeout_s + 30, rate=codec.sample_rate,
                                     amplitude=amplitude, channels=channels)  # fmt: skip
        self.sip = Baresip(workdir, slug, source_wav=source,
                           codecs=(codec.baresip,), sample_rate=codec.sample_rate,
                           channels=codec.channels, display_name=name,
                           timeout_s=timeout_s)  # fmt: skip
        self.established_at: float | None = None
        self.keyed_at: float | None = None  # when the last key of the PIN went out
        self.in_room_at: float | None = None  # when a browser first saw it in the room

    def start(self) -> Phone:
        self.sip.start()
        return self

    @property
    def pid(self) -> int | None:
        return self.sip.proc.main_pid if self.sip.proc else None

    def dial(self, server: Any, number: str = DIAL_NUMBER) -> None:
        self.sip.dial(server.sip_uri(number))

    def wait_established(self, timeout: float = 15.0) -> None:
        event = self.sip.wait_event("CALL_ESTABLISHED", timeout)
        self.established_at = event.at

    def key(self, keys: str, gap_s: float = KEY_GAP_S) -> None:
        """Each key as RFC 2833, `gap_s` apart."""
        self.sip.send_dtmf(keys, gap_s)

    def hangup(self) -> float:
        """Hang up; returns the monotonic time it was sent."""
        at = time.monotonic()
        self.sip.hangup()
        return at

    def wait_closed(self, timeout: float = 10.0) -> float:
        """Wait for CALL_CLOSED; returns when it came."""
        return self.sip.wait_event("CALL_CLOSED", timeout).at

    def closed(self) -> bool:
        """Has a CALL_CLOSED come (without consuming it)?"""
        self.sip.poll(0.0)
        return any(e.type == "CALL_CLOSED" for e in self.sip.events)

    def heard(self, seconds: float, *, skip_end_s: float = 0.2) -> tuple[Samples, int]:
        """The newest `seconds` of what the phone heard in this call, and the rate."""
        return self.sip.heard(seconds, skip_end_s=skip_end_s)

    def sent(self, seconds: float) -> tuple[Samples, int]:
        samples, rate = audio.read_wav(self.sip.current_recording().enc)
        return samples[-round(seconds * rate):], rate

    def recording_format(self) -> tuple[int, int]:
        """(sample rate, channels) of the recording of what it hears."""
        return audio.wav_format(self.sip.current_recording().dec)

    def codecs_in_use(self) -> tuple[str | None, str | None]:
        """The codec names in baresip's "Set audio encoder/decoder: NAME" log lines."""
        text = self.sip.log_tail(2000)
        enc = dec = None
        for line in text.splitlines():
            if "Set audio encoder:" in line:
                enc = line.split("Set audio encoder:", 1)[1].split()[0]
            elif "Set audio decoder:" in line:
                dec = line.split("Set audio decoder:", 1)[1].split()[0]
        return enc, dec

    def freeze(self) -> None:
        self.sip.freeze()

    def thaw(self) -> None:
        self.sip.thaw()

    def stop(self) -> None:
        """Quit (a hangup with it), else stop by PID."""
        try:
            self.sip.quit(timeout=3.0)
        except (BaresipError, OSError) as exc:
            log.warning("phone %s: quit failed (%s): stopping it by PID", self.name, exc)
            self.sip.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self.sip.log_tail(lines)


def dial_in(server: Any, phones: Sequence[Phone], pin: str,
            number: str = DIAL_NUMBER) -> None:  # fmt: skip
    """Every phone dials `number`, listens to the welcome prompt for a moment, then keys in
    the PIN and '#' (the phones' keys interleaved)."""
    for phone in phones:
        phone.dial(server, number)
    for phone in phones:
        phone.wait_established()
    phones[0].sip.poll(PROMPT_WAIT_S)
    for key in pin + "#":
        for phone in phones:
            phone.sip.sndcode(key)
        phones[0].sip.poll(KEY_GAP_S)
    now = time.monotonic()
    for phone in phones:
        phone.keyed_at = now


@dataclass
class PhoneBank:
    """The phones of one test; `stop_all()` stops every one (by PID if it will not quit)."""

    workdir: Path
    phones: list[Phone] = field(default_factory=list)

    def add(self, name: str, tone_hz: float, *, codec: PhoneCodec = CODECS["PCMU"],
            amplitude: float = 0.25) -> Phone:  # fmt: skip
        phone = Phone(self.workdir, name, tone_hz, codec=codec, amplitude=amplitude)
        self.phones.append(phone)
        return phone.start()

    def stop_all(self) -> None:
        for phone in self.phones:
            phone.stop()
        self.phones = []
        stopped = procs.stop_all()  # anything started through peers.procs and still alive
        if stopped:
            log.warning("stopped leftover phone processes: %s", ", ".join(stopped))


# -- the server -------------------------------------------------------------------------------


def make_room(server: Any, name: str, pin: str) -> None:
    """Create a room with a fixed PIN through the admin API."""
    created = server.api("POST", "/api/rooms", {"name": name, "pin": pin})
    # the room's policy comes with it (issue 17)
    assert {k: created.get(k) for k in ("name", "pin")} == {"name": name, "pin": pin}, created


def api_participants(server: Any, room: str) -> dict[str, dict[str, Any]]:
    people = server.api("GET", f"/api/rooms/{room}/participants")
    items = people.get("participants", people) if isinstance(people, dict) else people
    return {p["id"]: p for p in items}


def wait_stats(server: Any, want: dict[str, int], timeout: float, *,
               max_tasks: int | None = None) -> dict[str, int]:  # fmt: skip
    """Poll /api/stats until each figure in `want` has its value (and `tasks` is at most
    `max_tasks`); AssertionError with the last figures otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, int] = server.api("GET", "/api/stats")
        wrong = {k: stats.get(k) for k, v in want.items() if stats.get(k) != v}
        if max_tasks is not None and stats.get("tasks", 0) > max_tasks:
            wrong["tasks"] = stats.get("tasks")
        if not wrong:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"/api/stats after {timeout:.0f} s: {wrong} (wanted {want}, "
                                 f"tasks <= {max_tasks}); all: {stats}")
        time.sleep(0.25)


# -- the room as a browser sees it --------------------------------------------------------------


def roster(member: Member) -> dict[str, dict[str, Any]]:
    """Everyone in the room but `member`, by participant id, replayed from the signaling
    messages its page received (`joined`, `participant-joined/-updated/-left`)."""
    people: dict[str, dict[str, Any]] = {}
    for msg in member.messages():
        kind = msg.get("type")
        if kind == "joined":
            people = {p["id"]: p for p in msg.get("participants", [])}
        elif kind in ("participant-joined", "participant-updated"):
            p = msg.get("participant") or {}
            if p.get("id") and p["id"] != member.id:
                people[p["id"]] = p
        elif kind == "participant-left":
            people.pop(str(msg.get("id")), None)
    return people


def until(member: Member, condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition()` (Playwright delivers the page's events between tries) until it is
    truthy; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{member.name}: timed out after {timeout:.0f} s waiting for "
                                 f"{what}")
        member.page.wait_for_timeout(100)


def wait_roster(member: Member, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                what: str) -> dict[str, Any]:  # fmt: skip
    """The first participant of `member`'s roster for which `predicate` holds."""
    def found() -> dict[str, Any] | None:
        return next((p for p in roster(member).values() if predicate(p)), None)

    result: dict[str, Any] = until(member, found, timeout, what)
    return result


def phone_in(member: Member, phone: Phone, timeout: float = 20.0) -> dict[str, Any]:
    """The participant `phone` is, as `member` sees it (kind phone, named after it)."""
    return wait_roster(member, lambda p: p.get("kind") == "phone" and p.get("name") == phone.name,
                       timeout, f"the phone {phone.name!r} in the room")  # fmt: skip


def wait_left(member: Member, pid: str, timeout: float, who: str) -> dict[str, Any]:
    """The `participant-left` message about `pid` (waiting up to `timeout`)."""
    def left() -> dict[str, Any] | None:
        return next((m for m in member.messages("participant-left") if m.get("id") == pid),
                    None)

    result: dict[str, Any] = until(member, left, timeout, f"{who} to leave")
    return result


# -- what a browser hears ----------------------------------------------------------------------


def inbound_from(member: Member, pid: str, seconds: float, timeout: float = 15.0
                 ) -> tuple[Samples, int]:  # fmt: skip
    """The newest `seconds` of audio `member` received from participant `pid`, once its page
    has listened to that source for that long (the probe must be installed)."""
    def ready() -> Any:
        got = member.inbound_audio().get(pid)
        return got if got is not None and got.age_s >= seconds else None

    got = until(member, ready, timeout, f"{seconds:g} s of audio from {pid}")
    return got.recent(seconds), got.rate


def inbound_mix(member: Member, seconds: float) -> tuple[Samples, int]:
    """Everything `member` receives, summed over its sources (as its speaker plays it)."""
    sources = member.inbound_audio()
    if not sources:
        return np.zeros(0), 16000
    rate = next(iter(sources.values())).rate
    n = round(seconds * rate)
    mix = np.zeros(n)
    for got in sources.values():
        part = got.samples[-n:]
        mix[n - part.size:] += part
    return mix, rate


def bands(samples: Samples, rate: int, freqs: Iterable[float],
          half_width: float = 30.0) -> dict[float, float]:  # fmt: skip
    return audio.band_energies(samples, rate, freqs, half_width=half_width)


def describe(samples: Samples, rate: int, freqs: Iterable[float]) -> str:
    """'1.50 s, rms 0.123, dominant 700 Hz; 700 Hz: -12.0 dBFS, ...' for messages."""
    return (f"{samples.size / rate:.2f} s, rms {audio.rms(samples):.4f}, dominant "
            f"{audio.dominant_frequency(samples, rate):.0f} Hz; "
            f"{audio.describe_bands(bands(samples, rate, freqs))}")


def residual_power(samples: Samples, rate: int, tones: Iterable[float],
                   half_width: float = 60.0) -> float:  # fmt: skip
    """Mean power outside the bands around `tones` (speech, a prompt, noise)."""
    total = audio.rms(samples) ** 2
    return max(total - sum(bands(samples, rate, tones, half_width).values()), 0.0)


def speech_power(samples: Samples, rate: int, tones: Iterable[float], *, low: float = 100.0,
                 high: float = 1100.0, half_width: float = 60.0) -> float:  # fmt: skip
    """Mean power in `low`..`high` Hz, where a spoken prompt has most of its energy, less the
    bands around `tones` that lie in it. A codec's noise around a tone (sidebands above
    1 kHz) stays out of it; a prompt at -20 dBFS is about 1e-2, a clean tone mix about 1e-7."""
    if samples.size < 16:
        return 0.0
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    keep = (freqs >= low) & (freqs <= high)
    for tone in tones:
        keep &= np.abs(freqs - tone) > half_width
    return float(2.0 * np.sum(spectrum[keep]) / (samples.size * np.sum(window * window)))


# -- checks that let the test go on --------------------------------------------------------------


@dataclass
class Expectations:
    """Soft checks: each records a pass or a failure and the test carries on; `verify()`
    fails the test with every failed one."""

    name: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        line = f"{what}" + (f" [{detail}]" if detail else "")
        (self.passed if ok else self.failed).append(line)
        log.log(logging.INFO if ok else logging.WARNING, "%s: %s: %s", self.name,
                "PASS" if ok else "FAIL", line)
        return ok

    def attempt(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)`; an AssertionError (or a phone's error) is a failed check, not
        the end of the test. Returns what `fn` returned, None when it failed."""
        try:
            result = fn(*args)
        except (AssertionError, BaresipError) as exc:
            self.check(False, what, str(exc).splitlines()[0][:400])
            return None
        self.check(True, what)
        return result

    def verify(self) -> None:
        summary = "\n".join([f"  PASS {p}" for p in self.passed] +
                            [f"  FAIL {f}" for f in self.failed])  # fmt: skip
        log.info("%s:\n%s", self.name, summary)
        if self.failed:
            pytest.fail(f"{self.name}: {len(self.failed)} of "
                        f"{len(self.failed) + len(self.passed)} expectations failed:\n"
                        f"{summary}", pytrace=False)  # fmt: skip
