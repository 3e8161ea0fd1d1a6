"""GET /metrics: the live counts of /api/stats in the Prometheus text format, through the
standard client library (`prometheus_client`), read at each scrape (nothing is kept twice).

Who may read it: on http.listen, only a request with the admin token (`Authorization: Bearer
TOKEN`, compared in constant time; 401 otherwise, as for /api/). When metrics.listen is set,
`metrics_app()` serves the same /metrics there without a token, for a scraper on a private
network; keep that address off the internet.

The metrics (names under `switchboard_`), each from one key of the stats sources:
gauges for what is open now (calls, legs, conferences, participants, browsers, bridge
endpoints and conferences, HTTP connections), counters for what has happened since start
(phone RTP packets in, out and dropped, bridge datagrams in and packets out, mix ticks and
late mix ticks, what the browser media ports dropped: `media_port_*` for the shared UDP
port, `media_tcp_*` for ICE-TCP, as in /api/stats), and the served certificate's remaining
validity in seconds (HTTPS only).
A key missing from the sources leaves its metric out rather than reporting a false 0.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

__all__ = ["COUNTERS", "GAUGES", "StatsCollector", "add_metrics_route", "metrics_app"]

log = logging.getLogger(__name__)

# (metric name, stats key, help)
GAUGES: Final = (
    ("calls", "calls", "SIP calls in progress"),
    ("legs", "legs", "Phone legs with media"),
    ("conferences", "conferences", "Conferences with at least one participant"),
    ("participants", "participants", "Participants, phones and browsers"),
    ("browsers", "browsers", "Browser participants in meetings"),
    ("bridge_endpoints", "endpoints", "Bridge endpoints (browsers and phone links)"),
    ("bridge_conferences", "bridge_conferences", "Conferences on the bridge"),
    ("http_connections", "http_connections", "Open HTTP connections (WebSockets included)"),
    ("cluster_connected", "cluster_connected", "1 while this cluster node reaches Redis"),
    ("cluster_nodes_alive", "cluster_nodes_alive", "Live nodes of the cluster, this one included"),
    ("cluster_rooms_owned", "cluster_rooms_owned", "Rooms this cluster node hosts (claims)"),
    ("cluster_load_permille", "cluster_load_permille",
     "This node's stress figure in thousandths (1000: its nominal capacity)"),
    ("cluster_draining", "cluster_draining", "1 while this cluster node is drained (no new rooms)"),
    ("recordings", "recordings_running", "Recordings and live streams running"),
)
COUNTERS: Final = (
    ("phone_rtp_packets_received", "rtp_rx_packets", "RTP packets received from phones"),
    ("phone_rtp_packets_sent", "rtp_tx_packets", "RTP packets sent to phones"),
    ("phone_rtp_packets_dropped", "rtp_rx_dropped", "Phone RTP packets dropped (strict RTP)"),
    ("bridge_datagrams_received", "bridge_datagrams_received",
     "UDP datagrams received by the bridge from browsers"),
    ("bridge_packets_sent", "bridge_packets_sent", "Packets sent by the bridge to browsers"),
    ("mix_ticks", "mix_ticks", "Mixer ticks (20 ms)"),
    ("mix_ticks_late", "mix_ticks_late", "Mixer ticks that ran late"),
    ("turn_credentials_issued", "turn_credentials_issued",
     "TURN credentials handed out to browsers (one per TURN server list a joining browser "
     "gets)"),
    ("http_refused", "http_refused", "HTTP connections refused (limits)"),
    *(
        (f"media_{port}_{key}", f"media_{port}_{key}", f"{where}: {text}")
        for port, where in (("port", "Browser media's shared UDP port"),
                            ("tcp", "Browser media's ICE-TCP port"))
        for key, text in (
            ("unknown_address", "packets dropped: not STUN, from an address no endpoint has"),
            ("unknown_credentials",
             "packets dropped: STUN checks without a USERNAME or with an unknown ICE ufrag"),
            ("unknown_transaction", "packets dropped: STUN responses to no request of ours"),
            ("malformed", "packets dropped: STUN with malformed attributes"),
        )
    ),
    ("media_port_send_errors", "media_port_send_errors",
     "Browser media's shared UDP port: send errors (ICMP unreachable from a browser gone)"),
    ("media_tcp_refused", "media_tcp_refused",
     "Browser media's ICE-TCP port: connections refused (too many, or no good first frame "
     "in time)"),
    ("media_tcp_send_dropped", "media_tcp_send_dropped",
     "Browser media's ICE-TCP port: packets dropped towards a slow reader"),
)

StatsSource = Callable[[], Mapping[str, int]]
ExpirySource = Callable[[], float | None]  # seconds until the served certificate expires


class StatsCollector(Collector):
    """Reads the stats sources at each scrape."""

    def __init__(self, stats: StatsSource, expiry: ExpirySource | None = None) -> None:
        self.stats = stats
        self.expiry = expiry

    def collect(self) -> Iterator[Metric]:
        try:
            stats = dict(self.stats())
        except Exception:
            log.exception("metrics: the stats source failed")
            stats = {}
        for name, key, text in GAUGES:
            if key in stats:
                yield GaugeMetricFamily(f"switchboard_{name}", text, value=stats[key])
        for name, key, text in COUNTERS:
            if key in stats:
                yield CounterMetricFamily(f"switchboard_{name}", text, value=stats[key])
        if self.expiry is not None:
            left = self.expiry()
            if left is not None:
                yield GaugeMetricFamily(
                    "switchboard_tls_certificate_expiry_seconds",
                    "Seconds until the served TLS certificate expires", value=left)


def _registry(stats: StatsSource, expiry: ExpirySource | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, expiry))
    # process_cpu_seconds_total, memory, open files: with the packet counters, the cost per
    # forwarded packet is rate(process_cpu_seconds_total) / rate(bridge_packets_sent)
    ProcessCollector(registry=registry)
    return registry


def _respond(request: web.Request, registry: CollectorRegistry) -> web.Response:
    """The format the scraper asks for in Accept (the text format; OpenMetrics on request)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = web.Response(body=encode(registry))
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def add_metrics_route(app: web.Application, stats: StatsSource, admin_token: str,
                      expiry: ExpirySource | None = None) -> None:  # fmt: skip
    """GET /metrics on `app`, with the admin token."""
    registry = _registry(stats, expiry)
    expected = admin_token.encode()

    async def metrics(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 expected):
            log.info("GET /metrics from %s: refused, no valid admin token", request.remote)
            return web.json_response({"error": "admin token required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return _respond(request, registry)

    app.router.add_get("/metrics", metrics)


def metrics_app(stats: StatsSource, expiry: ExpirySource | None = None) -> web.Application:
    """An application with only GET /metrics, without a token (for metrics.listen)."""
    registry = _registry(stats, expiry)

    async def metrics(request: web.Request) -> web.StreamResponse:
        return _respond(request, registry)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
