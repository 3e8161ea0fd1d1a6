"""The phone mixer heard through real softphones (issue 2, section 5).

Real baresip phones dial the real server, key in a meeting PIN and talk: each plays its own
steady tone, and its recording (sndfile's dump-*-dec.wav: what the phone heard) must hold
every other phone's tone and not its own (the N-1 mix). A PIN keyed as SIP INFO (sipp:
baresip 1.0.0 only sends RFC 2833; its `dtmfmode` account parameter came in 1.1.0) joins the
room like RFC 2833 digits do. When everyone has hung up the server's counts return to zero.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SwitchboardServer
from peers import audio
from peers.baresip import Baresip, BaresipError
from peers.sipp import Sipp, write_scenario

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

ROOM = "standup"
PIN = "48213077"            # a repeated digit ('77') is two key presses
TONE_AMPLITUDE = 0.25       # two of them summed stay clear of clipping
TALK_S = 6.5                # everyone in the room together before hanging up
# After the last join: the join beeps (0.3 s), and "you are the only participant" (2.6 s),
# which the first phone in hears even when the others join a moment later.
SETTLE_S = 3.0
EDGE_S = 0.3                # the end of a recording: hangups are not simultaneous
CONTROL_HZ = 2500.0         # a frequency nobody sends: the noise floor of a recording
ZERO_COUNTS = ("calls", "legs", "ivr", "participants", "rtp_ports_in_use")


# --- helpers -------------------------------------------------------------------------------


def make_room(server: SwitchboardServer, name: str = ROOM, pin: str = PIN) -> None:
    resp = server.api("POST", "/api/rooms", {"name": name, "pin": pin})
    assert resp.status == 201, f"create room: HTTP {resp.status} {resp.text}"
    created = resp.json()  # the room's policy comes with it (issue 17)
    assert {k: created[k] for k in ("name", "pin")} == {"name": name, "pin": pin}


def participants(server: SwitchboardServer, room: str = ROOM) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/rooms/{room}/participants")
    assert resp.status == 200, f"participants: HTTP {resp.status} {resp.text}"
    body = resp.json()
    assert isinstance(body, list)
    return body


def stats(server: SwitchboardServer) -> dict[str, int]:
    resp = server.api("GET", "/api/stats")
    assert resp.status == 200, f"stats: HTTP {resp.status} {resp.text}"
    stats = resp.json()
    assert isinstance(stats, dict)
    return stats


def wait_participants(server: SwitchboardServer, count: int, timeout: float,
                       room: str = ROOM) -> list[dict[str, Any]]:
    """Poll the participant list until it has `count` entries; fails with what it saw."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = participants(server, room)
        if len(seen) == count:
            return seen
        time.sleep(0.1)
    pytest.fail(f"room {room}: expected {count} participants within {timeout:.0f} s, "
                f"saw {seen}", pytrace=False)


def wait_counts_zero(server: SwitchboardServer, timeout: float = 20.0,
                     keys: Sequence[str] = ZERO_COUNTS) -> dict[str, int]:
    """Poll /api/stats until every count in `keys` is 0; fails with the last stats."""
    deadline = time.monotonic() + timeout
    current = stats(server)
    while any(current.get(k) != 0 for k in keys):
        if time.monotonic() > deadline:
            pytest.fail(f"stats did not return to zero within {timeout:.0f} s: "
                        f"{ {k: current.get(k) for k in keys} } (all: {current})",
                        pytrace=False)
        time.sleep(0.2)
        current = stats(server)
    return current


def _phone(workdir: Path, name: str, tone_hz: float,
           codecs: Sequence[str] = ("PCMU/8000/1",)) -> Baresip:
    source = audio.make_tone_wav(workdir / f"{name}-{tone_hz:g}hz.wav", tone_hz, 150.0,
                                 amplitude=TONE_AMPLITUDE)
    return Baresip(workdir, name, source_wav=source, codecs=codecs, timeout_s=120)


def _key_in(phones: Sequence[Baresip], keys: str, gap_s: float = 0.35) -> None:
    """Send `keys` as RFC 2833 from every phone, digit by digit, interleaved."""
    for key in keys:
        for phone in phones:
            phone.sndcode(key)
        phones[0].poll(gap_s)


def _dial_in(server: SwitchboardServer, phones: Sequence[Baresip], pin: str = PIN,
             number: str = "1000") -> float:
    """Every phone dials `number`, hears the welcome prompt for a moment, keys in the PIN
    and '#'; returns the monotonic time when the participant list showed all of them."""
    for phone in phones:
        phone.dial(server.sip_uri(number))
    for phone in phones:
        phone.wait_event("CALL_ESTABLISHED", 15)
    phones[0].poll(1.0)  # digits during the welcome prompt stop it
    _key_in(phones, pin + "#")
    joined = wait_participants(server, len(phones), timeout=20)
    assert all(p["kind"] == "phone" and p["muted"] is False for p in joined), joined
    return time.monotonic()


