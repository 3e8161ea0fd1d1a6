"""Recording a room of real phones (issue 18, sections 1 and 3), checked with ffprobe.

Two baresip phones dial in and each plays its own tone; the admin starts recording over the
API (`POST /api/rooms/{room}/recordings {"mode": "file"}`), both phones hear "this meeting is
now being recorded", and when it stops "no longer". The files are read by FFmpeg (ffprobe for
the streams, ffmpeg to decode): the mix holds both tones, tracks.mkv one track per
participant named as the roster names them, each holding its own tone and not the other's,
each as long as the wall-clock time it covers within a frame; metadata.json names the
roster. A second test starts a recording with the command line (`switchboard recordings
start`), once audio-only with the Opus mix and once with the AAC mix and video, and kills the
server with SIGKILL mid-recording: the files on disk (mix, tracks, video.mp4) still play, up
to within a few seconds of the kill, and metadata.json was there from the start; the server
started again closes the recording (metadata.json completed, naming the roster), runs the
finalize command and posts the signed webhook.
"""

from __future__ import annotations

import http.server
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SwitchboardServer
from peers import audio, ffmedia
from peers.baresip import Baresip
from test_mixing_baresip import _dial_in, _hang_up, _phone, _quit, make_room, participants

from recorder.finalize import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

ROOM = "standup"
TONES = (600.0, 1400.0)
PROMPTS = Path(__file__).resolve().parents[2] / "gateway" / "prompts"
FRAME_S = 0.02


def _tools() -> None:
    ffmedia.tool("ffprobe")
    ffmedia.tool("ffmpeg")


ffprobe_streams = ffmedia.streams
decode = ffmedia.decode_audio


def prompt_score(heard: np.ndarray, name: str) -> float:
    """How clearly a shipped prompt is in what a phone heard (everyone's tones cut out)."""
    return audio.prompt_score(heard, PROMPTS / f"{name}.wav", TONES)


