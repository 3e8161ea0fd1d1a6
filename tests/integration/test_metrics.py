"""GET /metrics from a running server, parsed with prometheus_client's own parser: behind the
admin token on http.listen, and without one on metrics.listen."""

from __future__ import annotations

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
