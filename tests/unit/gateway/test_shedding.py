"""SIP load shedding (gateway/shedding.py) with a hand clock: the rules in their order."""

from __future__ import annotations

import logging
import re

import pytest

from gateway.settings import GatewaySettings
from gateway.shedding import SheddingSettings, SipShedder, counts_as_failure
from switchboard.config import ConfigError, parse_config

TRUSTED = ["192.0.2.0/24"]
PBX = "192.0.2.10"
ATTACKER = "203.0.113.5"
PHONE = "198.51.100.7"


def request(method: str = "OPTIONS", user: str = "1000", to_tag: str | None = None) -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (f"{method} sip:{user}@gw.example SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-1\r\n"
            "From: <sip:scanner@203.0.113.5>;tag=a\r\n"
            f"To: <sip:{user}@gw.example>{tag}\r\n"
            "Call-ID: c1\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n").encode()


def register(user: str) -> bytes:
    """svwar's REGISTER: the Request-URI names the domain, To the extension."""
    return (f"REGISTER sip:gw.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-2\r\n"
            f"From: <sip:{user}@gw.example>;tag=b\r\nt: <sip:{user}@gw.example>\r\n"
            f"Call-ID: c2\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n").encode()


def shedder(**overrides: float) -> SipShedder:
    return SipShedder(SheddingSettings(**overrides), TRUSTED)  # type: ignore[arg-type]


