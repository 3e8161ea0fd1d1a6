"""A host phone caller starts and stops a recording with `*3` (issue 18, section 3), with
real baresip phones sending RFC 2833 DTMF.

A host (who keyed the room's host PIN, tone 1000 Hz) and a guest (the room's PIN, 400 Hz)
are in a room. The guest's `*3` does nothing (not a host's key for them): no recording. The
host's `*3` starts one: /api/recordings lists it, "recording", and the guest hears "this
meeting is now being recorded". The host's second `*3` stops it: the recording is "done",
stopped by the host, its files are the mix, the tracks and metadata.json naming both
callers; the guest hears "no longer". No PIN or host PIN in the server's log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from peers import audio
from test_phone_lobby_baresip import (
    HOST_PIN,
    PIN,
    assert_no_secrets,
    dial,
    get,
    keys,
    participants,
    phone,
    quit_all,
    until,
    wait_counts_zero,
)

pytestmark = pytest.mark.integration

ROOM = "keyed"
HOST_HZ, GUEST_HZ = 1000.0, 400.0
PROMPTS = Path(__file__).resolve().parents[2] / "gateway" / "prompts"


def recordings(server: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(server, "/api/recordings")
    return found


def prompt_score(heard: Any, name: str) -> float:
    return audio.prompt_score(heard, PROMPTS / f"{name}.wav", (HOST_HZ, GUEST_HZ))


def test_a_host_callers_star_3_starts_and_stops_a_recording(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    folder = tmp_workdir / "recordings"
    server = switchboard_server({"log": {"level": "debug"}, "recording": {
        "path": str(folder), "min_free_mb": 0}})
    resp = server.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN, "host_pin": HOST_PIN})
    assert resp.status == 201, resp.text
    host = phone(tmp_workdir, "host", "15557011", HOST_HZ)
    guest = phone(tmp_workdir, "guest", "15557012", GUEST_HZ)
    try:
        dial(server, host, HOST_PIN + "#")
        (first,) = until(lambda: participants(server, ROOM), 20, "the host in the room")
        host_id = first["id"]
        dial(server, guest, PIN + "#")
        until(lambda: len(participants(server, ROOM)) == 2, 20, "both callers in the room")
        roster = {p["id"]: p["name"] for p in participants(server, ROOM)}
        host.poll(6.0)  # the greetings and the host's keys prompt are over
        keys(guest, "*3")  # a guest's *3 is nothing
        guest.poll(2.0)
        assert recordings(server) == []

        started = time.monotonic()  # (before the keys: the prompt may start as '3' ends)
        keys(host, "*3")
        (item,) = until(lambda: recordings(server), 10, "the host's *3 starts a recording")
        assert item["room"] == ROOM and item["state"] == "recording", item
        rid = item["id"]
        guest.poll(5.0)
        heard_on, _ = guest.heard(time.monotonic() - started)
        stopped = time.monotonic()
        keys(host, "*3")
        until(lambda: get(server, f"/api/recordings/{rid}")["state"] == "done", 20,
              "the host's second *3 stops it")
        guest.poll(4.0)
        heard_off, _ = guest.heard(time.monotonic() - stopped)
        for p in (host, guest):
            p.hangup()
    finally:
        quit_all(host, guest)
    assert prompt_score(heard_on, "recording_on") > 0.6 > 0.4 > prompt_score(
        heard_on, "invalid_pin")
    assert prompt_score(heard_off, "recording_off") > 0.6
    item = get(server, f"/api/recordings/{rid}")
    assert {f["kind"] for f in item["files"]} == {"mix", "tracks", "metadata"}, item
    assert [r["id"] for r in recordings(server)] == [rid]  # one start, one stop
    meta = get(server, f"/api/recordings/{rid}/files/metadata.json")
    assert meta["reason"] == f"stopped by {host_id}", meta["reason"]
    assert {p["id"]: p["name"] for p in meta["participants"]} == roster
    assert 4.0 <= meta["duration"] <= stopped - started + 1.0, meta["duration"]
    wait_counts_zero(server)
    assert_no_secrets(server, PIN, HOST_PIN)
