"""Live streaming to a real RTMP ingest (issue 18, section 2): nginx with the RTMP module on
loopback records what it receives.

A baresip phone dials into a room and plays a tone; the admin starts a live stream over the
API (`{"mode": "stream", "url": "rtmp://127.0.0.1:PORT/live/KEY"}`). nginx records the
publish; ffprobe finds H.264 video of the configured size and AAC audio, and the audio holds
the phone's tone. The ingest is stopped mid-stream and started again: the stream comes back
by itself (a second recorded publish, again H.264 and AAC with the tone), and the recording's
metadata counts the reconnect. A stream to a host outside `recording.rtmp_allow` is refused
with 403, a malformed target with 400; the stream key appears in no log line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from peers import audio, ffmedia, procs
from peers.nginx_rtmp import RtmpIngest
from test_mixing_baresip import _dial_in, _hang_up, _phone, _quit, make_room
from test_recording_baresip import ROOM, wait_state

pytestmark = pytest.mark.integration

TONE = 700.0
KEY = "sb-test-k3y-91f2"
WIDTH, HEIGHT = 320, 240


def _published(ingest: RtmpIngest, count: int, min_bytes: int, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = ingest.files()
        if len(files) >= count and files[count - 1].stat().st_size >= min_bytes:
            return files
        time.sleep(0.2)
    pytest.fail(f"the ingest recorded {len(ingest.files())} publishes, not {count} "
                f"(nginx log: {ingest.proc.log_tail() if ingest.proc else ''})", pytrace=False)


def _check_flv(path: Path) -> None:
    streams = ffmedia.streams(path)
    video = [s for s in streams if s["codec_type"] == "video"]
    sound = [s for s in streams if s["codec_type"] == "audio"]
    assert [s["codec_name"] for s in video] == ["h264"], streams
    assert (video[0]["width"], video[0]["height"]) == (WIDTH, HEIGHT)
    assert [s["codec_name"] for s in sound] == ["aac"], streams
    samples = ffmedia.decode_audio(path, 0)
    assert samples.size > 16000 * 2, f"{path.name}: {samples.size / 16000:.1f} s of audio"
    assert audio.hears_tone(samples, 16000, TONE), f"{path.name}: no {TONE:g} Hz"


def test_live_stream_to_nginx_rtmp_comes_back_after_the_ingest_restarts(
        switchboard_server: Any, tmp_path: Path) -> None:
    port = procs.free_port(("tcp",))
    ingest = RtmpIngest(tmp_path, port).start()
    server = switchboard_server({"recording": {
        "path": str(tmp_path / "recordings"), "min_free_mb": 0,
        "rtmp_allow": ["127.0.0.1"], "video_width": WIDTH, "video_height": HEIGHT,
        "video_fps": 15, "video_bitrate": 400, "video_preset": "ultrafast"}})
    make_room(server)
    phones = []
    try:
        phones.append(_phone(tmp_path, "streamer", TONE).start())
        _dial_in(server, phones)
        # refusals first: a host not allowed, a malformed target, a file with a url
        for body, status in (
                ({"mode": "stream", "url": f"rtmp://127.0.0.2:{port}/live/{KEY}"}, 403),
                ({"mode": "stream", "url": "rtmp://127.0.0.1/nokey"}, 400),
                ({"mode": "stream"}, 400),
                ({"mode": "file", "url": ingest.url(KEY)}, 400)):
            resp = server.api("POST", f"/api/rooms/{ROOM}/recordings", body)
            assert resp.status == status, (body, resp.status, resp.text)
        resp = server.api("POST", f"/api/rooms/{ROOM}/recordings",
                          {"mode": "stream", "url": ingest.url(KEY)})
        assert resp.status == 201, resp.text
        rid = resp.json()["id"]
        first = _published(ingest, 1, 30000, 20)[0]
        time.sleep(4.0)
        ingest.stop()  # the ingest goes away mid-stream ...
        time.sleep(2.0)
        ingest.start()  # ... and comes back: the stream reconnects by itself
        second = _published(ingest, 2, 30000, 40)[1]
        time.sleep(4.0)
        resp = server.api("DELETE", f"/api/rooms/{ROOM}/recordings/{rid}")
        assert resp.status == 200, resp.text
        item = wait_state(server, rid, "done", 30)
        _hang_up(phones)
    finally:
        _quit(phones)
        ingest.stop()
    assert {f["kind"] for f in item["files"]} == {"metadata"}  # a stream keeps no media
    meta = server.api("GET", f"/api/recordings/{rid}/files/metadata.json").json()
    assert meta["mode"] == "stream" and meta["video"]["reconnects"] >= 1, meta
    assert KEY not in str(meta)
    _check_flv(first)
    _check_flv(second)
    logs = server.log_text()
    assert "streaming to rtmp://127.0.0.1" in logs and KEY not in logs
