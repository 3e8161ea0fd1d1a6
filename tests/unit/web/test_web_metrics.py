"""GET /metrics: the admin token on the main app, none on metrics.listen's own app, and the
output parsed with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from web.metrics import add_metrics_route, metrics_app

TOKEN = "s3cret-admin-token-0123456789"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

STATS = {"calls": 3, "legs": 2, "conferences": 1, "participants": 5, "endpoints": 4,
         "rtp_rx_packets": 1000, "rtp_tx_packets": 990, "mix_ticks_late": 7,
         "bridge_datagrams_received": 50, "bridge_packets_sent": 60,
         "media_port_unknown_address": 11, "media_tcp_malformed": 2}  # fmt: skip


def parse(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-wrong-wrong-wrong"},
                                     {"Authorization": TOKEN}])
async def test_metrics_need_the_admin_token(aiohttp_client: MakeClient,
                                            headers: dict[str, str]) -> None:
    app = web.Application()
    add_metrics_route(app, lambda: STATS, TOKEN)
    client = await aiohttp_client(app)
    response = await client.get("/metrics", headers=headers)
    assert response.status == 401
    assert "switchboard_" not in await response.text()


async def test_metrics_with_the_token(aiohttp_client: MakeClient) -> None:
    app = web.Application()
    add_metrics_route(app, lambda: STATS, TOKEN, expiry=lambda: 1234.5)
    client = await aiohttp_client(app)
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = parse(await response.text())
    assert samples["switchboard_calls"] == 3
    assert samples["switchboard_legs"] == 2
    assert samples["switchboard_participants"] == 5
    assert samples["switchboard_bridge_endpoints"] == 4
    assert samples["switchboard_phone_rtp_packets_received_total"] == 1000
    assert samples["switchboard_mix_ticks_late_total"] == 7
    assert samples["switchboard_bridge_packets_sent_total"] == 60
    assert samples["switchboard_media_port_unknown_address_total"] == 11
    assert samples["switchboard_media_tcp_malformed_total"] == 2
    assert samples["switchboard_tls_certificate_expiry_seconds"] == 1234.5
    assert samples["process_cpu_seconds_total"] > 0  # the cost per forwarded packet's half
    assert "switchboard_browsers" not in samples  # not in the sources: left out, not 0


async def test_metrics_app_needs_no_token_and_survives_a_failing_source(
    aiohttp_client: MakeClient,
) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("boom")

    client = await aiohttp_client(metrics_app(broken))
    response = await client.get("/metrics")
    assert response.status == 200
    # nothing of Switchboard's own (the process's CPU and memory are still there)
    assert not [k for k in parse(await response.text()) if k.startswith("switchboard_")]