def _hang_up(phones: Sequence[Baresip]) -> None:
    """All phones hang up at (almost) the same moment, then see their call closed."""
    for phone in phones:
        phone.hangup()
    for phone in phones:
        phone.wait_event("CALL_CLOSED", 10)


def _quit(phones: Sequence[Baresip]) -> None:
    for phone in phones:
        try:
            phone.quit()
        except (BaresipError, OSError) as exc:  # stop() by PID follows in the fixture
            log.warning("baresip %s: quit failed: %s", phone.name, exc)


def _together_window(phone: Baresip, together_s: float) -> tuple[np.ndarray, int]:
    """The part of `phone`'s last recording (what it heard) when everyone was in the room:
    the recording ends at hangup, so it is the tail, less the settling time after the last
    join and the edge where the others were already hanging up."""
    samples, rate = audio.read_wav(phone.last_recording().dec)
    length = together_s - SETTLE_S - EDGE_S
    assert length >= 2.0, f"too short a window: {length:.1f} s"
    end = samples.size - round(EDGE_S * rate)
    start = end - round(length * rate)
    assert start > 0, (f"{phone.name}: recording only {samples.size / rate:.1f} s, "
                       f"shorter than the {together_s:.1f} s in the room")
    return samples[start:end], rate


def _powers(samples: np.ndarray, rate: int, freqs: Sequence[float]) -> dict[float, float]:
    """Share of the window's energy at each frequency (per 50 ms frame, averaged)."""
    return {f: audio.tone_ratio(samples, rate, f, min_rms=0.005) for f in freqs}


def _check_hears(phone: Baresip, window: np.ndarray, rate: int, own: float,
                 others: Sequence[float]) -> str:
    """Each other phone's tone clearly above the noise floor, its own at most a tenth of the
    weakest other; returns a description for messages."""
    powers = _powers(window, rate, [own, *others, CONTROL_HZ])
    desc = (f"{phone.name} (own {own:g} Hz) heard " + ", ".join(
        f"{f:g} Hz: {p:.4f}" for f, p in powers.items()) + f"; {audio.analyse(window, rate)}")
    floor = max(powers[CONTROL_HZ], 1e-4)
    weakest = min(powers[f] for f in others)
    # An equal mix of k tones gives each about 1/k of the energy, at k times the power of one.
    assert weakest > 0.5 / len(others), f"another phone is missing: {desc}"
    assert sum(powers[f] for f in others) > 0.9, f"not a clean mix of the others: {desc}"
    assert weakest > 20 * floor, f"other phones not above the noise: {desc}"
    assert powers[own] < weakest / 10, f"hears itself: {desc}"
    # The level of k tones of amplitude A: sqrt(k) * A / sqrt(2). A wrong codec (PCMU bytes
    # decoded as PCMA) keeps the frequency but not the level or the purity.
    level = np.sqrt(len(others)) * TONE_AMPLITUDE / np.sqrt(2)
    assert abs(audio.rms(window) - level) < 0.25 * level, f"wrong level ({level:.3f}): {desc}"
    assert audio.active(window, rate, min_rms=0.02).size >= 0.9 * window.size, (
        f"gaps in what it heard: {desc}")
    return desc


# --- tests ---------------------------------------------------------------------------------


def test_three_phones_hear_each_other_and_not_themselves(switchboard_server: Any,
                                                          tmp_workdir: Path) -> None:
    server = switchboard_server()
    make_room(server)
    tones = {"alice": 400.0, "bob": 1000.0, "carol": 1700.0}
    phones = [_phone(tmp_workdir, name, hz).start() for name, hz in tones.items()]
    try:
        all_in = _dial_in(server, phones)
        counts = stats(server)
        assert (counts["calls"], counts["legs"], counts["participants"]) == (3, 3, 3), counts
        phones[0].poll(TALK_S)
        together = time.monotonic() - all_in
        _hang_up(phones)
    finally:
        _quit(phones)
    results = []
    for phone in phones:
        own = tones[phone.name]
        window, rate = _together_window(phone, together)
        results.append(_check_hears(phone, window, rate, own,
                                    [hz for n, hz in tones.items() if n != phone.name]))
        sent, _ = audio.read_wav(phone.last_recording().enc)
        assert audio.hears_tone(sent, rate, own), f"{phone.name} did not send its tone"
    log.info("mix: %s", "; ".join(results))
    wait_counts_zero(server)
    assert participants(server) == []


