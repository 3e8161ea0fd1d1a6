"""A node whose PostgreSQL dies keeps its running conferences: a phone caller in a room stays
in it and hangs up normally; meanwhile a new call gets a clear 503, a browser's join a clear
refusal and the admin API a 503; a caller keying a PIN then is told and hung up on (not a
wrong PIN); nothing hangs. (A PostgreSQL of its own: this test kills
it.)"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from peers.postgres import start_postgres
from peers.scenarios_dialin import rejected_invite_scenario
from peers.sipp import Sipp, run_sipp, write_pin_dial, write_scenario, write_wrong_pin

pytestmark = pytest.mark.integration

PIN = "48213077"
NUMBER = "+15550100"


def _stats(server: Any) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, resp.text
    result: dict[str, int] = resp.json()
    return result


async def _browser_join(server: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        ws = await s.ws_connect(server.base_url + "/ws")
        await ws.send_json({"type": "join", "version": 1, "room": "standup", "name": "Ann",
                            "audio": False, "video": False})  # fmt: skip
        msg = await ws.receive(timeout=10)
        data: dict[str, Any] = json.loads(msg.data) if msg.type is aiohttp.WSMsgType.TEXT \
            else {"type": str(msg.type)}  # fmt: skip
        await ws.receive(timeout=5)  # the close frame
        data["close"] = ws.close_code
        return data


def test_a_lost_database_keeps_the_call_in_progress(switchboard_server: Any,
                                                    tmp_workdir: Path) -> None:
    database = start_postgres()
    try:
        server = switchboard_server({"store": {"url": database.url()}})
        assert server.api("POST", "/api/rooms", {"name": "standup", "pin": PIN}).status == 201
        assert server.api("POST", "/api/numbers", {"number": NUMBER, "route": "pin"}).status \
            == 201  # fmt: skip
        scenario = write_pin_dial(tmp_workdir, PIN, prompt_wait_ms=2500, digit_gap_ms=250,
                                  hold_ms=9000, caller="15557001")
        call = Sipp(tmp_workdir, "in-call", scenario, remote=server.sip_address,
                    service=NUMBER, timeout_s=40).start()
        deadline = time.monotonic() + 20
        while _stats(server).get("participants") != 1:
            assert time.monotonic() < deadline, f"the caller never joined:\n{server.log_tail()}"
            time.sleep(0.2)
        # a second caller is at the PIN prompt when the database goes: keyed later, the PIN
        # cannot be checked; the caller hears that and is hung up on (not a wrong PIN)
        keying = write_wrong_pin(tmp_workdir, (PIN,), name="keying", prompt_wait_ms=6000,
                                 digit_gap_ms=250, bye_timeout_ms=20000, caller="15557002")
        at_prompt = Sipp(tmp_workdir, "keying", keying, remote=server.sip_address,
                         service=NUMBER, timeout_s=40).start()
        deadline = time.monotonic() + 10
        while _stats(server).get("ivr") != 1:
            assert time.monotonic() < deadline, f"no second call:\n{server.log_tail()}"
            time.sleep(0.1)
        failures = _stats(server)["pin_failures"]
        database.process.stop()  # PostgreSQL is gone, with its data
        # a new call: a clear answer at once, no hanging
        refused = write_scenario(tmp_workdir / "refused.xml", rejected_invite_scenario(503))
        began = time.monotonic()
        res = run_sipp(tmp_workdir, "refused", refused, remote=server.sip_address,
                       service=NUMBER, timeout_s=15)
        assert res.ok, res.describe()
        assert time.monotonic() - began < 10
        began = time.monotonic()
        assert server.api("GET", "/api/rooms").status == 503
        assert server.api("GET", "/api/health", auth=False).status == 503
        assert time.monotonic() - began < 5
        joined = asyncio.run(_browser_join(server))  # a browser: a clear answer too
        assert (joined.get("code"), joined.get("close")) == ("unavailable", 4029), joined
        during = _stats(server)
        assert during["participants"] == 1 and during["conferences"] == 1, during
        hung_up = at_prompt.wait()  # succeeds only on the server's BYE
        assert hung_up.ok, hung_up.describe()
        assert "PIN lookup failed" in server.log_text()
        assert PIN not in server.log_text()
        finished = call.wait()  # the call in progress ran its course and hung up
        assert finished.ok, finished.describe()
        assert server.running()
        assert _stats(server)["pin_failures"] == failures
        assert "Traceback" not in server.log_text(), server.log_tail(60)
    finally:
        database.process.stop()
