"""Phones under the room policy, with real baresip phones against the real server (issue 17,
section 3).

- A caller who keys the PIN of a room with the lobby on waits: the lobby lists them (kind
  "phone", their masked number), they hear the waiting prompt and the quiet music and not
  the room; admitted from the API, they join under the id they waited with and hear the
  room (a host phone's tone). The host phone came in with the room's host PIN.
- Another caller is denied: they hear so, then the server sends BYE.
- A room with a password asks for it after the PIN: a wrong one is told and asked again, the
  right one skips the lobby; three wrong ones end the call. Every wrong one counts.
- A room whose password has letters cannot be typed: the caller waits in the lobby.
- A hosts-only room: a guest caller who comes first waits (is not cut off) and joins when a
  caller with the host PIN arrives; the host's `*2` locks and unlocks the room, `*1` lets in
  everyone waiting.
- Every test scans the server's log, at debug level, for the PINs, host PINs and passwords.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SwitchboardServer
from peers import audio, procs
from peers.baresip import Baresip, BaresipError

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

CONFIG = {"log": {"level": "debug"}}
PIN = "48213077"
HOST_PIN = "59372014"
PASSWORD = "73910482"
WRONG_PASSWORD = "26481359"
HOST_HZ = 1000.0
GUEST_HZ = 400.0
KEY_GAP_S = 0.35
PROMPTS = Path(__file__).resolve().parents[2] / "gateway" / "prompts"
ZERO_COUNTS = ("calls", "legs", "ivr", "lobby_calls", "participants", "rtp_ports_in_use")


# --- helpers -------------------------------------------------------------------------------


def make_room(server: SwitchboardServer, name: str, **policy: Any) -> dict[str, Any]:
    resp = server.api("POST", "/api/rooms", {"name": name, "pin": PIN, **policy})
    assert resp.status == 201, f"create room: HTTP {resp.status} {resp.text}"
    room: dict[str, Any] = resp.json()
    assert "password" not in room
    return room


def get(server: SwitchboardServer, path: str) -> Any:
    resp = server.api("GET", path)
    assert resp.status == 200, f"GET {path}: HTTP {resp.status} {resp.text}"
    return resp.json()


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    result: Any = None

    def check() -> bool:
        nonlocal result
        result = predicate()
        return bool(result)

    if not procs.wait_until(check, timeout, 0.1):
        pytest.fail(f"not within {timeout:.0f} s: {what} (last: {result!r})", pytrace=False)
    return result


def lobby(server: SwitchboardServer, room: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = get(server, f"/api/rooms/{room}/lobby")
    return entries


def participants(server: SwitchboardServer, room: str) -> list[dict[str, Any]]:
    people: list[dict[str, Any]] = get(server, f"/api/rooms/{room}/participants")
    return people


def wait_counts_zero(server: SwitchboardServer, timeout: float = 20.0) -> dict[str, int]:
    last: dict[str, int] = {}

    def zero() -> bool:
        nonlocal last
        last = get(server, "/api/stats")
        return all(last.get(k) == 0 for k in ZERO_COUNTS)

    if not procs.wait_until(zero, timeout, 0.2):
        pytest.fail(f"not back to zero: { {k: last.get(k) for k in ZERO_COUNTS} }",
                    pytrace=False)  # fmt: skip
    return last


def assert_no_secrets(server: SwitchboardServer, *secrets: str) -> None:
    """No PIN, host PIN or password in any line of the server's log (debug level)."""
    text = server.log_text()
    assert " DEBUG " in text, "the server did not log at debug level: the scan proves nothing"
    for secret in secrets:
        lines = [line for line in text.splitlines() if secret in line]
        assert not lines, f"a secret is in the server's log: {lines[:3]}"


def phone(workdir: Path, name: str, user: str, tone_hz: float) -> Baresip:
    source = audio.make_tone_wav(workdir / f"{name}.wav", tone_hz, 150.0, amplitude=0.25)
    return Baresip(workdir, name, user=user, source_wav=source, codecs=("PCMU/8000/1",),
                   timeout_s=120).start()  # fmt: skip


def keys(p: Baresip, digits: str) -> None:
    p.send_dtmf(digits, KEY_GAP_S)


def dial(server: SwitchboardServer, p: Baresip, digits: str) -> None:
    """Dial, hear the welcome prompt a moment, key `digits`."""
    p.dial(server.sip_uri("1000"))
    p.wait_event("CALL_ESTABLISHED", 15)
    p.poll(1.0)
    keys(p, digits)


def prompt_score(heard: audio.Samples, name: str) -> float:
    """How clearly a shipped prompt (gateway/prompts/NAME.wav) is in what a phone heard."""
    return audio.prompt_score(heard, PROMPTS / f"{name}.wav")