def test_pcma_and_pcmu_phones_each_get_their_own_codec(switchboard_server: Any,
                                                       tmp_workdir: Path) -> None:
    server = switchboard_server()
    make_room(server)
    alaw = _phone(tmp_workdir, "alaw", 500.0, codecs=("PCMA/8000/1",)).start()
    ulaw = _phone(tmp_workdir, "ulaw", 1300.0, codecs=("PCMU/8000/1",)).start()
    phones = [alaw, ulaw]
    try:
        all_in = _dial_in(server, phones)
        phones[0].poll(TALK_S)
        together = time.monotonic() - all_in
        _hang_up(phones)
    finally:
        _quit(phones)
    for phone, codec in ((alaw, "PCMA"), (ulaw, "PCMU")):
        text = phone.log_tail(1000)
        assert f"Set audio encoder: {codec}" in text and f"Set audio decoder: {codec}" in text, (
            f"{phone.name} did not use {codec}:\n{phone.log_tail(40)}")
    for phone, own, other in ((alaw, 500.0, 1300.0), (ulaw, 1300.0, 500.0)):
        window, rate = _together_window(phone, together)
        _check_hears(phone, window, rate, own, [other])
        assert abs(audio.dominant_frequency(window, rate) - other) < 0.03 * other
    wait_counts_zero(server)


_INFO_KEY = """  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Info Phone" <sip:infophone@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:infophone@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: {content_type}
      Content-Length: [len]

{body}
    ]]>
  </send>

  <recv response="200"/>

  <pause milliseconds="{gap_ms}"/>
"""


def _info_pin_scenario(keys: str, *, prompt_wait_ms: int = 1500, gap_ms: int = 300,
                       hold_ms: int = 6000) -> str:
    """INVITE (PCMU and telephone-event offered), 200, ACK; each key as one INFO, alternating
    application/dtmf-relay and application/dtmf bodies; hold `hold_ms`; BYE."""
    from peers import scenarios  # the templates' INVITE/BYE parts

    invite = scenarios._INVITE.format(caller="infophone", headers="").replace(
        "From: <sip:infophone@", 'From: "Info Phone" <sip:infophone@')
    bye = scenarios._BYE.format(caller="infophone").replace(
        "From: <sip:infophone@", 'From: "Info Phone" <sip:infophone@').replace(
        "CSeq: 2 BYE", f"CSeq: {2 + len(keys)} BYE")
    parts = [scenarios._HEAD.format(name=f"info pin {keys}", generator="test_mixing_baresip"),
             invite,
             f'  <pause milliseconds="{prompt_wait_ms}"/>\n']
    for i, key in enumerate(keys):
        if i % 2 == 0:
            content_type = "application/dtmf-relay"
            body = f"      Signal={key}\n      Duration=160\n"
        else:
            content_type, body = "application/dtmf", f"      {key}\n"
        parts.append(_INFO_KEY.format(cseq=2 + i, content_type=content_type, body=body,
                                      gap_ms=gap_ms))
    parts.append(f'  <pause milliseconds="{hold_ms}"/>\n')
    parts.append(bye)
    parts.append(scenarios._TAIL)
    return "".join(parts)


def _info_digits(log_text: str) -> int:
    """How many keys the server took from the one call that sent INFO requests (the log
    never says which: PINs)."""
    ids = set(re.findall(r"call (\S+): INFO from ", log_text))
    assert len(ids) == 1, f"one call sent INFO, found {ids}"
    call_id = re.escape(ids.pop())
    return len(re.findall(rf"call {call_id}: DTMF: a digit$", log_text, re.M))


def test_pin_by_sip_info_joins_like_rfc2833(switchboard_server: Any,
                                            tmp_workdir: Path) -> None:
    server = switchboard_server()
    make_room(server)
    # A baresip phone keys the PIN as RFC 2833 and waits in the room.
    rtp_phone = _phone(tmp_workdir, "rtp", 1000.0).start()
    try:
        _dial_in(server, [rtp_phone])
        scenario = write_scenario(tmp_workdir / "info_pin.xml",
                                  _info_pin_scenario(PIN + "#", hold_ms=6000))
        sipp = Sipp(tmp_workdir, "info", scenario, remote=server.sip_address,
                    service="1000", timeout_s=40).start()
        joined = wait_participants(server, 2, timeout=25)
        names = sorted(p["name"] for p in joined)
        result = sipp.wait()
        assert result.ok, result.describe()
        assert "Info Phone" in names, names
        wait_participants(server, 1, timeout=10)
        assert _info_digits(server.log_text()) == len(PIN + "#")
        rtp_phone.hangup()
        rtp_phone.wait_event("CALL_CLOSED", 10)
    finally:
        _quit([rtp_phone])
    wait_counts_zero(server)


def test_wrong_pin_by_sip_info_does_not_join(switchboard_server: Any,
                                             tmp_workdir: Path) -> None:
    """The INFO path checks the PIN too: a wrong one never reaches the room."""
    server = switchboard_server()
    make_room(server)
    scenario = write_scenario(tmp_workdir / "info_wrong.xml",
                              _info_pin_scenario("11112222#", hold_ms=3000))
    sipp = Sipp(tmp_workdir, "info", scenario, remote=server.sip_address, service="1000",
                timeout_s=30).start()
    deadline = time.monotonic() + 40
    while sipp.running() and time.monotonic() < deadline:
        assert participants(server) == []
        time.sleep(0.2)
    result = sipp.wait()
    assert result.ok, result.describe()
    assert _info_digits(server.log_text()) == len("11112222#")
    assert stats(server)["pin_failures"] == 1
    wait_counts_zero(server)
