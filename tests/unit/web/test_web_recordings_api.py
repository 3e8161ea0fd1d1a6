"""The recordings API (issue 18's interface): start and stop by the admin or a room's
moderator, listing and downloads by the admin only; nothing outside a recording's listed
files is ever served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_auth import ADMIN, AUTH, SECRET, Client, MakeClient, bearer

from dialplan.store import Store
from focus import Focus
from focus.tokens import TokenSettings, TokenVerifier
from recorder.service import RecorderSettings, Recordings
from web.app import create_app
from web.recordings_api import RECORDINGS


class Alloc:
    media = "local:standup/rec"


class QuietBridge:
    async def allocate_plain(self, room: str, endpoint_id: str) -> Alloc:
        return Alloc()

    async def expire(self, room: str, endpoint_id: str) -> None:
        return None

    async def receive_sources(self, room: str, endpoint_id: str) -> tuple[Any, ...]:
        return ()


class Link:
    def close(self) -> None:
        return None


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    s.create_room("standup", "48213077")
    s.create_room("other", "48213078")
    yield s
    s.close()


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store, tmp_path: Path) -> Client:
    focus = Focus()
    focus.join("standup", "browser", "Alice")
    recordings = Recordings(RecorderSettings(path=str(tmp_path / "rec"), min_free_mb=0),
                            focus, QuietBridge(), lambda media, a, b: Link())
    app = create_app(store, focus, admin_token=ADMIN,
                     tokens=TokenVerifier(TokenSettings(secret=SECRET)))
    app[RECORDINGS] = recordings
    app.on_cleanup.append(lambda app: recordings.close())
    return await aiohttp_client(app)


async def test_start_status_download_and_stop(client: Client) -> None:
    resp = await client.post("/api/rooms/standup/recordings", headers=AUTH,
                             json={"mode": "file"})
    assert resp.status == 201
    rid = (await resp.json())["id"]
    resp = await client.post("/api/rooms/standup/recordings", headers=AUTH,
                             json={"mode": "file"})
    assert resp.status == 409 and (await resp.json())["id"] == rid
    resp = await client.get(f"/api/recordings/{rid}", headers=AUTH)
    item = await resp.json()
    assert item["state"] == "recording"
    # metadata.json is there from the start (what a crash would leave), "end" null
    assert {f["kind"] for f in item["files"]} == {"mix", "tracks", "metadata"}
    assert all(set(f) == {"name", "kind", "bytes"} for f in item["files"])
    resp = await client.get(f"/api/recordings/{rid}/files/metadata.json", headers=AUTH)
    running = await resp.json(content_type=None)
    assert (running["state"], running["end"]) == ("recording", None)
    resp = await client.get(f"/api/recordings/{rid}/files/mix.opus", headers=AUTH)
    assert resp.status == 200 and (await resp.read()).startswith(b"OggS")
    resp = await client.delete(f"/api/rooms/standup/recordings/{rid}", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["state"] in ("finalizing", "done")
    resp = await client.delete(f"/api/rooms/standup/recordings/{rid}", headers=AUTH)
    assert resp.status == 404
    resp = await client.get("/api/recordings", headers=AUTH)
    assert [r["id"] for r in await resp.json()] == [rid]
    resp = await client.get(f"/api/recordings/{rid}/files/metadata.json", headers=AUTH)
    assert (await resp.json())["room"] == "standup"


async def test_moderator_token_controls_its_own_room_only(client: Client) -> None:
    resp = await client.post("/api/rooms/standup/recordings", headers=bearer(moderator=False),
                             json={"mode": "file"})
    assert resp.status == 403
    resp = await client.post("/api/rooms/standup/recordings", headers=bearer("other"),
                             json={"mode": "file"})
    assert resp.status in (401, 403)
    resp = await client.post("/api/rooms/standup/recordings", headers=bearer(),
                             json={"mode": "file"})
    assert resp.status == 201
    rid = (await resp.json())["id"]
    resp = await client.get("/api/rooms/standup/recordings", headers=bearer())
    assert [r["id"] for r in await resp.json()] == [rid]
    # downloads and the global list are the admin's
    for path in ("/api/recordings", f"/api/recordings/{rid}",
                 f"/api/recordings/{rid}/files/mix.opus"):
        assert (await client.get(path, headers=bearer())).status == 401
    resp = await client.delete(f"/api/rooms/other/recordings/{rid}", headers=bearer())
    assert resp.status in (401, 403)
    resp = await client.delete(f"/api/rooms/standup/recordings/{rid}", headers=bearer())
    assert resp.status == 200
    # ... but the room's own files through the room's path, to its moderators
    own = f"/api/rooms/standup/recordings/{rid}/files/metadata.json"
    resp = await client.get(own, headers=bearer())
    assert resp.status == 200 and (await resp.json())["room"] == "standup"
    assert (await client.get(own, headers=bearer(moderator=False))).status == 403
    assert (await client.get(own, headers=bearer("other"))).status in (401, 403)
    # another room's moderator cannot fetch it through their own room's path
    other = await client.post("/api/rooms", headers=AUTH, json={"name": "other"})
    assert other.status in (201, 409)
    resp = await client.get(f"/api/rooms/other/recordings/{rid}/files/metadata.json",
                            headers=bearer("other"))
    assert resp.status == 404


async def test_refusals_and_bad_requests(client: Client) -> None:
    for body, status in (({"mode": "stream", "url": "rtmp://127.0.0.1/live/x"}, 403),
                         ({"mode": "stream", "youtube_key": "abc"}, 403),
                         ({"mode": "stream", "url": "http://127.0.0.1/live/x"}, 400),
                         ({"mode": "stream"}, 400),
                         ({"mode": "file", "url": "rtmp://127.0.0.1/live/x"}, 400),
                         ({"mode": "file", "video": "yes"}, 400),
                         ({"mode": "tape"}, 400), ({}, 400), ({"mode": "file", "x": 1}, 400)):
        resp = await client.post("/api/rooms/standup/recordings", headers=AUTH, json=body)
        assert resp.status == status, body
    resp = await client.post("/api/rooms/other/recordings", headers=AUTH, json={"mode": "file"})
    assert resp.status == 409 and (await resp.json())["code"] == "empty"
    resp = await client.post("/api/rooms/nope/recordings", headers=AUTH, json={"mode": "file"})
    assert resp.status == 404
    assert (await client.post("/api/rooms/standup/recordings", json={"mode": "file"})).status \
        == 401


async def test_no_path_escapes_a_recording(client: Client, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no")
    resp = await client.post("/api/rooms/standup/recordings", headers=AUTH,
                             json={"mode": "file"})
    rid = (await resp.json())["id"]
    for path in (f"/api/recordings/{rid}/files/..%2F..%2Fsecret.txt",
                 f"/api/recordings/{rid}/files/%2e%2e",
                 "/api/recordings/..%2Fsecret.txt",
                 f"/api/recordings/{rid}/files/metadata.json.tmp",
                 "/api/recordings/nope/files/mix.opus"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404, path
