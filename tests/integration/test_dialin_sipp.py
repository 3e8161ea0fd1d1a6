"""Dial-in acceptance against the real server, with sipp as the phone.

What these prove (issue 2, section 5):
- a call to a number routed to the PIN prompt hears the welcome prompt (its RTP arrives at a
  socket the test owns and matches gateway/prompts/welcome.wav), keys a PIN as RFC 2833
  events, appears in the room's participant list, hangs up, and leaves nothing behind;
- three wrong PINs end the call from the server's side (its BYE);
- a PIN keyed by SIP INFO works like RFC 2833;
- out-of-dialog OPTIONS, an unknown method and a BYE for no dialog get the right answers;
- PIN guessing across calls is throttled (403 for the next call);
- a number routed to a room joins at once, without the PIN prompt.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peers import audio, procs
from peers.rtp_receiver import RtpReceiver
from peers.scenarios_dialin import (
    codec_change_scenario,
    info_pin_scenario,
    plain_call_scenario,
    rejected_invite_scenario,
    request_scenario,
    with_sdp_media_port,
)
from peers.sipp import Sipp, run_sipp, write_pin_dial, write_scenario, write_wrong_pin

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "gateway" / "prompts"
ROOM = "standup"
PIN = "48213077"  # a repeated digit ("77") must count twice
PIN_NUMBER = "+15550100"
ROOM_NUMBER = "+15550101"
IDLE_KEYS = ("calls", "legs", "ivr", "participants", "conferences", "rtp_ports_in_use")


# --- helpers -------------------------------------------------------------------------------


def create_room(server: Any, name: str = ROOM, pin: str = PIN) -> None:
    resp = server.api("POST", "/api/rooms", {"name": name, "pin": pin})
    assert resp.status == 201, resp.text
    created = resp.json()  # the room's policy comes with it (issue 17)
    assert {k: created[k] for k in ("name", "pin")} == {"name": name, "pin": pin}


def add_number(server: Any, number: str, route: str, room: str | None = None) -> None:
    body: dict[str, str] = {"number": number, "route": route}
    if room is not None:
        body["room"] = room
    resp = server.api("POST", "/api/numbers", body)
    assert resp.status in (200, 201), resp.text


def participants(server: Any, room: str = ROOM) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{room}/participants")
    assert resp.status == 200, resp.text
    result: list[dict[str, Any]] = resp.json()
    return result


def stats(server: Any) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, resp.text
    result: dict[str, int] = resp.json()
    return result


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.1) -> float:
    """Poll until `predicate()` is truthy; returns the seconds it took; fails after
    `timeout`."""
    start = time.monotonic()
    if not procs.wait_until(predicate, timeout, interval):
        pytest.fail(f"not within {timeout:.0f} s: {what}")
    return time.monotonic() - start


def assert_idle(server: Any, timeout: float = 10.0) -> dict[str, int]:
    """The server gets back to no calls, legs, participants or RTP ports in use."""
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        last = stats(server)
        return all(last.get(k) == 0 for k in IDLE_KEYS)

    if not procs.wait_until(idle, timeout, 0.2):
        left = {k: last.get(k) for k in IDLE_KEYS}
        pytest.fail(f"server not idle {timeout:.0f} s after the call: {left}")
    return last


def sipp_call(workdir: Path, name: str, scenario: Path, server: Any, service: str,
              timeout_s: float = 40.0, **kwargs: Any) -> Sipp:
    return Sipp(workdir, name, scenario, remote=server.sip_address, service=service,
                timeout_s=timeout_s, **kwargs).start()


def dtmf_in_log(log_text: str, kind: str = "RFC 4733") -> int:
    """How many DTMF keys the server logged receiving by `kind` (never which: PINs)."""
    return len(re.findall(r"DTMF: a digit \(" + re.escape(kind) + r"\)", log_text))


def prompt_similarity(heard: np.ndarray, prompt_name: str, max_lag_s: float = 1.0) -> float:
    """The best normalized correlation of `heard` against a shipped prompt, over lags of up
    to `max_lag_s` either way (the prompt may start a little before or after the first
    packet): about 1.0 when the same audio went through G.711, near 0 for other audio."""
    ref, rate = audio.read_wav(PROMPTS / f"{prompt_name}.wav")
    assert rate == audio.RATE
    n = min(len(heard), len(ref))
    assert n > rate, f"too little audio to compare: {len(heard)} samples"
    a = heard[:n]
    lag = int(max_lag_s * rate)
    padded = np.concatenate([np.zeros(lag), ref, np.zeros(lag + n)])
    size = len(padded) + n
    corr = np.fft.irfft(np.fft.rfft(padded, size) * np.conj(np.fft.rfft(a, size)), size)
    count = len(padded) - n + 1
    corr = corr[:count]
    energy = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    window = energy[n:n + count] - energy[:count]
    norm_a = float(np.linalg.norm(a))
    valid = window > 1e-6 * n
    if norm_a == 0 or not valid.any():
        return 0.0
    return float(np.max(corr[valid] / (norm_a * np.sqrt(window[valid]))))


# --- tests ---------------------------------------------------------------------------------


def test_pin_call_hears_prompt_joins_room_and_leaves(switchboard_server: Any,
                                                     tmp_workdir: Path) -> None:
    server = switchboard_server()
    create_room(server)
    add_number(server, PIN_NUMBER, "pin")
    before = stats(server)
    scenario = write_pin_dial(tmp_workdir, PIN, prompt_wait_ms=3000, digit_gap_ms=300,
                              hold_ms=4000, caller="15557001")
    with RtpReceiver() as rx:
        scenario.write_text(with_sdp_media_port(scenario.read_text(), rx.port))
        sipp = sipp_call(tmp_workdir, "pin", scenario, server, PIN_NUMBER)
        wait_for(lambda: participants(server), 20, "the caller is in the room")
        during = stats(server)
        joined = participants(server)
        res = sipp.wait()
    assert res.ok, res.describe()

    # The prompt: PCMU from the server's RTP range, loud enough, and it is welcome.wav.
    window, heard = rx.audio(2.8)
    assert len(window) >= 100, f"only {len(window)} RTP packets in the prompt's first 2.8 s"
    assert {p.payload_type for p in window} == {0}, "PCMU only"
    assert all(server.rtp_low <= p.source[1] <= server.rtp_high for p in window)
    assert audio.rms(heard) > 0.02, f"the prompt is silent (RMS {audio.rms(heard):.4f})"
    welcome = prompt_similarity(heard, "welcome")
    log.info("prompt: %d packets, RMS %.3f, welcome similarity %.3f", len(window),
             audio.rms(heard), welcome)
    assert welcome > 0.7, f"what the caller heard is not the welcome prompt ({welcome:.2f})"

    # The PIN went in as RFC 4733 events, each key once (77 is two presses).
    assert dtmf_in_log(server.log_text()) == len(PIN + "#")

    # In the room while the call lasted.
    assert len(joined) == 1, joined
    phone = joined[0]
    assert phone["kind"] == "phone" and phone["muted"] is False, phone
    assert phone["id"] and phone["name"], phone
    assert during["calls"] == 1 and during["legs"] == 1 and during["participants"] == 1, during
    assert during["conferences"] == 1 and during["ivr"] == 0, during

    # Hung up: gone from the room, nothing left.
    wait_for(lambda: participants(server) == [], 5, "the participant leaves after BYE")
    after = assert_idle(server)
    assert after["calls_total"] == before["calls_total"] + 1, after
    assert after["pin_failures"] == before["pin_failures"], after


def test_three_wrong_pins_end_the_call_from_the_server(switchboard_server: Any,
                                                       tmp_workdir: Path) -> None:
    server = switchboard_server()
    create_room(server)
    add_number(server, PIN_NUMBER, "pin")
    before = stats(server)
    wrong = ("1111", "2290", "5555")
    scenario = write_wrong_pin(tmp_workdir, wrong, prompt_wait_ms=2000, retry_wait_ms=1500,
                               digit_gap_ms=300, bye_timeout_ms=20000, caller="15557002")
    started = time.monotonic()
    res = sipp_call(tmp_workdir, "wrong", scenario, server, PIN_NUMBER).wait()
    took = time.monotonic() - started
    # The scenario only succeeds when the server sends BYE (and it gets our 200).
    assert res.ok, res.describe()
    assert took < 35, f"the server took {took:.0f} s to hang up"
    assert dtmf_in_log(server.log_text()) == len("".join(p + "#" for p in wrong))
    assert participants(server) == []
    after = assert_idle(server)
    assert after["pin_failures"] == before["pin_failures"] + 3, after
    assert after["calls_total"] == before["calls_total"] + 1, after


def test_pin_by_sip_info_works_like_rfc2833(switchboard_server: Any,
                                            tmp_workdir: Path) -> None:
    server = switchboard_server()
    create_room(server)
    add_number(server, PIN_NUMBER, "pin")
    scenario = write_scenario(tmp_workdir / "info_pin.xml",
                              info_pin_scenario(PIN, prompt_wait_ms=1500, digit_gap_ms=200,
                                                hold_ms=4000))
    sipp = sipp_call(tmp_workdir, "info", scenario, server, PIN_NUMBER)
    wait_for(lambda: participants(server), 25, "the INFO caller is in the room")
    joined = participants(server)
    res = sipp.wait()
    assert res.ok, res.describe()  # every INFO got its 200
    assert len(joined) == 1 and joined[0]["kind"] == "phone", joined
    log_text = server.log_text()
    assert dtmf_in_log(log_text) == 0, "no RTP DTMF was sent in this call"
    assert len(re.findall(r": DTMF: a digit$", log_text, re.M)) == len(PIN + "#")
    wait_for(lambda: participants(server) == [], 5, "the participant leaves after BYE")
    assert_idle(server)


def test_out_of_dialog_requests(switchboard_server: Any, tmp_workdir: Path) -> None:
    server = switchboard_server()
    options = write_scenario(tmp_workdir / "options.xml", request_scenario(
        "OPTIONS", [200], request_uri="sip:[remote_ip]:[remote_port]",
        expect_headers={"Allow": ".*", "Accept": ".*", "Supported": ".*"}))
    res = run_sipp(tmp_workdir, "options", options, remote=server.sip_address,
                   timeout_s=10, trace_logs=True)
    assert res.ok, res.describe()
    logged = (tmp_workdir / "options_logs.log").read_text()
    allow = re.search(r"Allow:(.*)", logged)
    assert allow, logged
    methods = {m.strip() for m in allow.group(1).split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"} <= methods, methods
    assert "application/sdp" in logged

    unknown = write_scenario(tmp_workdir / "foo.xml", request_scenario("FOO", [405, 501]))
    res = run_sipp(tmp_workdir, "foo", unknown, remote=server.sip_address, service="1000",
                   timeout_s=10)
    assert res.ok, res.describe()

    bye = write_scenario(tmp_workdir / "bye.xml",
                         request_scenario("BYE", [481], to_tag="no-such-dialog"))
    res = run_sipp(tmp_workdir, "bye", bye, remote=server.sip_address, service="1000",
                   timeout_s=10)
    assert res.ok, res.describe()
    assert server.running()
    assert_idle(server)


def test_pin_guessing_is_throttled_across_calls(switchboard_server: Any,
                                                tmp_workdir: Path) -> None:
    server = switchboard_server({"ivr": {"throttle": {"max_failures": 3, "window": 120.0,
                                                      "block": 120.0}}})
    create_room(server)
    add_number(server, PIN_NUMBER, "pin")
    scenario = write_wrong_pin(tmp_workdir, ("1111", "2222", "3333"), prompt_wait_ms=1500,
                               retry_wait_ms=1500, digit_gap_ms=300, bye_timeout_ms=20000,
                               caller="15557003")
    res = sipp_call(tmp_workdir, "guess", scenario, server, PIN_NUMBER).wait()
    assert res.ok, res.describe()
    before = stats(server)
    assert before["pin_failures"] == 3, before

    refused = write_scenario(tmp_workdir / "refused.xml",
                             rejected_invite_scenario(403, caller="15557003"))
    res = run_sipp(tmp_workdir, "refused", refused, remote=server.sip_address,
                   service=PIN_NUMBER, timeout_s=10)
    assert res.ok, res.describe()
    after = stats(server)
    assert after["calls_rejected"] == before["calls_rejected"] + 1, after
    assert re.search(r"refused: 15557003 from 127\.0\.0\.1 is blocked", server.log_text())
    assert_idle(server)


def test_room_number_joins_without_prompt(switchboard_server: Any,
                                          tmp_workdir: Path) -> None:
    server = switchboard_server()
    create_room(server)
    add_number(server, ROOM_NUMBER, "room", ROOM)
    scenario = write_scenario(tmp_workdir / "room_number.xml",
                              plain_call_scenario(hold_ms=4000, caller="15557004"))
    with RtpReceiver() as rx:
        scenario.write_text(with_sdp_media_port(scenario.read_text(), rx.port))
        sipp = sipp_call(tmp_workdir, "roomnum", scenario, server, ROOM_NUMBER)
        took = wait_for(lambda: participants(server), 10, "the caller is in the room")
        joined = participants(server)
        res = sipp.wait()
    assert res.ok, res.describe()
    # The welcome prompt alone lasts 4.8 s: a caller through the IVR could not be here yet.
    assert took < 3.0, f"joining took {took:.1f} s"
    assert len(joined) == 1 and joined[0]["kind"] == "phone", joined
    assert "PIN IVR started" not in server.log_text()
    # Alone in the room, the caller hears "you are the only participant", not the welcome.
    _, heard = rx.audio(2.5)
    assert audio.rms(heard) > 0.02, "the caller heard nothing"
    alone = prompt_similarity(heard, "only_participant")
    welcome = prompt_similarity(heard, "welcome")
    log.info("room number: joined in %.2f s; only_participant %.3f, welcome %.3f", took,
             alone, welcome)
    assert alone > 0.7 and welcome < 0.5, (alone, welcome)
    wait_for(lambda: participants(server) == [], 5, "the participant leaves after BYE")
    assert_idle(server)


@pytest.mark.parametrize("header", ["X-Room-Name", "Jitsi-Conference-Room"])
def test_room_header_skips_the_prompt(switchboard_server: Any, tmp_workdir: Path,
                                      header: str) -> None:
    """A call to a number nobody configured (default route: the PIN prompt) that names its
    room in a header joins that room at once."""
    server = switchboard_server()
    create_room(server)
    scenario = write_scenario(tmp_workdir / "room_header.xml", plain_call_scenario(
        hold_ms=2000, caller="15557005", headers={header: ROOM}))
    sipp = sipp_call(tmp_workdir, "roomhdr", scenario, server, "9999")
    took = wait_for(lambda: participants(server), 10, f"the caller with {header} is in the room")
    res = sipp.wait()
    assert res.ok, res.describe()
    assert took < 3.0, f"joining took {took:.1f} s"
    assert "PIN IVR started" not in server.log_text()
    wait_for(lambda: participants(server) == [], 5, "the participant leaves after BYE")
    assert_idle(server)


def test_a_reinvite_that_changes_the_codec_changes_what_the_caller_hears(
        switchboard_server: Any, tmp_workdir: Path) -> None:
    """A caller alone in a room (hearing "you are the only participant") re-INVITEs from
    PCMU to PCMA mid-prompt: the answer takes PCMA, RTP goes on with payload type 8, and
    what it carries is the rest of the same prompt in A-law (the mixer's encoder follows
    the leg's codec; mu-law bytes read as A-law would be noise)."""
    server = switchboard_server()
    create_room(server)
    xml = codec_change_scenario(ROOM, before_ms=800, after_ms=3500)
    with RtpReceiver() as rx:
        scenario = write_scenario(tmp_workdir / "recodec.xml",
                                  with_sdp_media_port(xml, rx.port, offers=2))
        sipp = Sipp(tmp_workdir, "recodec", scenario, remote=server.sip_address,
                    service="9999", timeout_s=30, trace_logs=True).start()
        res = sipp.wait()
        packets = list(rx.packets)
    assert res.ok, res.describe()
    assert sipp.logs_path is not None
    assert "re-INVITE answer: m=audio" in sipp.logs_path.read_text()
    types = [p.payload_type for p in packets]
    switched = types.index(8) if 8 in types else len(types)
    assert switched >= 20 and set(types[:switched]) == {0}, types[:switched + 5]
    assert len(types) - switched >= 100 and set(types[switched:]) == {8}, \
        f"{len(types) - switched} packets after the switch, types {set(types[switched:])}"
    ulaw = audio.ulaw_decode(b"".join(p.payload for p in packets[:switched]))
    alaw = audio.alaw_decode(b"".join(p.payload for p in packets[switched:]))
    whole = prompt_similarity(np.concatenate([ulaw, alaw]), "only_participant")
    tail = prompt_similarity(alaw, "only_participant", max_lag_s=2.0)
    log.info("codec change after %d packets: prompt similarity %.3f, A-law part %.3f",
             switched, whole, tail)
    assert whole > 0.95 and tail > 0.95, (whole, tail)  # 1.000 here; 0.65 with the wrong codec
    assert "failed in" not in server.log_text()
    wait_for(lambda: participants(server) == [], 5, "the participant leaves after BYE")
    assert_idle(server)
