"""The start-up warning for the default trap: web and SIP reachable from other hosts while
browser media announces a loopback or private address (switchboard/exposure.py)."""

from __future__ import annotations

from switchboard.config import parse_config
from switchboard.exposure import exposure_warnings


def test_the_default_configuration_warns() -> None:
    [warning] = exposure_warnings(parse_config({}))
    assert "web on 0.0.0.0:8080" in warning and "SIP on udp:0.0.0.0:5060" in warning
    assert "loopback address 127.0.0.1" in warning and "bridge.announce" in warning


def test_private_announce_with_a_public_web_warns() -> None:
    config = parse_config({"http": {"listen": "203.0.113.5:443"},
                           "sip": {"listen": ["udp:127.0.0.1:5060"]},
                           "bridge": {"address": "10.0.0.4"}})  # fmt: skip
    [warning] = exposure_warnings(config)
    assert "web on 203.0.113.5:443" in warning and "SIP" not in warning.split("can")[0]
    assert "private address 10.0.0.4" in warning


def test_no_warning_when_media_is_announced_publicly_or_all_is_local() -> None:
    behind_nat = parse_config({"bridge": {"address": "10.0.0.4", "announce": "203.0.113.5"}})
    assert exposure_warnings(behind_nat) == []
    local = parse_config({"http": {"listen": "127.0.0.1:8080"},
                          "sip": {"listen": ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]}})
    assert exposure_warnings(local) == []
