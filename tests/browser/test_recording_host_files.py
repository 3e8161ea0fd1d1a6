"""A room's hosts get its recordings on the meeting page (issue 18, section 3): a moderator
by token records from the page, then opens "This room's recordings" and downloads a file;
the page fetched it with the token in a header, never in an address. A guest (no token)
sees no such list."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from browser_harness import join_meeting
from playwright.sync_api import expect

SECRET = "browser-recording-secret-0123456789abcdef"
RECORDINGS = Path(tempfile.mkdtemp(prefix="switchboard-host-recordings-"))
SWITCHBOARD_CONFIG = {"auth": {"jwt_secret": SECRET},
                      "recording": {"path": str(RECORDINGS), "min_free_mb": 0}}
ROOM = "host-files"


def token(room: str) -> str:
    claims = {"room": room, "exp": int(time.time()) + 600,
              "context": {"user": {"name": "Host", "moderator": True}}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_host_downloads_the_rooms_recording_from_the_page(browser: Any,
                                                            module_switchboard: Any) -> None:
    server = module_switchboard
    server.api("POST", "/api/rooms", {"name": ROOM})
    host = browser.open(f"{server.url}/{ROOM}?jwt={token(ROOM)}")
    join_meeting(host, "Host", camera=False)
    guest = browser.open(f"{server.url}/{ROOM}")
    join_meeting(guest, "Guest", camera=False)
    host.click("#btn-people")
    host.click("#rec-toggle")
    expect(host.locator("#rec-indicator")).to_be_visible(timeout=10_000)
    time.sleep(3.0)
    host.click("#rec-toggle")
    expect(host.locator("#rec-indicator")).to_be_hidden(timeout=10_000)
    (item,) = server.api("GET", f"/api/rooms/{ROOM}/recordings")
    deadline = time.monotonic() + 20
    while item["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
        item = server.api("GET", f"/api/recordings/{item['id']}")
    assert item["state"] == "done", item
    host.click("#rec-files summary")
    button = host.locator("#rec-file-list button[data-file='metadata.json']")
    expect(button).to_be_visible(timeout=10_000)
    with host.expect_download(timeout=10_000) as info:
        button.click()
    saved = Path(info.value.path())
    assert json.loads(saved.read_text())["room"] == ROOM
    assert info.value.suggested_filename == f"{item['id']}-metadata.json"
    # the guest has no such list (and no Record button)
    guest.click("#btn-people")
    assert guest.locator("#rec-files").is_hidden()
    assert guest.locator("#rec-actions").is_hidden()
    # no token in any address the server saw
    assert "jwt=" not in server.log_path.read_text(errors="replace").replace("jwt=***", "")