def test_requests_over_the_rate_are_dropped_and_the_bucket_refills() -> None:
    s = shedder(request_rate=10.0, request_burst=5.0)
    assert [s.admit(request(), ATTACKER, 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert s.admit(request(), PHONE, 0.0)  # another source has its own bucket
    assert not s.admit(request(), ATTACKER, 0.05)
    assert s.admit(request(), ATTACKER, 0.1)  # one token back after 1/rate
    assert s.stats(0.1)["sip_dropped_rate"] == 3


def test_trusted_sources_skip_per_source_limits() -> None:
    s = shedder(request_rate=1.0, request_burst=1.0, invite_rate=1.0, invite_burst=1.0,
                scan_targets=2, calls_in_setup_per_source=1)
    assert all(s.admit(request("INVITE", str(n)), PBX, 0.0) for n in range(100))
    assert all(s.begin_call(f"call{n}", PBX, 0.0) is None for n in range(50))
    assert s.stats(0.0)["sip_dropped_rate"] == 0 and s.stats(0.0)["sip_blocked_sources"] == 0


def test_trusted_sources_meet_the_global_calls_in_setup_limit() -> None:
    s = shedder(calls_in_setup=3)
    assert [s.begin_call(f"c{n}", PBX, 0.0) is None for n in range(4)] == [True] * 3 + [False]
    s.end_setup("c0", None, 1.0)
    assert s.begin_call("c9", PBX, 1.0) is None
    assert s.stats(1.0)["sip_calls_refused_busy"] == 1


def test_invites_have_their_own_bucket() -> None:
    s = shedder(invite_rate=1.0, invite_burst=2.0, scan_targets=100)
    verdicts = [s.admit(request("INVITE", "1000"), ATTACKER, 0.0) for _ in range(4)]
    assert verdicts == [True, True, False, False]
    assert s.admit(request("OPTIONS"), ATTACKER, 0.0)  # other requests still pass
    assert s.admit(request("INVITE"), ATTACKER, 1.0)
    assert s.stats(1.0)["sip_dropped_invite_rate"] == 2


def test_calls_in_setup_per_source_get_503_with_retry_after() -> None:
    s = shedder(calls_in_setup_per_source=2, retry_after=7)
    assert s.begin_call("a", ATTACKER, 0.0) is None
    assert s.begin_call("b", ATTACKER, 0.0) is None
    refusal = s.begin_call("c", ATTACKER, 0.0)
    assert refusal is not None and (refusal.status, refusal.retry_after) == (503, 7)
    assert s.begin_call("d", PHONE, 0.0) is None  # another source is not held up
    s.end_setup("a", None, 0.1)  # ACKed: no longer in setup
    assert s.begin_call("c", ATTACKER, 0.2) is None
    assert s.calls_in_setup == 3


def test_many_distinct_targets_block_the_source_silently() -> None:
    s = shedder(scan_targets=5, block_time=600.0)
    verdicts = [s.admit(request("INVITE", str(100 + n)), ATTACKER, n * 0.3) for n in range(8)]
    assert verdicts == [True] * 5 + [False] * 3
    assert not s.admit(request("OPTIONS", "100"), ATTACKER, 10.0)  # everything is dropped
    assert s.stats(10.0)["sip_blocked_sources"] == 1
    assert s.admit(request("OPTIONS", "100"), PHONE, 10.0)
    assert s.admit(request("OPTIONS", "100"), ATTACKER, 600.0 + 2.1)  # the block is over
    stats = s.stats(603.0)
    assert stats["sip_blocked_sources"] == 0 and stats["sip_sources_blocked_total"] == 1


def test_register_scans_count_the_to_user_and_in_dialog_requests_count_nothing() -> None:
    s = shedder(scan_targets=3)
    assert all(s.admit(request("BYE", str(n), to_tag="x"), ATTACKER, 0.0) for n in range(10))
    assert all(s.admit(request("OPTIONS", str(n), to_tag="x"), ATTACKER, 0.0)
               for n in range(10))
    assert [s.admit(register(str(n)), ATTACKER, 1.0) for n in range(5)] == [True] * 3 + [
        False] * 2


def test_the_same_target_again_and_again_is_no_scan() -> None:
    s = shedder(scan_targets=2, request_rate=1000.0, request_burst=1000.0)
    assert all(s.admit(request("OPTIONS", "1000"), PHONE, n * 0.01) for n in range(500))


def test_targets_are_counted_per_window() -> None:
    s = shedder(scan_targets=3, scan_window=60.0)
    assert all(s.admit(request("INVITE", str(n)), PHONE, 0.0) for n in range(3))
    assert all(s.admit(request("INVITE", str(n)), PHONE, 61.0) for n in range(3, 6))
    assert s.stats(61.0)["sip_blocked_sources"] == 0


def test_failed_calls_block_the_source() -> None:
    s = shedder(scan_failures=3, calls_in_setup_per_source=100)
    for n in range(4):
        assert s.begin_call(f"c{n}", ATTACKER, float(n)) is None
        s.end_setup(f"c{n}", 404, float(n))
    assert s.blocked(ATTACKER, 4.0)
    assert not s.admit(request(), ATTACKER, 4.0)
    assert s.stats(4.0)["sip_dropped_blocked"] == 1


def test_refusals_count_as_failures_and_a_flood_ends_blocked() -> None:
    s = shedder(calls_in_setup_per_source=1, scan_failures=5)
    assert s.begin_call("c0", ATTACKER, 0.0) is None
    for n in range(1, 7):
        assert s.begin_call(f"c{n}", ATTACKER, 0.0) is not None
    assert s.blocked(ATTACKER, 0.0)


def test_what_counts_as_a_failed_call() -> None:
    assert all(counts_as_failure(code) for code in (403, 404, 415, 484, 488))
    assert not any(counts_as_failure(code) for code in (None, 200, 401, 407, 408, 480, 486,
                                                         487, 500, 503))


def test_stale_setups_oldest_first() -> None:
    s = shedder(reclaim_after=3.0)
    s.begin_call("old", ATTACKER, 0.0)
    s.begin_call("newer", PHONE, 1.0)
    s.begin_call("new", PBX, 5.0)
    assert s.stale_setups(2.0) == []
    assert s.stale_setups(4.5) == ["old", "newer"]
    s.end_setup("old", None, 4.5)
    assert s.stale_setups(9.0) == ["newer", "new"]


def test_memory_is_bounded_whatever_the_number_of_sources() -> None:
    s = shedder(max_sources=100, scan_targets=1, request_rate=1.0, request_burst=5.0)
    for n in range(5000):
        host = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        for user in ("1", "2", "3"):
            s.admit(request("INVITE", user), host, n * 0.001)
    sizes = s.table_sizes()
    assert sizes["blocked"] == 100  # the scanners were noticed
    assert all(size <= 100 for size in sizes.values()), sizes


def test_a_warning_once_per_source_not_per_packet(caplog: pytest.LogCaptureFixture) -> None:
    s = shedder(request_rate=1.0, request_burst=1.0, scan_window=60.0)
    with caplog.at_level(logging.WARNING, logger="gateway.shedding"):
        for n in range(200):
            s.admit(request(), ATTACKER, n * 0.001)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and ATTACKER in lines[0]


@pytest.mark.parametrize(
    ("sip", "message"),
    [
        ({"limits": {"request_rate": 0}}, "sip.limits.request_rate: expected a positive"),
        ({"limits": {"calls_in_setup_per_source": 0}},
         "sip.limits.calls_in_setup_per_source: expected at least 1"),
        ({"limits": {"reclaim_free_ports": 1.0}}, "sip.limits.reclaim_free_ports"),
        ({"limits": {"retry_after": 0}}, "sip.limits.retry_after"),
        ({"limits": {"bogus": 1}}, "sip.limits.bogus: unknown key"),
        ({"max_tcp_connections_per_source": 2000}, "sip.max_tcp_connections_per_source"),
    ],
)
def test_bad_limits_are_named(sip: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"sip": sip})


def test_limits_reach_the_gateway_settings() -> None:
    config = parse_config({"sip": {"trusted_peers": ["10.0.0.0/8"],
                                   "max_tcp_connections_per_source": 4,
                                   "limits": {"invite_rate": 2.5, "scan_targets": 3,
                                              "reclaim_free_ports": 0.25,
                                              "max_finished_transactions": 500}}})
    settings = GatewaySettings.from_config(config)
    assert settings.shedding.invite_rate == 2.5 and settings.shedding.scan_targets == 3
    assert settings.shedding.request_rate == SheddingSettings().request_rate
    assert settings.reclaim_free_ports == 0.25 and settings.max_finished_transactions == 500
    assert settings.max_tcp_connections_per_source == 4
    assert settings.trusted_peers == ("10.0.0.0/8",)
