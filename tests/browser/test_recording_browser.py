"""Issue 18: a room of a headless Chromium and two baresip phones, recorded from the page.

Ada (a browser; her fake microphone a 1300 Hz tone) is the room's moderator; two phones play
500 Hz and 900 Hz. Ada presses Record (in the participants panel): everyone sees the
indicator, the phones hear "this meeting is now being recorded". During the 20 s recorded
(the issue's stretch) Ada mutes for 5 s; Grace (a second browser, 1700 Hz) joins late and
sees the indicator at once; a guest has no Record button. Ada stops the recording 20 s after
she started it. ffprobe and ffmpeg (Debian
ffmpeg) read the files: tracks.mkv has one Opus track per participant, named as the roster
names them, each with its own tone and not the others', each as long as the wall-clock time
it covers (within a frame); Ada's track is silent while she was muted; the mix holds the
tones; metadata.json names the roster, covers the 20 s and has Ada's 5 s of mute.

A second test records with video ("with video" ticked): video.mp4 holds H.264 of the
configured size showing Ada's (fake, moving) camera, not a black frame, and AAC audio with
her tone.

Run inside a network namespace with only loopback (as root):
unshare -n -- bash -c 'ip link set lo up && .venv/bin/pytest -q \
    tests/browser/test_recording_browser.py'
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import phone_harness as ph
from browser_harness import Member
from peers import ffmedia  # (phone_harness puts tests/integration on the path)
from phone_harness import Expectations, PhoneBank, audio
from test_phone_browser import _mic, _settled, phones

__all__ = ["SWITCHBOARD_CONFIG", "phones"]

RECORDINGS = Path(tempfile.mkdtemp(prefix="switchboard-recordings-"))
SWITCHBOARD_CONFIG = {
    "bridge": {"endpoint_timeout": 5.0},
    "media": {"timeout": 10.0, "rtp_ports": ph.reserve_rtp_ports()},
    "recording": {"path": str(RECORDINGS), "min_free_mb": 0, "video_width": 640,
                  "video_height": 360, "video_fps": 15, "video_bitrate": 600,
                  "video_preset": "ultrafast"},
}
PROMPTS = Path(__file__).resolve().parents[2] / "gateway" / "prompts"
RATE = 16000
FRAME_S = 0.02
CONTROL_HZ = 2500.0  # nobody sends it: the noise floor
RECORDED_S = 20.0  # the recorded stretch (Ada muted 5 s of it, Grace joining late)
GRACE_LEAST_S = 5.0  # Grace is recorded at least this long (the mix's check needs her)


def _streams(path: Path) -> list[dict[str, Any]]:
    return ffmedia.streams(path)


def _decode(path: Path, stream: int) -> np.ndarray:
    return ffmedia.decode_audio(path, stream, RATE)


def _prompt_score(heard: np.ndarray, name: str) -> float:
    """How clearly a shipped prompt is in what a phone heard (everyone's tones cut out)."""
    return audio.prompt_score(heard, PROMPTS / f"{name}.wav", (500.0, 900.0, 1300.0, 1700.0))


def _join(crowd: Any, tmp_path: Path, room: str, name: str, hz: int) -> Member:
    member: Member = crowd.join(room, name, camera=False, audio_file=_mic(tmp_path, hz))
    return member


def _indicator(member: Member) -> bool:
    return bool(member.page.is_visible("#rec-indicator"))


def _done(server: Any, room: str, timeout: float = 30.0) -> dict[str, Any]:
    """The room's one recording, once it is done."""
    (item,) = [r for r in server.api("GET", f"/api/rooms/{room}/recordings")]
    deadline = time.monotonic() + timeout
    while item["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
        item = server.api("GET", f"/api/recordings/{item['id']}")
    assert item["state"] == "done", item
    return dict(item)


def _until(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def test_recording_a_browser_and_phones_from_the_page(
        crowd: Any, module_switchboard: Any, phones: PhoneBank, tmp_path: Path) -> None:
    server = module_switchboard
    room, pin = "recorded", "61734062"
    ph.make_room(server, room, pin)
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", 1300)
    p500, p900 = phones.add("Phone 500", 500.0), phones.add("Phone 900", 900.0)
    ph.dial_in(server, [p500, p900], pin)
    for phone in (p500, p900):
        phone.in_room_at = time.monotonic()
    _settled([p500, p900])
    expect = Expectations("recording from the page")
    ada.page.click("#btn-people")  # the moderator's Record button is in the people panel
    assert ada.page.is_visible("#rec-toggle") and not _indicator(ada)

    ada.page.click("#rec-toggle")
    started = time.monotonic()
    _until("Ada sees the indicator", lambda: _indicator(ada))
    time.sleep(4.0)
    ada.page.click("#btn-mic")  # mutes
    muted_at = time.monotonic()
    time.sleep(5.0)
    ada.page.click("#btn-mic")  # unmutes
    unmuted_at = time.monotonic()
    grace = _join(crowd, tmp_path, room, "Grace Hopper", 1700)
    _until("Grace sees the indicator", lambda: _indicator(grace))
    grace.page.click("#btn-people")
    expect.check(grace.page.is_visible("#people-list") and
                 not grace.page.is_visible("#rec-toggle"), "a guest has no Record button")
    # the rest of the 20 s (Grace's join takes a few seconds: more if the machine is slow)
    time.sleep(max(GRACE_LEAST_S, started + RECORDED_S - time.monotonic()))
    for phone in (p500, p900):
        heard, _ = phone.heard(time.monotonic() - started)
        score = _prompt_score(heard, "recording_on")
        expect.check(score > 0.5, f"{phone.name} heard 'now being recorded'", f"{score:.2f}")
    roster = {pid: p["name"] for pid, p in ph.api_participants(server, room).items()}
    ada.page.click("#rec-toggle")
    stopped = time.monotonic()
    _until("the indicator goes away", lambda: not _indicator(ada) and not _indicator(grace))

    item = _done(server, room)
    folder = RECORDINGS / item["id"]
    meta = json.loads((folder / "metadata.json").read_text())
    expect.check({p["id"]: p["name"] for p in meta["participants"]} == roster,
                 "metadata.json names the roster", f"{meta['participants']} vs {roster}")
    expect.check(RECORDED_S - 0.5 <= meta["duration"] <= stopped - started + 0.5,
                 f"the recording covers the {RECORDED_S:g} s", f"{meta['duration']} s")
    (ada_meta,) = [p for p in meta["participants"] if p["name"] == "Ada Lovelace"]
    mutes = [(datetime.fromisoformat(m["to"]) - datetime.fromisoformat(m["from"])
              ).total_seconds() for m in ada_meta["muted"] if m["to"]]
    expect.check(len(mutes) == 1 and abs(mutes[0] - (unmuted_at - muted_at)) < 1.0,
                 "metadata.json has Ada's mute", f"{ada_meta['muted']}")
    tones = {"Ada Lovelace": 1300.0, "Phone 500": 500.0, "Phone 900": 900.0,
             "Grace Hopper": 1700.0}
    streams = _streams(folder / "tracks.mkv")
    titles = [s.get("tags", {}).get("title") for s in streams]
    expect.check(sorted(titles) == sorted(roster.values()) and
                 all(s["codec_name"] == "opus" for s in streams),
                 "one Opus track per participant, named", f"{titles}")
    tracks = {t["name"]: t for t in meta["tracks"]}
    for index, title in enumerate(titles):
        samples = _decode(folder / "tracks.mkv", index)
        covers = meta["duration"] - tracks[title]["start"]
        expect.check(abs(samples.size / RATE - covers) <= FRAME_S + 0.007,
                     f"{title}'s track lasts the {covers:.2f} s it covers",
                     f"{samples.size / RATE:.3f} s")
        own = tones.get(str(title))
        if own is None:
            continue
        others = [hz for hz in tones.values() if hz != own]
        expect.check(audio.hears_tone(samples, RATE, own, min_ratio=0.3),
                     f"{title}'s track holds its tone ({own:g} Hz)")
        power = ph.bands(samples, RATE, [own, *others])
        expect.check(all(power[hz] < 0.05 * power[own] for hz in others),
                     f"{title}'s track holds nobody else's tone", f"{power}")
        if title == "Ada Lovelace":
            start = tracks[title]["start"]
            a = round((muted_at - started + 1.0 - start) * RATE)
            b = round((unmuted_at - started - 1.0 - start) * RATE)
            expect.check(audio.rms(samples[a:b]) < 0.003, "Ada's track is silent while muted",
                         f"rms {audio.rms(samples[a:b]):.4f}")
    mix = _decode(folder / "mix.opus", 0)
    expect.check(abs(mix.size / RATE - meta["duration"]) <= 0.05, "the mix lasts the recording")
    # Everyone at once: after Grace's first second, to the end. (Chromium's audio processing
    # turns a steady tone down by some 20 dB after a moment: the browsers' tones are weaker.)
    begin = tracks["Grace Hopper"]["start"] + 1.0
    both = mix[round(begin * RATE): round((meta["duration"] - 0.5) * RATE)]
    power = ph.bands(both, RATE, [*tones.values(), CONTROL_HZ])
    for hz in tones.values():
        expect.check(power[hz] > 1e-6 and power[hz] > 20 * power[CONTROL_HZ],
                     f"the mix holds {hz:g} Hz", f"{power}; tracks {meta['tracks']}")
    expect.verify()


def test_video_recording_from_the_page(crowd: Any, module_switchboard: Any,
                                       tmp_path: Path) -> None:
    server = module_switchboard
    room, pin = "filmed", "61734063"
    ph.make_room(server, room, pin)
    ada = crowd.join(room, "Ada Lovelace", camera=True, audio_file=_mic(tmp_path, 1300))
    ada.page.click("#btn-people")
    ada.page.check("#rec-video")
    ada.page.click("#rec-toggle")
    _until("Ada sees the indicator", lambda: _indicator(ada))
    time.sleep(8.0)
    ada.page.click("#rec-toggle")
    _until("the indicator goes away", lambda: not _indicator(ada))
    item = _done(server, room)
    assert {f["kind"] for f in item["files"]} == {"mix", "tracks", "video", "metadata"}
    folder = RECORDINGS / item["id"]
    streams = _streams(folder / "video.mp4")
    video = [s for s in streams if s["codec_type"] == "video"]
    sound = [s for s in streams if s["codec_type"] == "audio"]
    assert [(s["codec_name"], s["width"], s["height"]) for s in video] == [("h264", 640, 360)]
    assert [s["codec_name"] for s in sound] == ["aac"]
    samples = _decode(folder / "video.mp4", 0)
    assert samples.size / RATE > 6.0, samples.size / RATE
    assert audio.hears_tone(samples, RATE, 1300.0, min_ratio=0.3)
    frames = ffmedia.gray_frames(folder / "video.mp4", 640, 360)
    assert len(frames) >= 12, len(frames)
    late = frames[len(frames) // 2:]  # the camera's picture, once its first key frame came
    assert all(f.std() > 10 for f in late), [round(float(f.std()), 1) for f in late]
    assert any(np.abs(late[i].astype(int) - late[i + 1]).mean() > 0.5
               for i in range(len(late) - 1)), "the picture never moves"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["video"]["frames"] > 8 * 15 * 0.8 and meta["video"]["frames_received"] > 0
