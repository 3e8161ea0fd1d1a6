"""GET /metrics from a running server, parsed with prometheus_client's own parser: behind the
admin token on http.listen, and without one on metrics.listen; and the browser media ports'
drop counters after an attacker's packets."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import urllib.request

import pytest
from conftest import ServerFactory, http_request
from peers import procs
from prometheus_client.parser import text_string_to_metric_families

EXPECTED = {
    "switchboard_calls", "switchboard_legs", "switchboard_conferences",
    "switchboard_participants", "switchboard_browsers", "switchboard_bridge_endpoints",
    "switchboard_phone_rtp_packets_received_total", "switchboard_phone_rtp_packets_sent_total",
    "switchboard_bridge_datagrams_received_total", "switchboard_bridge_packets_sent_total",
    "switchboard_mix_ticks_late_total", "switchboard_http_connections",
}


def samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.integration
def test_metrics_scraped_from_a_running_server(switchboard_server: ServerFactory) -> None:
    metrics_port = procs.free_port(kinds=("tcp",))
    server = switchboard_server({"metrics": {"listen": f"{procs.LOOPBACK}:{metrics_port}"}})
    refused = server.api("GET", "/metrics", auth=False)
    assert refused.status == 401
    assert "switchboard_" not in refused.text
    wrong = http_request("GET", server.base_url + "/metrics", token="x" * 32)
    assert wrong.status == 401

    response = server.api("GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    got = samples(response.text)
    assert set(got) >= EXPECTED, EXPECTED - set(got)
    assert got["switchboard_calls"] == 0
    assert got["switchboard_http_connections"] >= 1  # this request's own
    assert "switchboard_tls_certificate_expiry_seconds" not in got  # plain HTTP

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{procs.LOOPBACK}:{metrics_port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert set(samples(r.read().decode())) >= EXPECTED


STUN_MAGIC = 0x2112A442
DROPS = ("unknown_address", "unknown_credentials", "unknown_transaction", "malformed")


def _stun(kind: int, attributes: bytes = b"", *, length: int | None = None) -> bytes:
    size = len(attributes) if length is None else length
    return struct.pack("!HHI12s", kind, size, STUN_MAGIC, os.urandom(12)) + attributes


def _username(name: str) -> bytes:
    raw = name.encode()
    return struct.pack("!HH", 0x0006, len(raw)) + raw + bytes(-len(raw) % 4)


# what the attacker sends, by the counter it must land in, and how many of each
ATTACK = {
    "unknown_address": [b"\x80\x6f" + n.to_bytes(2, "big") + bytes(60) for n in range(3)],
    "unknown_credentials": [_stun(0x0001, _username("guess:attacker")), _stun(0x0001)],
    "unknown_transaction": [_stun(0x0101) for _ in range(4)],
    # a USERNAME attribute that says 64 bytes inside a message that has 8
    "malformed": [_stun(0x0001, struct.pack("!HH", 0x0006, 64) + b"abcd", length=8)] * 5,
}


@pytest.mark.integration
def test_media_port_drops_are_prometheus_counters(switchboard_server: ServerFactory) -> None:
    """An attacker on 127.0.0.2 sends the shared UDP port and the ICE-TCP port packets of
    every kind the demultiplexer drops; the operator's scrape counts each, per port."""
    udp_port, tcp_port = procs.free_port(kinds=("udp",)), procs.free_port(kinds=("tcp",))
    server = switchboard_server({"bridge": {"udp_port": udp_port, "tcp_port": tcp_port}})
    names = [f"switchboard_media_{port}_{key}_total" for port in ("port", "tcp")
             for key in DROPS]  # fmt: skip
    before = samples(server.api("GET", "/metrics").text)
    assert {name: before.get(name) for name in names} == dict.fromkeys(names, 0.0)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.2", 0))
        for packets in ATTACK.values():
            for packet in packets:
                udp.sendto(packet, (procs.LOOPBACK, udp_port))
    for packets in ATTACK.values():
        for packet in packets:  # each on a connection of its own: the port closes it
            with socket.create_connection((procs.LOOPBACK, tcp_port), timeout=5,
                                          source_address=("127.0.0.2", 0)) as tcp:
                tcp.sendall(struct.pack("!H", len(packet)) + packet)
                tcp.settimeout(5)
                with contextlib.suppress(ConnectionResetError):  # dropped: closed, no answer
                    assert tcp.recv(1) == b""

    want = {f"switchboard_media_{port}_{key}_total": float(len(ATTACK[key]))
            for port in ("port", "tcp") for key in DROPS}  # fmt: skip
    deadline = time.monotonic() + 10.0
    while True:
        got = samples(server.api("GET", "/metrics").text)
        if {name: got.get(name) for name in want} == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {name: got.get(name) for name in want} == want
    assert got["switchboard_media_tcp_refused_total"] == 0  # each had its first frame
