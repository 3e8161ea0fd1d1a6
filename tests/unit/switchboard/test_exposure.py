"""The start-up warnings for the default trap: web or SIP reachable from other hosts while
browser media (the bridge) or phone media (RTP, SIP's announce) announces a loopback or
private address (switchboard/exposure.py): one sentence per service."""

from __future__ import annotations

from switchboard.config import parse_config
from switchboard.exposure import exposure_warnings


def test_the_default_configuration_warns_for_browser_and_phone_media() -> None:
    [bridge, phone] = exposure_warnings(parse_config({}))
    assert "web on 0.0.0.0:8080" in bridge and "SIP on udp:0.0.0.0:5060" in bridge
    assert "loopback address 127.0.0.1" in bridge and "bridge.announce" in bridge
    assert "SIP on udp:0.0.0.0:5060 and SIP on tcp:0.0.0.0:5060" in phone
    assert "phone media (RTP) announces the loopback address 127.0.0.1" in phone
    assert "media.announce" in phone and "web on" not in phone


def test_private_announce_with_a_public_web_warns() -> None:
    config = parse_config({"http": {"listen": "203.0.113.5:443"},
                           "sip": {"listen": ["udp:127.0.0.1:5060"]},
                           "bridge": {"address": "10.0.0.4"}})  # fmt: skip
    [warning] = exposure_warnings(config)  # SIP on loopback only: no phone warning
    assert "web on 203.0.113.5:443" in warning and "SIP" not in warning.split("can")[0]
    assert "private address 10.0.0.4" in warning


def test_public_bridge_with_loopback_phone_media_warns_for_phones_only() -> None:
    config = parse_config({"bridge": {"address": "10.0.0.4", "announce": "203.0.113.5"}})
    [warning] = exposure_warnings(config)
    assert "phone media (RTP) announces the loopback address 127.0.0.1" in warning
    assert "browser" not in warning


def test_private_phone_media_or_sip_announce_on_a_public_sip_warns() -> None:
    private = parse_config({"http": {"listen": "127.0.0.1:8080"},
                            "sip": {"listen": ["udp:203.0.113.5:5060"]},
                            "media": {"address": "192.168.1.20"},
                            "bridge": {"announce": "203.0.113.5"}})  # fmt: skip
    [warning] = exposure_warnings(private)
    assert "SIP on udp:203.0.113.5:5060" in warning
    assert "private address 192.168.1.20 in SDP" in warning
    sip_only = parse_config({"http": {"listen": "127.0.0.1:8080"},
                             "sip": {"announce": "10.0.0.4"},
                             "media": {"address": "203.0.113.5"},
                             "bridge": {"announce": "203.0.113.5"}})  # fmt: skip
    [warning] = exposure_warnings(sip_only)
    assert "SIP announces the private address 10.0.0.4 in Via and Contact" in warning
    assert "phone media (RTP) announces" not in warning


def test_no_warning_when_media_is_announced_publicly_or_all_is_local() -> None:
    behind_nat = parse_config({"bridge": {"address": "10.0.0.4", "announce": "203.0.113.5"},
                               "media": {"address": "10.0.0.4", "announce": "203.0.113.5"}})
    assert exposure_warnings(behind_nat) == []
    one_setting = parse_config({"server": {"public_address": "203.0.113.5"},
                                "bridge": {"address": "10.0.0.4"},
                                "media": {"address": "10.0.0.4"}})  # fmt: skip
    assert exposure_warnings(one_setting) == []
    local = parse_config({"http": {"listen": "127.0.0.1:8080"},
                          "sip": {"listen": ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]}})
    assert exposure_warnings(local) == []
