"""Attacks on the PIN, run as an attacker runs them, against the real server (issue 13).

- A caller that is not a trusted peer adds `X-Room-Name` to skip the PIN: it lands in the PIN
  prompt and is not in the room until it keys the PIN; a known and an unknown room get the
  same answer. A caller from a trusted peer (127.0.0.2 here) goes straight in.
- Parallel PIN guessing: 50 calls at once from one address, three wrong PINs each, make at
  most `max_failures` PIN lookups (they made 150); many addresses together keep to the
  global rate of lookups, while a genuine caller keying the right PIN still gets in.
- Phones count against `meetings.max_participants`: a third caller to a room of two hears
  "this meeting is full" and gets the server's BYE; a browser is refused too.
- The log scan: a whole session at log level debug (a room made with the admin token, PINs
  keyed by RFC 4733 and SIP INFO, the conference mapper, *6) leaves neither the PIN, nor the
  token, nor any digit in the log; the data directory and the database are private.

Attackers send from other loopback addresses (sipp binds `-i 127.0.0.x`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import UNSHED_SIP_LIMITS
from peers import procs, scenarios
from peers.rtp_receiver import RtpReceiver
from peers.scenarios_dialin import info_pin_scenario, plain_call_scenario, with_sdp_media_port
from peers.sipp import Sipp, write_pin_dial, write_scenario
from test_dialin_sipp import (
    assert_idle,
    participants,
    prompt_similarity,
    stats,
    wait_for,
)

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

ROOM = "boardroom"
PIN = "73914826"
TRUSTED = "127.0.0.2"


def create_room(server: Any, name: str = ROOM, pin: str | None = PIN) -> str:
    body = {"name": name} if pin is None else {"name": name, "pin": pin}
    resp = server.api("POST", "/api/rooms", body)
    assert resp.status == 201, resp.text
    made: str = resp.json()["pin"]
    return made


def sipp_from(address: str, workdir: Path, name: str, scenario: Path, server: Any,
              service: str = "9999", timeout_s: float = 40.0, **kwargs: Any) -> Sipp:
    """A sipp caller whose SIP and RTP come from `address` (another loopback address)."""
    extra = list(kwargs.pop("extra_args", ()))
    return Sipp(workdir, name, scenario, remote=server.sip_address, service=service,
                timeout_s=timeout_s, extra_args=["-i", address, "-mi", address, *extra],
                **kwargs)


def sip_responses(sipp: Sipp) -> list[str]:
    """The status lines sipp received, in order ("SIP/2.0 200 OK", ...)."""
    assert sipp.message_path is not None
    text = sipp.message_path.read_text(errors="replace")
    return re.findall(r"^SIP/2\.0 (\d{3} [^\r\n]*)", text, re.M)


def keyed_scenario(keys_before: str, keys_after: str, *, caller: str, prompt_wait_ms: int,
                   join_wait_ms: int, hold_ms: int, pcap_dir: Path) -> str:
    """INVITE, 200, ACK; key `keys_before` (RFC 4733); wait `join_wait_ms`; key
    `keys_after`; hold `hold_ms`; BYE."""
    pcaps = iter(scenarios.write_dtmf_pcaps(keys_before + keys_after, pcap_dir, gap_ms=300))
    return "".join([
        scenarios._HEAD.format(name="keyed", generator="test_attack_pin.keyed_scenario"),
        scenarios._INVITE.format(caller=caller, headers=""),
        scenarios._pause(prompt_wait_ms, "The PIN prompt."),
        scenarios._keys(keys_before, 300, pcaps),
        scenarios._pause(join_wait_ms, "Joining."),
        scenarios._keys(keys_after, 300, pcaps),
        scenarios._pause(hold_ms, "In the room."),
        scenarios._BYE.format(caller=caller),
        scenarios._TAIL,
    ])


def guess_scenario(*, attempts: int, gap_ms: int, caller: str = "[call_number]",
                   pcap_dir: Path) -> str:
    """A guesser: INVITE, 200, ACK; key the wrong PIN "1111#" `attempts` times, `gap_ms`
    apart, then BYE (the server may hang up first: sipp answers that BYE itself)."""
    keys = "1111#" * attempts
    pcaps = iter(scenarios.write_dtmf_pcaps(keys, pcap_dir, gap_ms=150))
    body = [scenarios._HEAD.format(name="guess", generator="test_attack_pin.guess_scenario"),
            scenarios._INVITE.format(caller=caller, headers=""),
            scenarios._pause(300)]
    for _ in range(attempts):
        body.append(scenarios._keys("1111#", 150, pcaps))
        body.append(scenarios._pause(gap_ms))
    body += [scenarios._BYE.format(caller=caller), scenarios._TAIL]
    return "".join(body)


def server_hangs_up_scenario(room: str, caller: str) -> str:
    """INVITE with X-Room-Name, 200, ACK, then the server's BYE (within 15 s), 200."""
    return "".join([
        scenarios._HEAD.format(name="hung up", generator="test_attack_pin"),
        scenarios._INVITE.format(caller=caller,
                                 headers=scenarios._headers({"X-Room-Name": room})),
        scenarios._RECV_BYE.format(caller=caller, timeout_ms=15000),
        scenarios._TAIL,
    ])


