"""POST /api/rooms/{room}/dial, GET and DELETE /api/calls/{id} over aiohttp's test client,
against a fake gateway that applies the real toll-fraud guard (gateway/dialout.py): the
fields, the status codes, and who may dial (admin token, a moderator's token for the room;
for a call, the call's room)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_auth import ADMIN, AUTH, SECRET, Client, MakeClient, bearer

from dialplan.store import Store
from dialplan.trunks import parse_trunk
from focus.tokens import TokenSettings, TokenVerifier
from gateway.dialout import DialOut, DialRefused, pick_trunk
from web.app import create_app


class FakeFocus:
    def participants(self, room: str) -> list[Any]:
        return []

    def stats(self) -> dict[str, int]:
        return {}


class FakeGateway:
    """DialControl with the real guard; calls are records only."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: dict[str, DialOut] = {}
        self.hung_up: list[str] = []

    async def api_dial(self, room: str, number: str, trunk: str | None,
                       ringing_timeout: float | None, dtmf: str,
                       redial: bool = False) -> tuple[int, dict[str, object]]:
        if self.store.room(room) is None:
            return 404, {"error": f"room {room!r} not found"}
        try:
            chosen, e164 = pick_trunk(self.store.trunks(), number, trunk, "1")
        except DialRefused as exc:
            return exc.status, {"error": exc.reason}
        dial = DialOut(id=f"c{len(self.calls) + 1}", room=room, number=e164,
                       trunk=chosen.name, started=0.0, ringing_timeout=ringing_timeout or 45,
                       dtmf=dtmf, participant_id=f"p{len(self.calls) + 1}-abc", redial=redial)
        self.calls[dial.id] = dial
        return 202, {"id": dial.id, "participant_id": dial.participant_id}

    def api_call(self, dial_id: str) -> dict[str, object] | None:
        dial = self.calls.get(dial_id)
        return dial.as_json() if dial else None

    def api_hang_up(self, dial_id: str) -> bool:
        if dial_id not in self.calls:
            return False
        self.hung_up.append(dial_id)
        return True

    def call_room(self, dial_id: str) -> str | None:
        dial = self.calls.get(dial_id)
        return dial.room if dial else None


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    s.create_room("standup")
    s.create_room("other")
    s.add_trunk(parse_trunk({"name": "carrier", "address": "127.0.0.1:5080",
                             "allowed_destinations": ["+1555"]}))
    yield s
    s.close()


@pytest.fixture
async def client(aiohttp_client: MakeClient, store: Store) -> Client:
    gateway = FakeGateway(store)
    app = create_app(store, FakeFocus(), admin_token=ADMIN, dialout=gateway,
                     tokens=TokenVerifier(TokenSettings(secret=SECRET)))
    c = await aiohttp_client(app)
    c.gateway = gateway  # type: ignore[attr-defined]
    return c


async def test_dial_status_and_hang_up(client: Client) -> None:
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH,
                             json={"number": "+15550199", "trunk": "carrier",
                                   "ringing_timeout": 20, "dtmf": "1234#"})
    assert resp.status == 202
    body = await resp.json()
    assert set(body) == {"id", "participant_id"}
    resp = await client.get(f"/api/calls/{body['id']}", headers=AUTH)
    assert resp.status == 200
    status = await resp.json()
    assert status["state"] == "dialing" and status["reason"] is None
    assert (await client.delete(f"/api/calls/{body['id']}", headers=AUTH)).status == 204
    assert client.gateway.hung_up == [body["id"]]  # type: ignore[attr-defined]
    assert (await client.get("/api/calls/nosuch", headers=AUTH)).status == 404
    assert (await client.delete("/api/calls/nosuch", headers=AUTH)).status == 404


async def test_redial_is_passed_on(client: Client) -> None:
    for redial in (True, False):
        resp = await client.post("/api/rooms/standup/dial", headers=AUTH,
                                 json={"number": "+15550199", "redial": redial})
        assert resp.status == 202
        call = client.gateway.calls[(await resp.json())["id"]]  # type: ignore[attr-defined]
        assert call.redial is redial


async def test_trunk_is_optional_when_one_fits(client: Client) -> None:
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH, json={"number": "5550199"})
    assert resp.status == 202  # national, default country 1: +15550199


async def test_toll_fraud_guard_is_a_403_with_the_reason(client: Client) -> None:
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH,
                             json={"number": "+88213000000", "trunk": "carrier"})
    assert resp.status == 403
    assert "allowed_destinations" in (await resp.json())["error"]
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH,
                             json={"number": "+4420790000"})
    assert resp.status == 403
    assert client.gateway.calls == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [
    {}, {"number": ""}, {"number": 15550199}, {"number": "+15550199", "trunk": 1},
    {"number": "+15550199", "dtmf": 12}, {"number": "+15550199", "ringing_timeout": "x"},
    {"number": "+15550199", "ringing_timeout": True}, {"number": "+15550199", "extra": 1},
    {"number": "+15550199", "redial": "yes"}, {"number": "+15550199", "redial": 1},
    ["+15550199"],
])
async def test_bad_bodies(client: Client, body: Any) -> None:
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH, json=body)
    assert resp.status == 400


async def test_unknown_room_and_trunk(client: Client) -> None:
    resp = await client.post("/api/rooms/nosuch/dial", headers=AUTH, json={"number": "+15550199"})
    assert resp.status == 404
    resp = await client.post("/api/rooms/standup/dial", headers=AUTH,
                             json={"number": "+15550199", "trunk": "nosuch"})
    assert resp.status == 404


async def test_who_may_dial(client: Client) -> None:
    body = {"number": "+15550199"}
    resp = await client.post("/api/rooms/standup/dial", headers=bearer(), json=body)
    assert resp.status == 202
    call_id = (await resp.json())["id"]
    # a moderator of another room, a guest, nobody: refused; nothing was dialled
    assert (await client.post("/api/rooms/standup/dial", headers=bearer("other"),
                              json=body)).status == 401
    assert (await client.post("/api/rooms/standup/dial", headers=bearer(moderator=False),
                              json=body)).status == 403
    assert (await client.post("/api/rooms/standup/dial", json=body)).status == 401
    assert len(client.gateway.calls) == 1  # type: ignore[attr-defined]
    # the call's own room's moderator may see and end it; another room's may not
    assert (await client.get(f"/api/calls/{call_id}", headers=bearer())).status == 200
    assert (await client.get(f"/api/calls/{call_id}", headers=bearer("other"))).status == 401
    assert (await client.delete(f"/api/calls/{call_id}", headers=bearer("other"))).status == 401
    assert client.gateway.hung_up == []  # type: ignore[attr-defined]
    assert (await client.delete(f"/api/calls/{call_id}", headers=bearer())).status == 204