def wait_state(server: SwitchboardServer, rid: str, state: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    item: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = server.api("GET", f"/api/recordings/{rid}")
        assert resp.status == 200, resp.text
        item = resp.json()
        if item["state"] == state:
            return item
        time.sleep(0.2)
    pytest.fail(f"recording {rid}: not {state} within {timeout} s: {item}", pytrace=False)


def start_recording(server: SwitchboardServer) -> str:
    resp = server.api("POST", f"/api/rooms/{ROOM}/recordings", {"mode": "file"})
    assert resp.status == 201, f"HTTP {resp.status} {resp.text}"
    rid = resp.json()["id"]
    assert isinstance(rid, str)
    return rid


def test_phones_recorded_mix_tracks_metadata_and_prompts(
        switchboard_server: Any, tmp_path: Path) -> None:
    _tools()
    folder = tmp_path / "recordings"
    server = switchboard_server({"recording": {"path": str(folder), "min_free_mb": 0}})
    make_room(server)
    phones: list[Baresip] = []
    try:
        for i, hz in enumerate(TONES):
            phones.append(_phone(tmp_path, f"p{i}", hz).start())
        _dial_in(server, phones)
        time.sleep(3.0)  # the join beeps and "only participant" are over
        roster = {p["id"]: p["name"] for p in participants(server)}
        rid = start_recording(server)
        started = time.monotonic()
        item = server.api("GET", f"/api/recordings/{rid}").json()
        assert item["state"] == "recording"
        time.sleep(8.0)
        heard = [p.heard(time.monotonic() - started)[0] for p in phones]
        resp = server.api("DELETE", f"/api/rooms/{ROOM}/recordings/{rid}")
        assert resp.status == 200, resp.text
        stopped = time.monotonic()
        time.sleep(3.5)
        heard_off = [p.heard(time.monotonic() - stopped)[0] for p in phones]
        _hang_up(phones)
    finally:
        _quit(phones)
    # both phones heard the announcements (and not a prompt nobody played)
    for h, off in zip(heard, heard_off, strict=True):
        on_score, control = prompt_score(h, "recording_on"), prompt_score(h, "invalid_pin")
        assert on_score > 0.6 > 0.4 > control, (on_score, control)
        assert prompt_score(off, "recording_off") > 0.6
    item = wait_state(server, rid, "done")
    assert {f["kind"] for f in item["files"]} == {"mix", "tracks", "metadata"}
    rec = folder / rid
    meta = json.loads((rec / "metadata.json").read_text())
    assert meta["room"] == ROOM
    assert {p["id"]: p["name"] for p in meta["participants"]} == roster
    assert {p["kind"] for p in meta["participants"]} == {"phone"}
    streams = ffprobe_streams(rec / "tracks.mkv")
    assert [s["codec_name"] for s in streams] == ["opus", "opus"]
    titles = [s.get("tags", {}).get("title") for s in streams]
    tracks = {t["track"]: t for t in meta["tracks"]}  # Matroska track numbers, in file order
    assert sorted(t["participant"] for t in tracks.values()) == sorted(roster)
    owns: list[float] = []
    for index, title in enumerate(titles):
        track = tracks[index + 1]
        assert title == track["name"] == roster[track["participant"]], (title, track)
        samples = decode(rec / "tracks.mkv", index)
        covers = meta["duration"] - track["start"]
        assert abs(samples.size / 16000 - covers) <= FRAME_S + 0.007, (title, covers)
        # each track holds exactly one phone's tone (its own), and the two are different
        held = [hz for hz in TONES if audio.hears_tone(samples, 16000, hz)]
        assert len(held) == 1, (index, held)
        owns.append(held[0])
    assert sorted(owns) == sorted(TONES)
    (mix_stream,) = ffprobe_streams(rec / "mix.opus")
    assert mix_stream["codec_name"] == "opus"
    mix = decode(rec / "mix.opus", 0)
    assert abs(mix.size / 16000 - meta["duration"]) <= 0.05
    # while both tracks run (from the later one's start, less the prompt's first second)
    begin = max(t["start"] for t in tracks.values()) + 1.0
    middle = mix[round(16000 * begin): round(16000 * (meta["duration"] - 0.5))]
    ratios = [audio.tone_ratio(middle, 16000, hz) for hz in TONES]
    loudness = [round(audio.rms(mix[i:i + 16000]), 3) for i in range(0, mix.size, 16000)]
    assert all(r >= 0.2 for r in ratios), (ratios, begin, loudness)
    resp = server.api("GET", f"/api/recordings/{rid}/files/mix.opus")
    assert resp.status == 200 and resp.body == (rec / "mix.opus").read_bytes()


class WebhookReceiver:
    """A loopback HTTP server that keeps every POST (body, signature header)."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, str]] = []
        got = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got.append((body, self.headers.get(SIGNATURE_HEADER, "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                log.info("webhook: " + format, *args)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def played_seconds(path: Path, kind: str) -> float:
    """How much of a file FFmpeg plays: its first audio stream's decoded length, or for
    "video" its first video stream's pictures (taken 2 a second)."""
    if kind == "video":
        return len(ffmedia.gray_frames(path, KILL_VIDEO[0], KILL_VIDEO[1], 2.0)) / 2.0
    return decode(path, 0).size / 16000


KILL_VIDEO = (640, 360)


@pytest.mark.parametrize(("mix_format", "video"), [("ogg", False), ("m4a", True)],
                         ids=["opus", "aac-video"])
def test_kill_9_leaves_playable_files_closed_at_the_next_start(
        switchboard_server: Any, tmp_path: Path, mix_format: str, video: bool) -> None:
    _tools()
    folder = tmp_path / "recordings"
    marker = tmp_path / "finalized"
    with WebhookReceiver() as hook:
        config = {"recording": {
            "path": str(folder), "min_free_mb": 0, "mix_format": mix_format,
            "video_width": KILL_VIDEO[0], "video_height": KILL_VIDEO[1], "video_fps": 15,
            "video_bitrate": 600, "video_preset": "ultrafast",
            "finalize_command": f"sh -c 'ls \"$0\" > {marker}'",
            "webhook_url": hook.url, "webhook_secret": "hook-secret"}}
        server = switchboard_server(config)
        make_room(server)
        phones: list[Baresip] = []
        try:
            for i, hz in enumerate(TONES):
                phones.append(_phone(tmp_path, f"p{i}", hz).start())
            _dial_in(server, phones)
            roster = {p["id"]: p["name"] for p in participants(server)}
            # the operator's command line starts it this time
            cli = subprocess.run([sys.executable, "-m", "switchboard", "recordings", "start",
                                  ROOM, "--config", str(server.config_path),
                                  *(["--video"] if video else [])],
                                 capture_output=True, timeout=30, text=True)
            assert cli.returncode == 0, cli.stderr
            rid = json.loads(cli.stdout)["id"]
            started = time.monotonic()
            rec = folder / rid
            # metadata.json is there from the start, the roster in it, no end yet
            running = json.loads((rec / "metadata.json").read_text())
            assert running["state"] == "recording" and running["end"] is None, running
            assert {p["id"]: p["name"] for p in running["participants"]} == roster
            time.sleep(8.0)
            killed_after = time.monotonic() - started
            server.kill9()
            assert not server.running()
        finally:
            _quit(phones)
        # the files as the kill left them play, up to within a few seconds of it
        mix = {"ogg": "mix.opus", "m4a": "mix.m4a"}[mix_format]
        expect = {mix: ("opus" if mix_format == "ogg" else "aac",),
                  "tracks.mkv": ("opus", "opus")}
        if video:
            expect["video.mp4"] = ("h264", "aac")
        for name, codecs in expect.items():
            streams = ffprobe_streams(rec / name)
            assert tuple(s["codec_name"] for s in streams) == codecs, (name, streams)
            played = played_seconds(rec / name, "audio")
            assert killed_after - 3.0 <= played <= killed_after + 0.5, (name, played,
                                                                        killed_after)
        if video:
            (picture,) = [s for s in ffprobe_streams(rec / "video.mp4")
                          if s["codec_type"] == "video"]
            assert (picture["width"], picture["height"]) == KILL_VIDEO
            played = played_seconds(rec / "video.mp4", "video")
            assert killed_after - 4.0 <= played <= killed_after + 0.5, (played, killed_after)
        owns = [[hz for hz in TONES if audio.hears_tone(decode(rec / "tracks.mkv", i), 16000,
                                                         hz)] for i in range(2)]
        assert sorted(owns) == [[TONES[0]], [TONES[1]]], owns  # each its own tone
        mix_samples = decode(rec / mix, 0)[16000:]
        assert all(audio.tone_ratio(mix_samples, 16000, hz) >= 0.2 for hz in TONES)
        assert json.loads((rec / "metadata.json").read_text())["end"] is None  # not closed

        # the next start closes it: metadata completed, finalize command, signed webhook
        again = switchboard_server(config)
        item = wait_state(again, rid, "done", timeout=30)
        assert {f["kind"] for f in item["files"]} == (
            {"mix", "tracks", "metadata"} | ({"video"} if video else set()))
        meta = json.loads((rec / "metadata.json").read_text())
        assert meta["reason"] == "interrupted" and meta["end"] is not None
        assert {p["id"]: p["name"] for p in meta["participants"]} == roster
        assert all(p["left"] == meta["end"] for p in meta["participants"])
        assert killed_after - 3.0 <= meta["duration"] <= killed_after + 3.0, meta["duration"]
        deadline = time.monotonic() + 15
        while not hook.got and time.monotonic() < deadline:
            time.sleep(0.1)
        (body, header), = hook.got
        assert verify(body, "hook-secret", header)
        notice = json.loads(body)
        assert (notice["id"], notice["state"]) == (rid, "done")
        assert mix in marker.read_text().split()
        # what the restart wrote did not touch the media: they still play
        assert played_seconds(rec / mix, "audio") >= killed_after - 3.0