# --- 1. a room header from anyone else is ignored --------------------------------------------


def test_room_header_from_an_untrusted_caller_gets_the_pin_prompt(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server({"sip": {"trusted_peers": [TRUSTED]}})
    create_room(server)
    scenario = write_pin_dial(tmp_workdir, PIN, prompt_wait_ms=3000, digit_gap_ms=300,
                              hold_ms=3000, caller="15557100",
                              headers={"X-Room-Name": ROOM})
    sipp = sipp_from(procs.LOOPBACK, tmp_workdir, "untrusted", scenario, server).start()
    # In the PIN prompt, not in the room, until the PIN is keyed (3 s in).
    wait_for(lambda: stats(server)["ivr"] == 1, 5, "the caller is in the PIN prompt")
    assert participants(server, ROOM) == []
    took = wait_for(lambda: participants(server, ROOM), 20, "the caller joins after its PIN")
    res = sipp.wait()
    assert res.ok, res.describe()
    assert took > 2.0, f"in the room {took:.1f} s after the prompt began: the PIN was skipped"
    text = server.log_text()
    assert "X-Room-Name from an untrusted peer ignored" in text
    assert "PIN IVR started" in text and "PIN accepted" in text
    wait_for(lambda: participants(server, ROOM) == [], 5, "the caller leaves")

    # A known and an unknown room: the same answers, the same prompt (no 404 oracle).
    answers = {}
    for room in (ROOM, "nosuchroom"):
        xml = plain_call_scenario(hold_ms=1500, caller="15557101",
                                  headers={"X-Room-Name": room})
        path = write_scenario(tmp_workdir / f"probe_{room}.xml", xml)
        probe = sipp_from(procs.LOOPBACK, tmp_workdir, f"probe_{room}", path, server).start()
        res = probe.wait()
        assert res.ok, res.describe()
        answers[room] = sip_responses(probe)
    assert answers[ROOM] == answers["nosuchroom"], answers
    assert answers[ROOM][-2:] == ["200 OK", "200 OK"], answers  # INVITE, BYE
    assert participants(server, ROOM) == []
    assert_idle(server)


def test_room_header_from_a_trusted_peer_goes_straight_in(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server({"sip": {"trusted_peers": [TRUSTED]}})
    create_room(server)
    xml = plain_call_scenario(hold_ms=3000, caller="15557102", headers={"X-Room-Name": ROOM})
    path = write_scenario(tmp_workdir / "trusted.xml", xml)
    sipp = sipp_from(TRUSTED, tmp_workdir, "trusted", path, server).start()
    took = wait_for(lambda: participants(server, ROOM), 10, "the trusted caller is in")
    res = sipp.wait()
    assert res.ok, res.describe()
    assert took < 3.0, f"joining took {took:.1f} s"  # the welcome prompt alone is 4.8 s
    assert "PIN IVR started" not in server.log_text()
    # A trusted peer still gets the honest answer for a room that does not exist.
    xml = plain_call_scenario(hold_ms=500, caller="15557103",
                              headers={"X-Room-Name": "nosuchroom"})
    path = write_scenario(tmp_workdir / "trusted_404.xml", xml)
    probe = sipp_from(TRUSTED, tmp_workdir, "trusted_404", path, server, timeout_s=10,
                      timeout_error=False).start()
    probe.wait()
    assert sip_responses(probe)[-1].startswith("404"), sip_responses(probe)
    wait_for(lambda: participants(server, ROOM) == [], 5, "the caller leaves")
    assert_idle(server)


# --- 2. parallel PIN guessing -----------------------------------------------------------------


def test_parallel_guessing_from_one_address_is_limited(switchboard_server: Any,
                                                       tmp_workdir: Path) -> None:
    """50 calls at once from one untrusted address, each keying three wrong PINs (and each
    with its own caller number): before the fix they made 150 lookups."""
    server = switchboard_server({
        # the SIP shedding in front would drop most of these INVITEs before the throttle
        "sip": {"trusted_peers": [TRUSTED], "limits": UNSHED_SIP_LIMITS},
        "ivr": {"throttle": {"max_failures": 10, "max_concurrent_per_source": 5}},
    })
    create_room(server)
    xml = guess_scenario(attempts=3, gap_ms=1200, pcap_dir=tmp_workdir / "guess_dtmf")
    path = write_scenario(tmp_workdir / "guess.xml", xml)
    before = stats(server)
    flood = sipp_from(procs.LOOPBACK, tmp_workdir, "flood", path, server, calls=50, rate=50,
                      limit=50, timeout_s=40, timeout_error=False, trace_msg=False).start()
    flood.wait()
    after = stats(server)
    lookups = after["pin_failures"] - before["pin_failures"]
    refused = after["calls_rejected"] - before["calls_rejected"]
    log.info("50 parallel guessers: %d PIN lookups, %d calls refused", lookups, refused)
    assert 1 <= lookups <= 10, after
    assert refused >= 40, after
    text = server.log_text()
    assert "already has 5 calls in PIN entry" in text
    assert participants(server, ROOM) == []
    assert_idle(server, timeout=20)


def test_global_limit_holds_across_addresses_and_a_genuine_caller_gets_in(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    rate, burst = 4.0, 4
    server = switchboard_server({
        "sip": {"trusted_peers": ["127.0.0.250"]},
        "ivr": {"throttle": {"max_failures": 1000, "max_concurrent_per_source": 5,
                             "global_checks_per_second": rate, "global_checks_burst": burst,
                             "max_check_wait": 30.0}},
    })
    create_room(server)
    xml = guess_scenario(attempts=6, gap_ms=600, pcap_dir=tmp_workdir / "guess_dtmf")
    path = write_scenario(tmp_workdir / "guess.xml", xml)
    start_failures = stats(server)["pin_failures"]
    started = time.monotonic()
    guessers = [sipp_from(f"127.0.0.{10 + i}", tmp_workdir, f"guess{i}", path, server,
                          calls=10, rate=5, limit=5, timeout_s=60, timeout_error=False,
                          trace_msg=False).start()
                for i in range(6)]
    try:
        time.sleep(3.0)
        genuine_xml = write_pin_dial(tmp_workdir, PIN, name="genuine", prompt_wait_ms=600,
                                     digit_gap_ms=200, hold_ms=12000, caller="15557200")
        genuine = sipp_from("127.0.0.77", tmp_workdir, "genuine", genuine_xml, server,
                            timeout_s=60).start()
        samples = []
        deadline = time.monotonic() + 25
        joined_after = None
        while time.monotonic() < deadline:
            samples.append((time.monotonic(), stats(server)["pin_failures"]))
            if joined_after is None and participants(server, ROOM):
                joined_after = time.monotonic() - started - 3.0
            if joined_after is not None and not any(g.running() for g in guessers):
                break
            time.sleep(0.5)
        genuine.wait()
    finally:
        for g in guessers:
            if g.running():
                g.stop()
    elapsed = samples[-1][0] - started
    lookups = samples[-1][1] - start_failures
    log.info("global limit: %d wrong-PIN lookups in %.1f s (limit %g/s, burst %d); "
             "genuine caller in after %s s", lookups, elapsed, rate, burst, joined_after)
    assert joined_after is not None, "the genuine caller never got into the room"
    # Every lookup the guessers got was a wrong PIN; all of them together kept to the rate.
    assert lookups <= burst + rate * elapsed + 1, (lookups, elapsed)
    for (t0, f0), (t1, f1) in zip(samples, samples[4:], strict=False):
        assert f1 - f0 <= burst + rate * (t1 - t0) + 2, ((t0, f0), (t1, f1))
    text = server.log_text()
    assert "PIN lookups at their limit" in text  # the guessers wanted more than the rate
    assert lookups >= rate * 5, lookups  # and they got the rate, not a trickle
    assert_idle(server, timeout=40)


# --- 3. phones count against the participant cap -----------------------------------------------


async def _browser_join(server: Any, room: str) -> tuple[list[dict[str, Any]], int | None]:
    """A WebSocket `join`; returns the messages received and the close code."""
    messages: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            server.base_url + "/ws", headers={"Origin": server.base_url},
            timeout=aiohttp.ClientWSTimeout(ws_receive=10)) as ws:
        await ws.send_str(json.dumps({"type": "join", "version": 1, "room": room,
                                      "name": "Browser", "audio": False, "video": False}))
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                messages.append(json.loads(msg.data))
        return messages, ws.close_code


def test_phones_count_against_max_participants(switchboard_server: Any,
                                               tmp_workdir: Path) -> None:
    server = switchboard_server({"meetings": {"max_participants": 2}})
    create_room(server)
    callers = []
    for i in range(2):
        xml = plain_call_scenario(hold_ms=15000, caller=f"1555730{i}",
                                  headers={"X-Room-Name": ROOM})
        path = write_scenario(tmp_workdir / f"member{i}.xml", xml)
        callers.append(Sipp(tmp_workdir, f"member{i}", path, remote=server.sip_address,
                            service="9999", timeout_s=40).start())
    wait_for(lambda: len(participants(server, ROOM)) == 2, 10, "two phones in the room")

    third = write_scenario(tmp_workdir / "third.xml",
                           server_hangs_up_scenario(ROOM, caller="15557309"))
    with RtpReceiver() as rx:
        third.write_text(with_sdp_media_port(third.read_text(), rx.port))
        res = Sipp(tmp_workdir, "third", third, remote=server.sip_address, service="9999",
                   timeout_s=30).start().wait()
        _, heard = rx.audio(2.0)
    assert res.ok, res.describe()  # answered, then the server's BYE
    full = prompt_similarity(heard, "room_full")
    log.info("third caller: room_full similarity %.3f", full)
    assert full > 0.7, f"the third caller did not hear room_full ({full:.2f})"
    assert len(participants(server, ROOM)) == 2

    messages, code = asyncio.run(_browser_join(server, ROOM))
    assert code == 4003, (code, messages)
    assert any(m.get("code") == "room-full" for m in messages), messages

    for sipp in callers:
        assert sipp.wait().ok
    wait_for(lambda: participants(server, ROOM) == [], 5, "the phones leave")
    assert_idle(server)


# --- 4. no secret in the log ------------------------------------------------------------------


def test_no_pin_token_or_digit_in_a_debug_log(switchboard_server: Any,
                                              tmp_workdir: Path) -> None:
    server = switchboard_server({"log": {"level": "debug"}})
    data = server.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("switchboard.db", "switchboard.db-wal", "switchboard.db-shm"):
        if (data / name).exists():
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    pin = create_room(server, pin=None)  # the server makes the PIN
    assert re.fullmatch(r"\d{8}", pin), pin
    for query in (f"conference={ROOM}@conference.example.com", f"id={pin}"):
        resp = server.api("GET", f"/api/conference-mapper?{query}", auth=False)
        assert resp.status in (200, 403, 404, 429), resp.text

    # RFC 4733: the PIN, then *6 in the room (mute), held a while.
    xml = keyed_scenario(pin + "#", "*6", caller="15557400", prompt_wait_ms=1500,
                         join_wait_ms=4000, hold_ms=3000, pcap_dir=tmp_workdir / "keys")
    path = write_scenario(tmp_workdir / "keyed.xml", xml)
    sipp = Sipp(tmp_workdir, "keyed", path, remote=server.sip_address, service="9999",
                timeout_s=40).start()
    wait_for(lambda: participants(server, ROOM), 20, "the RFC 4733 caller is in")
    wait_for(lambda: any(p["muted"] for p in participants(server, ROOM)), 10,
             "the caller muted itself with *6")
    assert sipp.wait().ok

    # SIP INFO: the PIN again (the bodies carry Signal=<digit>).
    path = write_scenario(tmp_workdir / "info.xml",
                          info_pin_scenario(pin, prompt_wait_ms=1000, digit_gap_ms=200,
                                            hold_ms=2000, caller="15557401"))
    sipp = Sipp(tmp_workdir, "info", path, remote=server.sip_address, service="9999",
                timeout_s=40).start()
    wait_for(lambda: participants(server, ROOM), 20, "the INFO caller is in")
    assert sipp.wait().ok
    wait_for(lambda: participants(server, ROOM) == [], 5, "the callers leave")
    assert_idle(server)

    text = server.log_text()
    assert "DEBUG" in text, "the server did not log at debug level"
    assert len(re.findall(r"DTMF: a digit", text)) >= 2 * len(pin + "#") + 2
    assert pin not in text, "the PIN is in the log"
    assert server.token not in text, "the admin token is in the log"
    digits = re.findall(r"DTMF:? ['\"]?[0-9#*A-D]['\"]?(?: |$)", text, re.M)
    assert not digits, digits[:5]  # "DTMF 5 (RFC 4733)", "DTMF 5", "sending DTMF 5"
    assert not re.search(r"Signal=", text), "a SIP INFO body is in the log"
