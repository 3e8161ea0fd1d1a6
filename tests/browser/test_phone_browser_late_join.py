"""Issue 14: a caller's voice goes to the bridge only while someone can hear it there.

Two real baresip phones (PCMU 500 Hz, G.722 900 Hz) talk in a phones-only room: the server
encodes nothing for the bridge (/api/stats: `uplinks_running` 0, `uplink_packets` still),
and the phones hear each other. A browser joins in the middle of the call: the callers'
uplinks start at its join and it hears both phones (it heard the first packet within
`FIRST_AUDIO_MS` of pressing Join), while the phones keep hearing each other and now the
browser too. It leaves: the uplinks stop. A second browser joins with its microphone off
(a muted participant still listens): the uplinks start again and it hears both phones.

Run inside a network namespace with only loopback (as root):
unshare -n -- bash -c 'ip link set lo up && .venv/bin/pytest -q \
    tests/browser/test_phone_browser_late_join.py'
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import phone_harness as ph
from browser_harness import Member, install_audio_probe
from phone_harness import CODECS, Expectations, PhoneBank
from test_phone_browser import (  # the `phones` fixture and the measurements
    MEDIA_WAIT,
    SWITCHBOARD_CONFIG,
    _browser_hears,
    _mic,
    _phone_hears,
    _settled,
    phones,
)

log = logging.getLogger(__name__)

__all__ = ["SWITCHBOARD_CONFIG", "phones"]  # the module's server config and fixture

FIRST_AUDIO_MS = 5000.0  # Join pressed -> first remote audio packet (a shared 2-core machine)
TONES = [500.0, 900.0, 1300.0]


def _uplinks(server: Any) -> tuple[int, int]:
    stats = server.api("GET", "/api/stats")
    return int(stats.get("uplinks_running", -1)), int(stats.get("uplink_packets", -1))


def _join(crowd: Any, tmp_path: Path, room: str, name: str, *, mic: bool) -> Member:
    member: Member = crowd.join(room, name, camera=False, mic=mic, measure=True,
                                audio_file=_mic(tmp_path, 1300))
    install_audio_probe(member.page)
    return member


def test_a_browser_joining_a_phones_only_room_mid_call_hears_the_phones(
        crowd: Any, module_switchboard: Any, phones: PhoneBank, tmp_path: Path) -> None:
    server = module_switchboard
    room, pin = "phones-then-browser", "61734061"
    ph.make_room(server, room, pin)
    p500 = phones.add("Phone 500", 500.0)
    p900 = phones.add("Phone 900", 900.0, codec=CODECS["G722"])
    ph.dial_in(server, [p500, p900], pin)
    ph.wait_stats(server, {"bridge_callers": 2}, 20.0)
    people = ph.api_participants(server, room)
    assert sorted(p["kind"] for p in people.values()) == ["phone", "phone"], people
    ids = {p["name"]: pid for pid, p in people.items()}
    for phone in (p500, p900):
        phone.in_room_at = time.monotonic()
    _settled([p500, p900])
    expect = Expectations("phones first, then a browser mid-call")

    # Phones only: nothing is encoded for the bridge, the phones hear each other.
    running, packets = _uplinks(server)
    time.sleep(1.0)
    expect.check((running, packets) == _uplinks(server) and running == 0,
                 "phones only: no uplink runs and no packet goes to the bridge",
                 f"before {running, packets}, 1 s later {_uplinks(server)}")
    expect.attempt("phones only: Phone 500 hears Phone 900", _phone_hears, p500, [900.0],
                   [500.0])
    expect.attempt("phones only: Phone 900 hears Phone 500", _phone_hears, p900, [500.0],
                   [900.0])

    # A browser joins mid-call.
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", mic=True)
    expect.attempt("with Ada there, both callers' uplinks run",
                   lambda: ph.wait_stats(server, {"uplinks_running": 2}, 3.0))
    for name, hz in (("Phone 500", 500.0), ("Phone 900", 900.0)):
        expect.attempt(f"Ada hears {name} ({hz:g} Hz)", _browser_hears, ada, ids[name], name,
                       hz, TONES, MEDIA_WAIT)
    first = ada.join_timing()["audio_ms"]
    log.info("Ada: Join pressed -> first remote audio packet: %s ms", first)
    expect.check(first is not None and first < FIRST_AUDIO_MS,
                 f"Ada's first remote audio packet within {FIRST_AUDIO_MS:g} ms of Join",
                 f"{first} ms")
    time.sleep(1.5)
    expect.attempt("Phone 500 hears Phone 900 and Ada", _phone_hears, p500, [900.0, 1300.0],
                   [500.0])
    expect.attempt("Phone 900 hears Phone 500 and Ada", _phone_hears, p900, [500.0, 1300.0],
                   [900.0])

    # The last browser leaves: the uplinks stop.
    crowd.leave(ada)
    expect.attempt("Ada gone: no uplink runs",
                   lambda: ph.wait_stats(server, {"uplinks_running": 0, "browsers": 0}, 15.0))
    expect.attempt("and the phones still hear each other", _phone_hears, p500, [900.0],
                   [500.0])

    # A muted browser is a receiver too.
    grace = _join(crowd, tmp_path, room, "Grace Hopper", mic=False)
    expect.attempt("with Grace (muted) there, both uplinks run again",
                   lambda: ph.wait_stats(server, {"uplinks_running": 2}, 3.0))
    for name, hz in (("Phone 500", 500.0), ("Phone 900", 900.0)):
        expect.attempt(f"Grace (muted) hears {name} ({hz:g} Hz)", _browser_hears, grace,
                       ids[name], name, hz, TONES, MEDIA_WAIT)
    expect.verify()
