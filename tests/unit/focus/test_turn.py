"""TURN REST API credentials (focus/turn.py), checked against the formula coturn uses."""

from __future__ import annotations

import base64
import hashlib
import hmac

from focus.turn import IceServers, rest_credentials


def test_rest_credentials_match_coturns_formula() -> None:
    username, password = rest_credentials("s3cret", "browser-1", 1_700_000_000.7, 3600)
    assert username == "1700003600:browser-1"
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"1700003600:browser-1", hashlib.sha1).digest()).decode()
    assert password == expected
    assert password == "dXnbkBvlEmCtMNAk+mBQBE+f1BY="  # fixed: a change of formula shows
    other, _ = rest_credentials("s3cret", "browser-2", 1_700_000_000, 3600)
    assert rest_credentials("other", "browser-1", 1_700_000_000, 3600)[1] != password
    assert other != username


def test_ice_servers_per_participant() -> None:
    ice = IceServers(stun_urls=("stun:turn.example.org:3478",),
                     turn_urls=("turn:turn.example.org:3478?transport=udp",
                                "turns:turn.example.org:5349?transport=tcp"),
                     secret="s3cret", ttl=600)  # fmt: skip
    stun, turn = ice.for_participant("browser-9", 1000.0)
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp",
                            "turns:turn.example.org:5349?transport=tcp"]
    assert turn["username"] == "1600:browser-9"
    assert turn["credential"] == rest_credentials("s3cret", "browser-9", 1000.0, 600)[1]
    assert "s3cret" not in repr(ice.for_participant("browser-9", 1000.0))
    fixed = IceServers(turn_urls=("turn:t:3478",), username="u", password="p")
    assert fixed.for_participant("x", 0) == (
        {"urls": ["turn:t:3478"], "username": "u", "credential": "p"},)
    assert IceServers().for_participant("x", 0) == ()