def closed_by_server(p: Baresip, timeout: float) -> bool:
    try:
        p.wait_event("CALL_CLOSED", timeout)
    except BaresipError:
        return False
    return True


def quit_all(*phones: Baresip) -> None:
    for p in phones:
        try:
            p.quit()
        except (BaresipError, OSError) as exc:  # the fixture stops it by PID then
            log.warning("baresip %s: quit failed: %s", p.name, exc)


# --- tests ---------------------------------------------------------------------------------


def test_a_caller_waits_in_the_lobby_is_admitted_and_hears_the_room(
        switchboard_server: Any, tmp_workdir: Path) -> None:  # fmt: skip
    server = switchboard_server(CONFIG)
    make_room(server, "lobby-room", host_pin=HOST_PIN, lobby=True)
    host = phone(tmp_workdir, "host", "15557000", HOST_HZ)
    guest = phone(tmp_workdir, "guest", "15557001", GUEST_HZ)
    try:
        dial(server, host, HOST_PIN + "#")  # the host PIN: in at once, lobby or not
        until(lambda: len(participants(server, "lobby-room")) == 1, 20, "the host is in")
        dial(server, guest, PIN + "#")
        (entry,) = until(lambda: lobby(server, "lobby-room"), 20, "the guest knocks")
        assert entry["kind"] == "phone" and entry["name"] == "155***01", entry
        assert len(participants(server, "lobby-room")) == 1  # waiting is not in the room

        guest.poll(5.0)  # the waiting prompt, then the music
        heard, rate = guest.heard(4.5)
        assert audio.rms(heard) > 0.003, f"silence in the lobby: {audio.analyse(heard, rate)}"
        assert audio.tone_ratio(heard, rate, HOST_HZ, min_rms=0.003) < 0.1, \
            "a waiting caller hears the room"  # fmt: skip

        resp = server.api("POST", f"/api/rooms/lobby-room/lobby/{entry['id']}",
                          {"action": "admit"})  # fmt: skip
        assert resp.status == 200, resp.text
        people = until(lambda: (p := participants(server, "lobby-room")) and len(p) == 2 and p,
                       10, "the admitted guest is in")  # fmt: skip
        assert entry["id"] in {p["id"] for p in people}  # one id from knocking to leaving
        assert lobby(server, "lobby-room") == []
        guest.poll(4.5)  # "you are now in the meeting", then the room
        heard, rate = guest.heard(2.0)
        assert audio.hears_tone(heard, rate, HOST_HZ), \
            f"the admitted guest does not hear the host: {audio.analyse(heard, rate)}"
        heard, rate = host.heard(2.0)
        assert audio.hears_tone(heard, rate, GUEST_HZ), \
            f"the host does not hear the admitted guest: {audio.analyse(heard, rate)}"
        guest.hangup()
        host.hangup()
    finally:
        quit_all(host, guest)
    wait_counts_zero(server)
    assert_no_secrets(server, PIN, HOST_PIN)


def test_a_denied_caller_hears_so_then_the_server_hangs_up(
        switchboard_server: Any, tmp_workdir: Path) -> None:  # fmt: skip
    server = switchboard_server(CONFIG)
    make_room(server, "deny-room", lobby=True)
    guest = phone(tmp_workdir, "guest", "15557002", GUEST_HZ)
    try:
        dial(server, guest, PIN + "#")
        (entry,) = until(lambda: lobby(server, "deny-room"), 20, "the guest knocks")
        guest.poll(1.0)
        resp = server.api("POST", f"/api/rooms/deny-room/lobby/{entry['id']}",
                          {"action": "deny"})  # fmt: skip
        assert resp.status == 200, resp.text
        assert closed_by_server(guest, 10.0), "the server did not hang up on a denied caller"
        assert lobby(server, "deny-room") == [] and participants(server, "deny-room") == []
        # what the caller heard last, before the BYE: the `denied` prompt itself (and not,
        # say, `admitted`, as a control)
        heard, rate = audio.read_wav(guest.last_recording().dec)
        assert rate == 8000, rate
        tail = heard[-6 * rate:]
        denied, control = prompt_score(tail, "denied"), prompt_score(tail, "admitted")
        log.info("figure: denied prompt score %.2f, control %.2f", denied, control)
        assert denied > 0.6 > 0.4 > control, (denied, control, audio.analyse(tail, rate))
    finally:
        quit_all(guest)
    wait_counts_zero(server)
    assert_no_secrets(server, PIN)


