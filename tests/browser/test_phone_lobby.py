"""Phone callers in the page's knocking list (issue 17, section 3), on the real server with
headless Chromium and real baresip phones.

A host joins with a moderator token, their fake microphone playing a steady tone. A caller
who keys the room's PIN (the lobby is on) appears in the host's knocking list with the phone
icon's kind and their masked number; the host admits them on the page, and the caller hears
the host's tone through the room. Another caller is denied on the page: they hear the
`denied` prompt, and the server hangs up. The server's log (debug level) holds neither the
PIN nor the token. "Admit everyone" on the page lets in a knocking browser and a waiting
caller at once.

Run inside a network namespace with only loopback (as root):
unshare -n -- bash -c 'ip link set lo up && .venv/bin/pytest -q tests/browser/test_phone_lobby.py'
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import phone_harness as ph
import pytest
from browser_harness import join_meeting
from phone_harness import PhoneBank, audio
from playwright.sync_api import Page, expect

SECRET = "phone-lobby-secret-0123456789abcdef"
SWITCHBOARD_CONFIG = {
    "auth": {"jwt_secret": SECRET},
    "log": {"level": "debug"},
    "bridge": {"endpoint_timeout": 5.0},
    "media": {"rtp_ports": ph.reserve_rtp_ports()},
}
ROOM = "phone-knock"
PIN = "61829305"
HOST_HZ = 700.0
CONTROL_HZ = 2500.0
PROMPTS = Path(__file__).resolve().parents[2] / "gateway" / "prompts"
MIN_POWER = 1e-5  # -47 dBFS: Chromium's noise suppression leaves a tone near -30 dBFS


@pytest.fixture
def phones(crowd: Any, module_switchboard: Any, tmp_path: Path) -> Iterator[PhoneBank]:
    workdir = tmp_path / "phones"
    workdir.mkdir()
    bank = PhoneBank(workdir)
    try:
        yield bank
    finally:
        bank.stop_all()
    ph.wait_stats(module_switchboard, {"calls": 0, "legs": 0, "lobby_calls": 0}, 15.0)


def host_token() -> str:
    claims = {"room": ROOM, "exp": int(time.time()) + 600,
              "context": {"user": {"name": "Host", "moderator": True}}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def people_panel(page: Page) -> None:
    if page.locator("#panel-people").is_hidden():
        page.click("#btn-people")
    expect(page.locator("#panel-people")).to_be_visible()


def test_a_caller_knocks_on_the_page_is_admitted_another_is_denied(
        crowd: Any, module_switchboard: Any, phones: PhoneBank,
        tmp_path: Path) -> None:  # fmt: skip
    server = module_switchboard
    server.api("POST", "/api/rooms", {"name": ROOM, "pin": PIN, "lobby": True})
    token = host_token()
    mic = ph.fake_mic_wav(tmp_path / "host.wav", HOST_HZ)
    _, page = crowd.open(f"{ROOM}?jwt={token}", audio_file=mic)
    join_meeting(page, "Host")
    expect(page.locator("#grid .tile.self")).to_have_count(1)
    people_panel(page)

    caller = phones.add("15557010", 400.0)
    ph.dial_in(server, [caller], PIN)
    entry = page.locator("#lobby-list .lobby-entry")
    expect(entry).to_have_count(1, timeout=20_000)
    expect(entry.locator(".lobby-name")).to_have_text("155***10")  # the masked number
    (waiting,) = server.api("GET", f"/api/rooms/{ROOM}/lobby")
    assert waiting["kind"] == "phone" and waiting["name"] == "155***10", waiting
    assert waiting["id"] not in ph.api_participants(server, ROOM)  # waiting: not in yet

    entry.locator("[data-action=admit]").click()
    deadline = time.monotonic() + 15.0
    while waiting["id"] not in ph.api_participants(server, ROOM):
        assert time.monotonic() < deadline, "the admitted caller is not in the room"
        page.wait_for_timeout(100)
    expect(entry).to_have_count(0)
    caller.sip.poll(6.0)  # "you are now in the meeting", then the room
    samples, rate = caller.heard(1.5)
    power = ph.bands(samples, rate, [HOST_HZ, CONTROL_HZ])
    desc = ph.describe(samples, rate, [HOST_HZ, CONTROL_HZ])
    assert power[HOST_HZ] > MIN_POWER, f"the admitted caller does not hear the host: {desc}"
    assert power[HOST_HZ] > 20 * power[CONTROL_HZ], f"not above the noise: {desc}"

    other = phones.add("15557011", 500.0)
    ph.dial_in(server, [other], PIN)
    expect(entry).to_have_count(1, timeout=20_000)
    expect(entry.locator(".lobby-name")).to_have_text("155***11")
    entry.locator("[data-action=deny]").click()
    other.wait_closed(10.0)  # the server hung up
    # what the caller heard last before the BYE: the `denied` prompt itself (not `admitted`)
    heard, rate = audio.read_wav(other.sip.last_recording().dec)
    assert rate == 8000, rate
    tail = heard[-6 * rate:]
    denied = audio.prompt_score(tail, PROMPTS / "denied.wav")
    control = audio.prompt_score(tail, PROMPTS / "admitted.wav")
    assert denied > 0.6 > 0.4 > control, (denied, control, audio.analyse(tail, rate))
    assert waiting["id"] in ph.api_participants(server, ROOM)
    assert len(ph.api_participants(server, ROOM)) == 2  # the host and the admitted caller
    caller.hangup()
    page.close()

    logged = server.log_path.read_text(errors="replace")
    assert " DEBUG " in logged
    for secret in (PIN, token):
        assert secret not in logged, "a PIN or token is in the server's log"


def test_a_caller_is_sent_back_to_the_lobby_from_the_page_and_let_in_again(
        crowd: Any, module_switchboard: Any, phones: PhoneBank,
        tmp_path: Path) -> None:  # fmt: skip
    server = module_switchboard
    room, pin = "phone-sendback", "61829306"
    server.api("POST", "/api/rooms", {"name": room, "pin": pin, "lobby": False})
    claims = {"room": room, "exp": int(time.time()) + 600,
              "context": {"user": {"name": "Host", "moderator": True}}}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    mic = ph.fake_mic_wav(tmp_path / "host.wav", HOST_HZ)
    _, page = crowd.open(f"{room}?jwt={token}", audio_file=mic)
    join_meeting(page, "Host")
    people_panel(page)
    caller = phones.add("15557012", 400.0)
    ph.dial_in(server, [caller], pin)
    deadline = time.monotonic() + 15.0
    while len(ph.api_participants(server, room)) < 2:
        assert time.monotonic() < deadline, "the caller is not in the room"
        page.wait_for_timeout(100)
    (pid,) = [p for p, v in ph.api_participants(server, room).items() if v["kind"] == "phone"]
    move = page.locator(f"#people-list [data-participant='{pid}'] [data-action='send-back']")
    expect(move).to_be_visible(timeout=10_000)
    move.click()
    entry = page.locator("#lobby-list .lobby-entry")
    expect(entry).to_have_count(1, timeout=10_000)
    (waiting,) = server.api("GET", f"/api/rooms/{room}/lobby")
    assert waiting["kind"] == "phone", waiting
    assert pid not in ph.api_participants(server, room)
    caller.sip.poll(2.5)  # "the host moved you to the lobby", then the music
    heard, rate = caller.heard(2.0)
    assert audio.rms(heard) > 0.005, f"silence in the lobby: {audio.analyse(heard, rate)}"
    entry.locator("[data-action=admit]").click()
    deadline = time.monotonic() + 15.0
    while waiting["id"] not in ph.api_participants(server, room):
        assert time.monotonic() < deadline, "the caller is not let in again"
        page.wait_for_timeout(100)
    caller.sip.poll(6.0)  # "you are now in the meeting", then the room
    samples, rate = caller.heard(1.5)
    power = ph.bands(samples, rate, [HOST_HZ, CONTROL_HZ])
    desc = ph.describe(samples, rate, [HOST_HZ, CONTROL_HZ])
    assert power[HOST_HZ] > MIN_POWER and power[HOST_HZ] > 20 * power[CONTROL_HZ], desc
    caller.hangup()
    page.close()


def test_admit_everyone_lets_in_a_knocking_browser_and_a_waiting_caller(
        crowd: Any, module_switchboard: Any, phones: PhoneBank,
        tmp_path: Path) -> None:  # fmt: skip
    server = module_switchboard
    room, pin = "phone-admit-all", "61829307"
    server.api("POST", "/api/rooms", {"name": room, "pin": pin, "lobby": True})
    claims = {"room": room, "exp": int(time.time()) + 600,
              "context": {"user": {"name": "Host", "moderator": True}}}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    mic = ph.fake_mic_wav(tmp_path / "host.wav", HOST_HZ)
    _, page = crowd.open(f"{room}?jwt={token}", audio_file=mic)
    join_meeting(page, "Host")
    expect(page.locator("#grid .tile.self")).to_have_count(1)
    people_panel(page)

    _, guest = crowd.open(room)
    guest.wait_for_selector("#join-button:not([disabled])")
    guest.fill("#name-input", "Guest Browser")
    guest.click("#join-button")
    expect(guest.locator("#lobby-wait")).to_be_visible(timeout=10_000)
    caller = phones.add("15557013", 400.0)
    ph.dial_in(server, [caller], pin)
    entry = page.locator("#lobby-list .lobby-entry")
    expect(entry).to_have_count(2, timeout=20_000)
    expect(entry.locator(".lobby-name")).to_have_text(["Guest Browser", "155***13"])
    waiting = {w["kind"]: w["id"] for w in server.api("GET", f"/api/rooms/{room}/lobby")}
    assert set(waiting) == {"browser", "phone"}, waiting

    page.click("#lobby-admit-all")
    deadline = time.monotonic() + 15.0
    while not set(waiting.values()) <= set(ph.api_participants(server, room)):
        assert time.monotonic() < deadline, "admit everyone did not let both in"
        page.wait_for_timeout(100)
    expect(entry).to_have_count(0)
    assert server.api("GET", f"/api/rooms/{room}/lobby") == []
    expect(guest.locator("#meeting")).to_be_visible(timeout=10_000)
    expect(guest.locator("#grid .tile")).to_have_count(3, timeout=15_000)
    expect(page.locator("#grid .tile")).to_have_count(3, timeout=15_000)
    caller.sip.poll(6.0)  # "you are now in the meeting", then the room
    samples, rate = caller.heard(1.5)
    power = ph.bands(samples, rate, [HOST_HZ, CONTROL_HZ])
    desc = ph.describe(samples, rate, [HOST_HZ, CONTROL_HZ])
    assert power[HOST_HZ] > MIN_POWER and power[HOST_HZ] > 20 * power[CONTROL_HZ], desc
    caller.hangup()
    for each in (guest, page):
        each.close()
