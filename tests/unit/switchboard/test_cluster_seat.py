"""Where other nodes reach this node's SIP (switchboard/cluster_seat.py)."""

from __future__ import annotations

from switchboard.cluster_seat import sip_address


def test_the_first_udp_listener_else_tcp_wildcards_announced() -> None:
    assert sip_address([("tcp", "127.0.0.2", 5070), ("udp", "127.0.0.3", 5060)],
                       "198.51.100.7") == "udp:127.0.0.3:5060"
    assert sip_address([("udp", "0.0.0.0", 5060)], "198.51.100.7") == "udp:198.51.100.7:5060"
    assert sip_address([("tcp", "::", 5060)], "2001:db8::1") == "tcp:[2001:db8::1]:5060"
    assert sip_address([("tls", "127.0.0.1", 5061)], "x") == ""
