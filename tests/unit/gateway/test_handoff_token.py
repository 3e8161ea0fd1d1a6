"""The hand-off header between nodes (gateway/handoff_token.py): signed for one call and one
room, refused when forged, moved, stale or replayed."""

from __future__ import annotations

from gateway.handoff_token import (
    MAX_AGE,
    HandOff,
    HandOffTarget,
    ReplayGuard,
    parse_sip_target,
    sign,
    verify,
)

KEY = b"k" * 64
NOW = 1_800_000_000.0


def _signed(**kw: object) -> str:
    args: dict[str, object] = {"host": False, "password": False} | kw
    return sign(KEY, "node-a", "standup", "call-1", NOW, **args)  # type: ignore[arg-type]


def test_a_signed_header_says_what_was_signed() -> None:
    assert verify(KEY, _signed(host=True), "call-1", NOW + 1) == \
        HandOff("node-a", "standup", True, False)
    assert verify(KEY, _signed(password=True), "call-1", NOW) == \
        HandOff("node-a", "standup", False, True)


def test_odd_room_and_node_names_survive() -> None:
    value = sign(KEY, "host;1=2", "r;oom=x", "c", NOW, host=False, password=False)
    assert verify(KEY, value, "c", NOW) == HandOff("host;1=2", "r;oom=x", False, False)


def test_another_key_call_or_flag_is_refused() -> None:
    value = _signed()
    assert verify(b"x" * 64, value, "call-1", NOW) is None
    assert verify(KEY, value, "call-2", NOW) is None  # moved to another call
    assert verify(KEY, value.replace("host=0", "host=1"), "call-1", NOW) is None
    assert verify(KEY, value.replace("room=standup", "room=other"), "call-1", NOW) is None


def test_stale_and_future_headers_are_refused() -> None:
    value = _signed()
    assert verify(KEY, value, "call-1", NOW + MAX_AGE + 1) is None
    assert verify(KEY, value, "call-1", NOW - MAX_AGE - 1) is None


def test_malformed_headers_are_refused() -> None:
    good = _signed()
    for value in ("", "v1", "v2;" + good[3:], good + ";host=1", good.replace("ts=", "ts=x"),
                  good.replace("host=0", "host=2"), good.replace(";sig=", ";sag="),
                  "x" * 600, good.replace("node=node-a", "node=")):
        assert verify(KEY, value, "call-1", NOW) is None, value


def test_a_call_id_is_accepted_once_within_the_window() -> None:
    guard = ReplayGuard(window=60.0, limit=3)
    assert guard.first_time("a", 0.0)
    assert not guard.first_time("a", 10.0)
    assert guard.first_time("a", 61.0)  # forgotten after the window
    for name in "bcd":
        assert guard.first_time(name, 62.0)
    assert len(guard._seen) <= 3  # bounded


def test_sip_targets() -> None:
    assert parse_sip_target("n", "udp:127.0.0.2:5060") == HandOffTarget("n", "udp",
                                                                       "127.0.0.2", 5060)
    assert parse_sip_target("n", "TCP:[::1]:5070") == HandOffTarget("n", "tcp", "::1", 5070)
    for bad in ("", "udp:", "udp:host", "tls:h:5061", "udp:h:0", "udp:h:70000", "udp:h:x"):
        assert parse_sip_target("n", bad) is None, bad
