"""Helpers for the meeting-page staples tests (test_meeting_staples.py): a browser with test
devices injected, and polling.

Chromium's fake devices give three audio inputs ("Fake Default Audio Input", "Fake Audio Input
1" and "2") and one camera, but every fake audio input plays the same thing (its beep, or the
one file of --use-file-for-fake-audio-capture). To hear a microphone switch, `TEST_DEVICES_JS`
(an init script, in these tests only) adds devices of its own to enumerateDevices() and
answers getUserMedia() for them:

- audio input `test-tone` ("Test tone"): a WebAudio oscillator of TONE_HZ into a
  MediaStreamDestination; `window.__testTone.set(on)` switches its sound on and off (the track
  stays live, the packets go on: only the sound stops);
- video input `test-camera` ("Test camera"): a canvas captureStream that changes every frame.

Everything else goes to Chromium's own fake devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_harness import Browser, Member, join_meeting
from playwright.sync_api import Page

TONE_HZ = 1500
TONE_DEVICE = "test-tone"
CAMERA_DEVICE = "test-camera"

TEST_DEVICES_JS = """
(() => {
  const md = navigator.mediaDevices;
  if (!md || md.__testDevices) return;
  md.__testDevices = true;
  const enumerate = md.enumerateDevices.bind(md);
  const gum = md.getUserMedia.bind(md);
  const wanted = (c) => {
    if (!c || typeof c !== 'object') return null;
    const d = c.deviceId;
    if (!d) return null;
    return typeof d === 'string' ? d : (d.exact || d.ideal || null);
  };
  const fake = (id, kind, label) => ({deviceId: id, kind, label, groupId: id,
    toJSON() { return {deviceId: id, kind, label, groupId: id}; }});
  md.enumerateDevices = async () => [...await enumerate(),
    fake('__TONE__', 'audioinput', 'Test tone'), fake('__CAMERA__', 'videoinput', 'Test camera')];
  let ctx = null;
  let gain = null;
  window.__testTone = {set(on) { if (gain) gain.gain.value = on ? 0.3 : 0; return Boolean(gain); }};
  const tone = () => {
    ctx = ctx || new AudioContext({sampleRate: 48000});
    if (ctx.state === 'suspended') ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = __HZ__;
    gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    return dest.stream.getAudioTracks()[0];
  };
  const camera = () => {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 180;
    const g = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      g.fillStyle = `hsl(${(n += 7) % 360} 60% 50%)`;
      g.fillRect(0, 0, 320, 180);
    }, 66);
    return canvas.captureStream(15).getVideoTracks()[0];
  };
  md.getUserMedia = async (c) => {
    const a = c && c.audio; const v = c && c.video;
    const toneWanted = wanted(a) === '__TONE__';
    const camWanted = wanted(v) === '__CAMERA__';
    if (!toneWanted && !camWanted) return gum(c);
    const rest = {audio: toneWanted ? false : (a || false),
                  video: camWanted ? false : (v || false)};
    const stream = rest.audio || rest.video ? await gum(rest) : new MediaStream();
    if (toneWanted) stream.addTrack(tone());
    if (camWanted) stream.addTrack(camera());
    return stream;
  };
})();
""".replace("__TONE__", TONE_DEVICE).replace("__CAMERA__", CAMERA_DEVICE) \
    .replace("__HZ__", str(TONE_HZ))


def join_with_test_devices(crowd: Any, room: str, name: str, *, mic: bool = True,
                           camera: bool = True, audio_file: Path | None = None) -> Member:
    """Like crowd.join, in a Chromium whose page has TEST_DEVICES_JS."""
    browser = Browser(crowd.playwright, crowd.workdir / f"profile-{len(crowd.browsers)}",
                      audio_file=audio_file)  # fmt: skip
    crowd.browsers.append(browser)
    browser.context.add_init_script(TEST_DEVICES_JS)
    page = browser.open(f"{crowd.url}/{room}")
    join_meeting(page, name, mic=mic, camera=camera)
    joined = poll(page, lambda: browser.messages(page, "joined"), 10.0, f"{name}: `joined`")
    return Member(browser, page, name, room, str(joined[0]["self"]["id"]))


def poll(page: Page, condition: Callable[[], Any], timeout: float, what: str,
         interval_ms: int = 100) -> Any:  # fmt: skip
    """Poll `condition()` (Playwright delivers events between tries) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        page.wait_for_timeout(interval_ms)


def hears(member: Member, pid: str, hz: float, timeout: float, *, tolerance_hz: float = 40.0,
          window_s: float = 1.0) -> None:
    """`member`'s inbound audio from `pid` is a tone of `hz` (its dominant frequency, within
    `tolerance_hz`, not silence) over `window_s`, within `timeout` (the page's audio probe
    installed); the failure lists the dominant frequencies it heard last."""
    from phone_harness import audio

    seen: list[float] = []

    def measured() -> bool:
        got = member.inbound_audio().get(pid)
        if got is None or got.age_s < window_s:
            return False
        samples = got.recent(window_s)
        dominant = audio.dominant_frequency(samples, got.rate)
        seen.append(round(dominant))
        return abs(dominant - hz) <= tolerance_hz and audio.rms(samples) > 0.003

    try:
        poll(member.page, measured, timeout, f"{member.name} to hear {hz:g} Hz from {pid}", 250)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; dominant frequencies heard: {seen[-12:]}") from None
