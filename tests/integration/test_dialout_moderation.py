"""A called-out phone is a normal phone participant once it answers (issue 16, section 2):

a room's phone (dial-in, the listener) and a moderator (a WebSocket client with a moderator
token, as the meeting page is) are in the room; the API dials a baresip phone (the far end of
a trunk) which answers and plays a tone; the listener hears it. The moderator mutes it: the
listener hears it no more, and the API says muted. The phone keys `*6`: unmuted, and the
listener hears it again. The moderator removes it: the BYE reaches baresip, the call is
ended in GET /api/calls/{id}, and it is gone from the roster (the API's and the moderator's).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from peers import audio, procs
from peers.baresip import Baresip

pytestmark = pytest.mark.integration

ROOM = "called-out"
NUMBER = "+15550100"
CALLEE = "+15550199"
SECRET = "dialout-moderation-secret-0123456789abcdef"
CALLEE_HZ, LISTENER_HZ = 1000.0, 400.0


class Moderator:
    """A moderator's signaling WebSocket, on a loop of its own in a thread (the tests'
    baresip helpers are synchronous): `send()` a message, `messages` received so far."""

    def __init__(self, base_url: str, room: str, token: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Future[None] | None = None
        try:
            self._run(self._open(base_url, room, token))
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self, base_url: str, room: str, token: str) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(base_url + "/ws",
                                                  headers={"Origin": base_url})
        await self._ws.send_str(json.dumps({"type": "join", "version": 1, "room": room,
                                            "name": "Moderator", "audio": False,
                                            "video": False, "token": token}))
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m.get("type") == kind]

    def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._run(self._ws.send_str(json.dumps(message)))

    async def _close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
        if self._session is not None:
            await self._session.close()

    def close(self) -> None:
        try:
            self._run(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def participants(server: Any) -> dict[str, dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{ROOM}/participants")
    assert resp.status == 200, resp.text
    return {p["id"]: p for p in resp.json()}


def silent(phone: Baresip, hz: float) -> bool:
    samples, rate = phone.heard(1.5)
    return not audio.hears_tone(samples, rate, hz, min_ratio=0.3, min_active_s=0.3)


def hears(phone: Baresip, hz: float) -> bool:
    samples, rate = phone.heard(1.5)
    return audio.hears_tone(samples, rate, hz, min_ratio=0.5, min_active_s=0.8)


def wait(condition: Any, timeout: float, what: str, server: Any) -> None:
    if not procs.wait_until(condition, timeout, 0.25):
        pytest.fail(f"{what} within {timeout:.0f} s\n{server.log_tail(40)}")


def test_a_called_out_phone_is_muted_unmutes_with_star6_and_is_removed(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server({"auth": {"jwt_secret": SECRET},
                                 "dialplan": {"default_country": "1"}})
    assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
    assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "room",
                                               "room": ROOM}).status == 201
    callee_src = audio.make_tone_wav(tmp_workdir / "callee.wav", CALLEE_HZ, 150.0,
                                     amplitude=0.25)
    listener_src = audio.make_tone_wav(tmp_workdir / "listener.wav", LISTENER_HZ, 150.0,
                                       amplitude=0.25)
    token = jwt.encode({"room": ROOM, "exp": int(time.time()) + 600,
                        "context": {"user": {"name": "Moderator", "moderator": True}}},
                       SECRET, algorithm="HS256")
    with Baresip(tmp_workdir, "callee", user=CALLEE, source_wav=callee_src,
                 codecs=("PCMU/8000/1",), timeout_s=120) as callee, \
            Baresip(tmp_workdir, "listener", source_wav=listener_src,
                    codecs=("PCMU/8000/1",), timeout_s=120) as listener:
        resp = server.api("POST", "/api/trunks", {
            "name": "pbx", "address": f"127.0.0.1:{callee.sip_port}", "transport": "udp",
            "numbers": [NUMBER], "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        listener.dial(server.sip_uri(NUMBER))
        listener.wait_event("CALL_ESTABLISHED", 10)
        moderator = Moderator(server.base_url, ROOM, token)
        try:
            wait(lambda: moderator.of_type("joined"), 10, "the moderator never joined",
                 server)
            assert moderator.of_type("joined")[0]["self"]["role"] == "moderator", \
                moderator.of_type("joined")
            resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": CALLEE})
            assert resp.status == 202, resp.text
            call_id, pid = resp.json()["id"], resp.json()["participant_id"]
            callee.wait_event("CALL_ESTABLISHED", 10)
            wait(lambda: server.api("GET", f"/api/calls/{call_id}").json()["state"]
                 == "connected", 10, "the call never connected", server)
            phone = participants(server)[pid]
            assert (phone["kind"], phone["muted"]) == ("phone", False), phone
            wait(lambda: hears(listener, CALLEE_HZ), 10,
                 "the listener never heard the called-out phone", server)

            # the moderator mutes it: the room hears it no more
            moderator.send({"type": "moderate", "action": "mute", "target": pid})
            wait(lambda: participants(server)[pid]["muted"] is True, 5,
                 "the moderator's mute never took", server)
            wait(lambda: silent(listener, CALLEE_HZ), 5,
                 "the listener still hears the muted phone", server)

            # *6 on the phone: unmuted by itself, heard again
            callee.send_dtmf("*6")
            wait(lambda: participants(server)[pid]["muted"] is False, 5,
                 "*6 never unmuted the called-out phone", server)
            wait(lambda: hears(listener, CALLEE_HZ), 10,
                 "the listener never heard the phone again after *6", server)

            # the moderator removes it: BYE to the phone, the call ended, the roster updated
            mark = time.monotonic()
            moderator.send({"type": "moderate", "action": "kick", "target": pid})
            callee.wait_event("CALL_CLOSED", 15, predicate=lambda e: e.at > mark)
            wait(lambda: pid not in participants(server), 5,
                 "the removed phone stayed in the roster", server)
            ended = server.api("GET", f"/api/calls/{call_id}").json()
            assert ended["state"] == "ended", ended
            wait(lambda: any(m.get("id") == pid for m in moderator.of_type("participant-left")),
                 5, "the moderator's roster never lost the phone", server)
            assert participants(server), "the listener should still be in the room"
        finally:
            moderator.close()
        listener.hangup()
    wait(lambda: server.api("GET", "/api/stats").json()["calls"] == 0 and
         server.api("GET", "/api/stats").json()["rtp_ports_in_use"] == 0, 10,
         "calls left behind", server)
