"""A restart keeps rooms, PINs and numbers (issue 2, section 5).

Rooms (one with a given PIN, one with a generated PIN) and numbers are made through the
HTTP API, one more room with the CLI while the server runs; the server stops on SIGTERM
(cleanly, exit 0), a new server starts on the same data directory, and everything is still
there: the API lists, the Jitsi-style conference mapper and phone-number list, and calls
(a PIN call to the PIN-prompt number, a call to the room number) still work.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.scenarios_dialin import plain_call_scenario
from peers.sipp import Sipp, write_pin_dial, write_scenario

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IDLE_KEYS = ("calls", "legs", "ivr", "participants", "conferences", "rtp_ports_in_use")
PIN_NUMBER = "+15550100"
ROOM_NUMBER = "+15550101"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = REPO / ".venv" / "bin" / "switchboard"
    return subprocess.run([str(script), *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=REPO)


def api_ok(server: Any, method: str, path: str, body: object = None,
           status: int = 200) -> Any:
    resp = server.api(method, path, body)
    assert resp.status == status, f"{method} {path}: {resp.status} {resp.text}"
    return resp.json()


def rooms_by_name(server: Any) -> dict[str, str]:
    return {r["name"]: r["pin"] for r in api_ok(server, "GET", "/api/rooms")}


def numbers_by_number(server: Any) -> dict[str, dict[str, Any]]:
    return {n["number"]: n for n in api_ok(server, "GET", "/api/numbers")}


def mapper(server: Any, query: str) -> dict[str, Any]:
    resp = server.api("GET", f"/api/conference-mapper?{query}", auth=False)
    assert resp.status == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def participants(server: Any, room: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api_ok(server, "GET", f"/api/rooms/{room}/participants")
    return result


def assert_idle(server: Any, timeout: float = 10.0) -> None:
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        last = api_ok(server, "GET", "/api/stats")
        return all(last.get(k) == 0 for k in IDLE_KEYS)

    if not procs.wait_until(idle, timeout, 0.2):
        pytest.fail(f"server not idle: { {k: last.get(k) for k in IDLE_KEYS} }")


def call_and_check_room(server: Any, workdir: Path, name: str, scenario: Path, service: str,
                        room: str, join_timeout: float) -> None:
    sipp = Sipp(workdir, name, scenario, remote=server.sip_address, service=service,
                timeout_s=40).start()
    if not procs.wait_until(lambda: participants(server, room), join_timeout, 0.1):
        sipp.stop()
        pytest.fail(f"{name}: the caller never appeared in {room}")
    joined = participants(server, room)
    res = sipp.wait()
    assert res.ok, res.describe()
    assert len(joined) == 1 and joined[0]["kind"] == "phone", joined
    procs.wait_until(lambda: participants(server, room) == [], 5)
    assert participants(server, room) == []


def test_restart_keeps_rooms_pins_and_numbers(switchboard_server: Any,
                                              tmp_workdir: Path) -> None:
    first = switchboard_server()
    created = api_ok(first, "POST", "/api/rooms", {"name": "standup", "pin": "48213077"}, 201)
    assert {k: created[k] for k in ("name", "pin")} == {"name": "standup", "pin": "48213077"}
    # a room policy (issue 17) is kept across the restart too
    policy = api_ok(first, "POST", "/api/rooms", {
        "name": "policyroom", "pin": "61829304", "host_pin": "59372014", "lobby": True,
        "start": "hosts", "password": "sesame42", "guests": False}, 201)  # fmt: skip
    retro = api_ok(first, "POST", "/api/rooms", {"name": "retro"}, 201)
    assert retro["name"] == "retro" and retro["pin"].isdigit(), retro
    api_ok(first, "POST", "/api/numbers", {"number": PIN_NUMBER, "route": "pin"}, 201)
    api_ok(first, "POST", "/api/numbers",
           {"number": ROOM_NUMBER, "route": "room", "room": "standup"}, 201)

    # The CLI writes to the same store while the server runs.
    out = cli(first.config_path, "rooms", "add", "cliroom")
    assert out.returncode == 0, f"switchboard rooms add: {out.returncode}\n{out.stderr}"
    cliroom = json.loads(out.stdout)
    assert cliroom["name"] == "cliroom" and cliroom["pin"].isdigit(), cliroom
    expected_rooms = {"standup": "48213077", "retro": retro["pin"],
                      "cliroom": cliroom["pin"], "policyroom": "61829304"}
    assert rooms_by_name(first) == expected_rooms, "the running server sees the CLI's room"
    numbers_before = numbers_by_number(first)
    assert set(numbers_before) == {PIN_NUMBER, ROOM_NUMBER}, numbers_before
    phone_numbers_before = api_ok(first, "GET", "/api/phone-numbers")

    # SIGTERM: the server must exit by itself, with status 0.
    code = first.proc.stop(term_timeout=15.0)
    assert not first.proc.killed, f"no clean exit on SIGTERM:\n{first.log_tail(30)}"
    assert code == 0, f"exit status {code} after SIGTERM:\n{first.log_tail(30)}"

    second = switchboard_server({"store": {"path": str(first.data_dir)}})
    assert second.data_dir != first.data_dir  # the fixture made a new one; it is unused
    assert rooms_by_name(second) == expected_rooms
    assert api_ok(second, "GET", "/api/rooms/policyroom") == policy
    assert policy["has_password"] is True and "password" not in policy
    assert numbers_by_number(second) == numbers_before
    assert numbers_before[ROOM_NUMBER]["route"] == "room"
    assert numbers_before[ROOM_NUMBER]["room"] == "standup"
    assert numbers_before[PIN_NUMBER]["route"] == "pin"
    assert api_ok(second, "GET", "/api/phone-numbers") == phone_numbers_before
    assert len(phone_numbers_before) == 1, phone_numbers_before  # only the PIN number

    # The conference mapper finds every PIN, both ways.
    for room, pin in expected_rooms.items():
        by_id = mapper(second, f"id={pin}")
        assert by_id["id"] == int(pin), by_id
        assert by_id["conference"] in (room, f"{room}@" + by_id["conference"].split("@")[-1])
        assert by_id["conference"].split("@")[0] == room, by_id
        assert mapper(second, f"cid={pin}")["conference"] == by_id["conference"]
        assert mapper(second, f"conference={room}")["id"] == int(pin)
    unknown = str(int(expected_rooms["standup"]) + 1)
    assert mapper(second, f"id={unknown}")["conference"] is False

    # Calls still work: a PIN (the generated one) at the PIN number, then the room number.
    pin_call = write_pin_dial(tmp_workdir, retro["pin"], prompt_wait_ms=1500,
                              digit_gap_ms=300, hold_ms=3000, caller="15557010")
    call_and_check_room(second, tmp_workdir, "pin_after_restart", pin_call, PIN_NUMBER,
                        "retro", join_timeout=25)
    room_call = write_scenario(tmp_workdir / "room_call.xml",
                               plain_call_scenario(hold_ms=2000, caller="15557011"))
    call_and_check_room(second, tmp_workdir, "room_after_restart", room_call, ROOM_NUMBER,
                        "standup", join_timeout=5)
    assert_idle(second)