def test_a_password_room_asks_for_the_password(switchboard_server: Any,
                                               tmp_workdir: Path) -> None:
    server = switchboard_server(CONFIG)
    make_room(server, "password-room", password=PASSWORD, lobby=True)
    before = get(server, "/api/stats")["password_failures"]
    right = phone(tmp_workdir, "right", "15557003", GUEST_HZ)
    wrong = phone(tmp_workdir, "wrong", "15557004", HOST_HZ)
    try:
        dial(server, right, PIN + "#")
        right.poll(1.0)  # "this meeting has a password..."
        keys(right, WRONG_PASSWORD + "#")
        right.poll(1.5)  # checked, "that password is not right"
        keys(right, PASSWORD + "#")
        # The right password skips the lobby (which is on).
        until(lambda: len(participants(server, "password-room")) == 1, 15,
              "the caller with the right password is in")  # fmt: skip
        assert lobby(server, "password-room") == []

        dial(server, wrong, PIN + "#")
        for attempt in range(3):
            wrong.poll(1.5)
            keys(wrong, f"{WRONG_PASSWORD[:-1]}{attempt}#")
        assert closed_by_server(wrong, 15.0), "three wrong passwords did not end the call"
        assert len(participants(server, "password-room")) == 1
        right.hangup()
    finally:
        quit_all(right, wrong)
    after = wait_counts_zero(server)
    assert after["password_failures"] == before + 4, after
    assert_no_secrets(server, PIN, PASSWORD, WRONG_PASSWORD,
                      *(f"{WRONG_PASSWORD[:-1]}{n}" for n in range(3)))


def test_a_password_with_letters_sends_the_caller_to_the_lobby(
        switchboard_server: Any, tmp_workdir: Path) -> None:  # fmt: skip
    server = switchboard_server(CONFIG)
    make_room(server, "word-room", password="open sesame")  # lobby off: the caller waits still
    guest = phone(tmp_workdir, "guest", "15557005", GUEST_HZ)
    try:
        dial(server, guest, PIN + "#")
        (entry,) = until(lambda: lobby(server, "word-room"), 20, "the caller knocks")
        assert entry["kind"] == "phone"
        assert participants(server, "word-room") == []
        guest.hangup()
        until(lambda: lobby(server, "word-room") == [], 10, "a caller who hangs up leaves")
    finally:
        quit_all(guest)
    wait_counts_zero(server)
    assert_no_secrets(server, PIN, "open sesame")


def test_the_host_pin_starts_a_hosts_only_room_for_a_waiting_caller(
        switchboard_server: Any, tmp_workdir: Path) -> None:  # fmt: skip
    server = switchboard_server(CONFIG)
    make_room(server, "hosts-room", host_pin=HOST_PIN, start="hosts")
    guest = phone(tmp_workdir, "guest", "15557006", GUEST_HZ)
    host = phone(tmp_workdir, "host", "15557007", HOST_HZ)
    late = phone(tmp_workdir, "late", "15557008", 1700.0)
    try:
        dial(server, guest, PIN + "#")  # before the host: waits, is not cut off
        until(lambda: lobby(server, "hosts-room"), 20, "the early caller waits")
        guest.poll(3.0)
        assert not any(e.type == "CALL_CLOSED" for e in guest.events)
        assert participants(server, "hosts-room") == []

        dial(server, host, HOST_PIN + "#")
        until(lambda: len(participants(server, "hosts-room")) == 2, 20,
              "the host's arrival lets the early caller in")  # fmt: skip
        assert lobby(server, "hosts-room") == []
        guest.poll(4.5)
        heard, rate = guest.heard(2.0)
        assert audio.hears_tone(heard, rate, HOST_HZ, min_ratio=0.3), \
            f"the early caller does not hear the host: {audio.analyse(heard, rate)}"

        host.poll(6.0)  # the host's keys prompt
        keys(host, "*2")  # lock: the lobby on
        until(lambda: get(server, "/api/rooms/hosts-room")["lobby"] is True, 10, "locked")
        dial(server, late, PIN + "#")
        (entry,) = until(lambda: lobby(server, "hosts-room"), 20, "a new caller knocks")
        assert entry["kind"] == "phone"
        host.poll(1.0)
        keys(host, "*1")  # let everyone waiting in
        until(lambda: len(participants(server, "hosts-room")) == 3, 10, "*1 admits")
        keys(host, "*2")  # unlock
        until(lambda: get(server, "/api/rooms/hosts-room")["lobby"] is False, 10, "unlocked")
        for p in (guest, host, late):
            p.hangup()
    finally:
        quit_all(guest, host, late)
    wait_counts_zero(server)
    assert_no_secrets(server, PIN, HOST_PIN)
