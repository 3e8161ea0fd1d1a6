"""A recording cut by a crash (issue 18, section 1): metadata.json is on disk from the start
and follows the roster ("end" null), and the next start closes it (end, leaves, mutes),
runs the finalize command and the signed webhook; a folder another process still records
into (its lock held) is left alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from test_recordings import T0, Clock, FakeBridge, RecvSrc, Speaker, Src, run_frames, settings

from focus import Focus
from recorder.finalize import SIGNATURE_HEADER, verify
from recorder.recovery import close_unfinished, unfinished
from recorder.service import Recordings
from recorder.session import LOCK_FILE

WALL0 = 1_700_000_000.0


def crash(rec: Recordings) -> None:
    """What kill -9 leaves: the files as they are, the lock let go, nothing stopped."""
    for recording in rec.by_id.values():
        assert recording.lock_fd is not None
        os.close(recording.lock_fd)  # (the kernel does this for a killed process)
        recording.lock_fd = None
    rec.running.clear()
    rec.by_id.clear()


async def test_metadata_follows_the_roster_and_the_next_start_closes_it(
        tmp_path: Path, aiohttp_server: Any) -> None:
    got: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), request.headers.get(SIGNATURE_HEADER, "")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    focus, bridge, clock = Focus(), FakeBridge(), Clock()

    def wall() -> float:
        return WALL0 + clock.now - T0

    alice = focus.join("standup", "browser", "Alice", audio=True)
    rec = Recordings(settings(tmp_path), focus, bridge, bridge.connect, clock=clock, wall=wall)
    recording = await rec.start("standup", "test")
    folder = tmp_path / "rec" / recording.id
    meta = json.loads((folder / "metadata.json").read_text())  # at once, before any tick
    assert meta["state"] == "recording" and meta["end"] is None
    assert [(p["name"], p["left"], p["muted"]) for p in meta["participants"]] == [
        ("Alice", None, [])]
    (link,) = bridge.links.values()
    a = Speaker(11, 440)
    bridge.sources = [RecvSrc(Src(alice.id, "audio", 11), 11)]
    await run_frames(rec, clock, link, lambda i: [a], 50)
    bob = focus.join("standup", "phone", "+1 555 0100", mixed_by="gateway")
    focus.set_muted(alice.id, True)
    await run_frames(rec, clock, link, lambda i: [], 25)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["end"] is None
    people = {p["name"]: p for p in meta["participants"]}
    assert set(people) == {"Alice", "+1 555 0100"} and people["+1 555 0100"]["id"] == bob.id
    (mute,) = people["Alice"]["muted"]
    assert mute["from"] is not None and mute["to"] is None
    assert [(t["participant"], t["name"]) for t in meta["tracks"]] == [(alice.id, "Alice")]
    # still recording here: its lock is held, nobody may close it
    assert unfinished(tmp_path / "rec", set()) == [folder]
    assert close_unfinished(folder) is None
    crash(rec)

    marker = tmp_path / "finalized"
    after = Recordings(settings(tmp_path, finalize_command=f"sh -c 'ls \"$0\" > {marker}'",
                                webhook_url=f"http://127.0.0.1:{server.port}/hook",
                                webhook_secret="hook-secret"),
                       focus, bridge, bridge.connect, clock=clock, wall=wall)
    assert after.describe(recording.id)["state"] == "recording"  # type: ignore[index]
    after.recover()
    await after.close()  # (waits for the background work)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["state"] == "finalizing" and meta["reason"] == "interrupted"
    assert meta["end"] is not None and meta["duration"] > 0
    people = {p["name"]: p for p in meta["participants"]}
    assert people["Alice"]["left"] == meta["end"] == people["Alice"]["muted"][0]["to"]
    assert people["+1 555 0100"]["left"] == meta["end"]
    assert not (folder / LOCK_FILE).exists()
    assert after.describe(recording.id)["state"] == "done"  # type: ignore[index]
    assert set(marker.read_text().split()) == {"metadata.json", "mix.opus", "tracks.mkv"}
    (body, header), = got
    assert verify(body, "hook-secret", header)
    data = json.loads(body)
    assert data["event"] == "recording.done" and data["id"] == recording.id
    assert data["state"] == "done" and data["metadata"]["reason"] == "interrupted"
    assert {f["kind"] for f in data["files"]} == {"mix", "tracks", "metadata"}
    # once closed, never again
    assert unfinished(tmp_path / "rec", set()) == []


async def test_a_folder_without_metadata_is_closed_from_its_name(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    folder = root / "20261205T111500Z-stand-up-1a2b3c4d"
    folder.mkdir(parents=True)
    (folder / "tracks.mkv").write_bytes(b"\x1a\x45\xdf\xa3")
    os.utime(folder / "tracks.mkv", (1_796_469_330.0, 1_796_469_330.0))
    (root / "not-a-recording").mkdir()
    (root / "20261205T111600Z-empty-0badf00d").mkdir()  # no files: nothing to close
    assert unfinished(root, set()) == [folder]
    meta = close_unfinished(folder)
    assert meta is not None
    assert meta["room"] == "stand-up" and meta["start"] == "2026-12-05T11:15:00.000Z"
    assert meta["end"] == "2026-12-05T11:15:30.000Z" and meta["duration"] == 30.0
    assert json.loads((folder / "metadata.json").read_text())["reason"] == "interrupted"
    assert {f["name"] for f in meta["files"]} == {"tracks.mkv", "metadata.json"}
    assert unfinished(root, set()) == []
