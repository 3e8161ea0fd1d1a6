"""Issue 18, sections 2 and 3: a live stream started from the meeting page's "Live stream"
field, to nginx with the RTMP module (Debian libnginx-mod-rtmp) on loopback.

Ada (a headless Chromium; her fake camera moving, her fake microphone a 1300 Hz tone) is the
room's moderator. In the participants panel she opens "Live stream" and types a target:
first an RTMP address on a host `recording.rtmp_allow` does not list (127.0.0.2): the page
says it could not start and nothing is published; then the ingest's address with its stream
key: the page clears the field (a password field, the key never kept), everyone sees the
recording indicator, nginx records the publish: ffprobe finds H.264 of the configured size
and AAC, and the audio holds Ada's tone. Ada stops it with the same button as a recording;
the stream's metadata says "stream", and the key is in no log line and not in the metadata.

Run inside a network namespace with only loopback (as root):
unshare -n -- bash -c 'ip link set lo up && .venv/bin/pytest -q \
    tests/browser/test_recording_stream_page.py'
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import phone_harness as ph
from peers import audio, ffmedia, procs  # (phone_harness puts tests/integration on the path)
from peers.nginx_rtmp import RtmpIngest
from playwright.sync_api import expect

RECORDINGS = Path(tempfile.mkdtemp(prefix="switchboard-streams-"))
WIDTH, HEIGHT = 320, 240
SWITCHBOARD_CONFIG = {
    "bridge": {"endpoint_timeout": 5.0},
    "recording": {"path": str(RECORDINGS), "min_free_mb": 0, "rtmp_allow": ["127.0.0.1"],
                  "video_width": WIDTH, "video_height": HEIGHT, "video_fps": 15,
                  "video_bitrate": 400, "video_preset": "ultrafast"},
}
KEY = "sb-page-k3y-5e7a"
TONE = 1300


def _until(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _published(ingest: RtmpIngest, min_bytes: int, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = ingest.files()
        if files and files[0].stat().st_size >= min_bytes:
            return files[0]
        time.sleep(0.2)
    raise AssertionError(f"the ingest recorded no publish of {min_bytes} bytes within "
                         f"{timeout} s: {[f.stat().st_size for f in ingest.files()]}")


def _go_live(page: Any, target: str) -> None:
    if not page.locator("#rec-stream").evaluate("e => e.open"):
        page.click("#rec-stream summary")
    field = page.locator("#rec-stream-key")
    expect(field).to_have_attribute("type", "password")
    field.fill(target)
    page.click("#rec-stream-start")


def test_live_stream_from_the_page_field(crowd: Any, module_switchboard: Any,
                                         tmp_path: Path) -> None:
    server = module_switchboard
    room, pin = "onair", "61734064"
    ph.make_room(server, room, pin)
    ingest = RtmpIngest(tmp_path, procs.free_port(("tcp",))).start()
    try:
        ada = crowd.join(room, "Ada Lovelace", camera=True,
                         audio_file=ph.fake_mic_wav(tmp_path / "mic.wav", TONE))
        page = ada.page
        page.click("#btn-people")
        expect(page.locator("#rec-stream")).to_be_visible()

        # a host the allow-list does not name: refused, told, nothing published
        _go_live(page, f"rtmp://127.0.0.2:{ingest.port}/live/{KEY}")
        expect(page.locator("#toasts")).to_contain_text("Recording could not start")
        expect(page.locator("#rec-stream-start")).to_be_enabled()
        assert not page.is_visible("#rec-indicator")
        assert server.api("GET", f"/api/rooms/{room}/recordings") == []

        _go_live(page, ingest.url(KEY))
        expect(page.locator("#rec-indicator")).to_be_visible(timeout=10000)
        assert page.locator("#rec-stream-key").input_value() == ""  # the page keeps no key
        expect(page.locator("#rec-toggle")).to_have_text("Stop recording")
        flv = _published(ingest, 60000, 30)
        time.sleep(4.0)  # a few more seconds of it
        page.click("#rec-toggle")
        expect(page.locator("#rec-indicator")).to_be_hidden(timeout=10000)
        (item,) = server.api("GET", f"/api/rooms/{room}/recordings")
        _until("the stream is done",
               lambda: server.api("GET", f"/api/recordings/{item['id']}")["state"] == "done",
               30.0)
    finally:
        ingest.stop()
    streams = ffmedia.streams(flv)
    video = [s for s in streams if s["codec_type"] == "video"]
    sound = [s for s in streams if s["codec_type"] == "audio"]
    assert [(s["codec_name"], s["width"], s["height"]) for s in video] == [
        ("h264", WIDTH, HEIGHT)], streams
    assert [s["codec_name"] for s in sound] == ["aac"], streams
    samples = ffmedia.decode_audio(flv, 0)
    assert samples.size > 16000 * 3, samples.size / 16000
    assert audio.hears_tone(samples[16000:], 16000, TONE, min_ratio=0.3)
    meta = server.api("GET", f"/api/recordings/{item['id']}/files/metadata.json")
    assert meta["mode"] == "stream" and KEY not in str(meta), meta
    assert {f["kind"] for f in server.api("GET", f"/api/recordings/{item['id']}")["files"]} \
        == {"metadata"}
    logs = server.log_path.read_text(errors="replace")
    assert "streaming to rtmp://127.0.0.1" in logs and KEY not in logs
