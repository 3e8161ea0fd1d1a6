"""Wiring: every component in one asyncio process (uvloop), started and stopped in pairs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from bridge.service import Bridge, BridgeSettings
from cluster.node import ClusterNode, ClusterSettings, default_node_id
from cluster.room_state import RoomState
from dialplan.limits import Networks
from dialplan.routing import Router
from dialplan.store import RoomDefaults, Store
from dialplan.throttle import PinThrottle
from focus import Focus
from focus.gate import Gate
from focus.lobby import Lobby
from focus.meeting import Meetings
from focus.phones import PhoneMedia
from focus.rooms import StoreRooms
from focus.session import CLOSE_GOING_AWAY, MeetingSettings
from focus.tokens import TokenSettings, TokenVerifier
from focus.turn import IceServers
from gateway.service import Gateway
from gateway.settings import GatewaySettings
from recorder.service import RecorderSettings, Recordings
from switchboard.cluster_seat import NodeSeat, sip_address
from switchboard.config import Config
from switchboard.exposure import exposure_warnings
from switchboard.https import Https
from web.api import add_cluster_route
from web.app import WebSettings, create_app
from web.connections import ConnectionGuard, ConnectionSettings, GuardedSite
from web.metrics import add_metrics_route, metrics_app
from web.pages import ROOM_OWNER, add_page_routes
from web.recordings_api import RECORDINGS
from web.signaling import add_signaling_routes

log = logging.getLogger("switchboard")

MAX_DERIVED_CONNECTIONS = 10_000


def raise_open_file_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit (systemd starts services at 1,024
    unless the unit sets LimitNOFILE); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("open files: could not raise the limit from %d to %d: %s",
                        soft, target, exc)  # fmt: skip
    log.info("open files: limit %d (hard limit %s)", soft,
             "unlimited" if hard == resource.RLIM_INFINITY else hard)  # fmt: skip
    return soft


def http_connection_settings(config: Config, open_files: int) -> ConnectionSettings:
    """The HTTP connection caps; http.max_connections 0 means half the open-file limit
    (the other half is for SIP, media and the database), at most 10,000."""
    h = config.http
    total = h.max_connections or max(16, min(MAX_DERIVED_CONNECTIONS, open_files // 2))
    return ConnectionSettings(
        max_connections=total, max_per_source=h.max_connections_per_source,
        header_timeout=h.header_timeout, trusted_proxies=Networks(h.trusted_proxies),
    )  # fmt: skip


def admin_token(config: Config) -> str:
    """The configured token, else the one saved in the data directory (made on first start)."""
    if config.admin.token:
        return config.admin.token
    path = Path(config.store.path) / "admin-token"
    if path.exists():
        token = path.read_text().strip()
        if len(token) >= 16:
            return token
    if not path.parent.exists():  # the data directory: the service user's alone
        path.parent.mkdir(mode=0o700, parents=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode passes through the umask
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.warning("admin.token is not set: generated one, saved in %s", path)
    return token


class Server:
    """The whole process: store, focus, gateway and web, with one place to stop each."""

    def __init__(self, config: Config) -> None:
        self.config = config
        m = config.meetings
        self.store = Store(
            config.store.database, pin_length=config.dialplan.pin_length,
            defaults=RoomDefaults(lobby=m.default_lobby, guests=m.default_guests,
                                  start="hosts" if m.default_start == "hosts" else "anyone"),
        )  # fmt: skip
        self.focus = Focus()
        self.tokens = TokenVerifier(token_settings(config))
        self.lobby = Lobby()
        self.router = Router(self.store, config.dialplan.default_route)
        t = config.ivr.throttle
        self.throttle = PinThrottle(
            t.max_failures, t.window, t.block,
            max_concurrent_per_source=t.max_concurrent_per_source,
            checks_per_second=t.global_checks_per_second, checks_burst=t.global_checks_burst,
            max_check_wait=t.max_check_wait,
        )  # fmt: skip
        self.bridge = Bridge(BridgeSettings.from_config(config.bridge))
        rooms = StoreRooms(self.store)
        gateway_settings = GatewaySettings.from_config(config)
        self.cluster = cluster_node(config, lambda: live_rooms(self.focus, self.lobby),
                                    sip_address(gateway_settings.sip_listen,
                                                gateway_settings.sip_announce))
        self.meetings = Meetings(
            self.focus, self.bridge, rooms, _meeting_settings(config),
            gate=Gate(self.focus, rooms, self.tokens), lobby=self.lobby,
            placement=self.cluster.admit if self.cluster is not None else None,
        )  # fmt: skip
        if self.cluster is not None:  # a room's chat and places outlive its node (issue 19)
            self.meetings.peer_nodes = self.cluster.peer_urls  # a page's way out (`joined`)
            self.meetings.memory = self.room_state = RoomState(
                config.cluster.redis_url, history=m.chat_history,
                ttl=config.cluster.room_state_ttl, live_rooms=lambda: self.focus.live_rooms())
        # Phone callers reach the bridge through the focus (plain endpoints); their packets
        # travel over in-process links here, plain RTP to a bridge elsewhere in a cluster.
        self.phone_media = PhoneMedia(self.bridge, self.meetings)
        self.gateway = Gateway(
            gateway_settings, self.focus, self.router, self.store,
            self.throttle, media=self.phone_media, connect=self.bridge.connect_local,
            gate=self.meetings.gate, lobby=self.lobby,
            policy_changed=self.policy_changed,
            cluster=NodeSeat(self.cluster) if self.cluster is not None else None,
        )  # fmt: skip
        # Recordings: a plain endpoint at the bridge per recorded room (recorder/service.py);
        # the gateway's callers hear when one starts or stops.
        self.recordings = Recordings(
            RecorderSettings.from_config(config), self.focus, self.bridge,
            self.bridge.connect_local, on_change=self._recording_changed,
        )  # fmt: skip
        self.meetings.recording_control = self.recordings
        self.meetings.phone_send_back = self.gateway.send_back_to_lobby  # a moderator's send-back
        self.gateway.recording_switch = self.recordings  # a host caller's *3
        if self.cluster is not None:  # phone legs weigh on the stress figure twice
            self.cluster.legs = lambda: int(self.gateway.stats().get("legs", 0))
            self.cluster.on_room_notice("room-policy", self.meetings.policy_changed)
            self.cluster.on_lost_room = self.browsers_away
            # dial-out callees of a room taken over from a dead node are called again
            self.gateway.callee_memory = self.room_state
            self.cluster.on_rehomed = self._rehomed
        self._background: set[asyncio.Task[int]] = set()
        self.https = Https(config)
        self._runner: web.AppRunner | None = None
        self._metrics: web.AppRunner | None = None
        self._guard: ConnectionGuard | None = None
        self._bridge_started = False

    def _recording_changed(self, room: str, active: bool) -> None:
        self.gateway.rooms.recording_changed(room, active)
        self.meetings.recording_changed(room, active)
    def policy_changed(self, room: str) -> None:
        """A room's stored policy changed here (the API, a phone host): tell its browsers
        here, and in a cluster the node that hosts it (a notice on the channel)."""
        self.meetings.policy_changed(room)
        if self.cluster is not None:
            self.cluster.notify("room-policy", room=room)

    def _rehomed(self, room: str) -> None:
        """This node took `room` over from a dead node: its dial-out callees that asked
        for it are called again (gateway.dialout_calls.DialOutCalls.redial)."""
        task = asyncio.get_running_loop().create_task(self.gateway.redial(room))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def browsers_away(self, room: str) -> None:
        """Another node hosts `room` now: its phone callers here are handed there
        (gateway/handoff.py); its browsers here are closed with 1001: the page rejoins, is
        told the host (room-elsewhere) and opens the room there."""
        moved = self.gateway.room_moved(room)  # its callers here follow it (a hand-off)
        if moved:
            log.info("room %s moved to another node: %d caller(s) handed there", room, moved)
        for info in self.focus.participants(room):
            session = self.meetings.session(info.id)
            if session is not None:
                log.info("participant %s: room %s moved to another node", info.id, room)
                session.conn.close(CLOSE_GOING_AWAY, "the meeting moved to another node")

    def health(self) -> dict[str, bool]:
        return {
            "store": self.store.health(),
            "gateway": self.gateway.healthy(),
            "bridge": self._bridge_started,
            "web": self._runner is not None,
        }

    def stats(self) -> dict[str, int]:
        counts = dict(self.gateway.stats())
        counts["tasks"] = len(asyncio.all_tasks())
        bridge = self.bridge.stats()
        counts["endpoints"] = bridge.get("endpoints", 0)
        counts["bridge_conferences"] = bridge.get("conferences", 0)
        counts["bridge_datagrams_received"] = bridge.get("datagrams_received", 0)
        counts["bridge_packets_sent"] = bridge.get("packets_sent", 0)
        counts.update({k: v for k, v in bridge.items() if k.startswith("media_")})
        counts.update(self.meetings.stats())
        counts.update(self.lobby.stats())
        counts.update(self.recordings.stats())
        if self._guard is not None:
            counts.update(self._guard.stats())
        if self.cluster is not None:
            counts.update(self.cluster.stats())
        return counts

    async def start(self) -> None:
        open_files = raise_open_file_limit()
        for warning in exposure_warnings(self.config):
            log.warning("start-up: %s", warning)
        await self.bridge.start()
        self._bridge_started = True
        await self.gateway.start()
        if self.cluster is not None:
            await self.cluster.start()
        h = self.config.http
        web_settings = WebSettings.build(
            public_urls=h.public_urls, cors_origins=h.cors_origins,
            trusted_proxies=h.trusted_proxies, mapper_by_name=self.config.meetings.mapper_by_name,
            mapper_lookups_per_minute=h.mapper_lookups_per_minute, hsts_max_age=h.hsts_max_age,
        )  # fmt: skip
        token = admin_token(self.config)
        app = create_app(
            self.store, self.focus, admin_token=token,
            health=self.health, stats=self.stats, settings=web_settings,
            trunks=self.gateway.registry, dialout=self.gateway,
            default_country=self.config.dialplan.default_country,
            tokens=self.tokens, lobby=self.lobby, policy_changed=self.policy_changed,
        )  # fmt: skip
        app[RECORDINGS] = self.recordings
        if (node := self.cluster) is not None:
            add_cluster_route(app, node.status, lambda n, drain, force: node.drain(
                n, drain=drain, force=force))
            app[ROOM_OWNER] = node.owner_url
        add_signaling_routes(app, self.meetings)
        add_metrics_route(app, self._metric_stats, token, self.https.expiry)
        add_page_routes(app)
        connections = http_connection_settings(self.config, open_files)
        await self.https.start(connections)
        await self._start_metrics()
        http = self.config.http
        # The one place HTTP connections start: the guard caps them and times out slow
        # request heads; runner.cleanup() in stop() closes every one of them.
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=http.keepalive_timeout)
        await runner.setup()
        host, port = http.host_port
        guard = ConnectionGuard(connections)
        site = GuardedSite(runner, host, port, guard, ssl_context=self.https.context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._guard = runner, guard
        self.recordings.recover()  # recordings a crash cut short are closed and finalized
        log.info("%s: listening on %s:%d (at most %d connections, %d per address; request "
                 "heads within %.0f s)", "https" if http.tls else "http", host, port,
                 guard.settings.max_connections, guard.settings.max_per_source,
                 guard.settings.header_timeout)  # fmt: skip

    def _metric_stats(self) -> dict[str, int]:
        counts = self.stats()
        counts.update(self.focus.stats())
        return counts

    async def _start_metrics(self) -> None:
        where = self.config.metrics.host_port
        if where is None:
            return
        runner = web.AppRunner(metrics_app(self._metric_stats, self.https.expiry),
                               access_log=None)  # fmt: skip
        await runner.setup()
        try:
            await web.TCPSite(runner, *where).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._metrics = runner
        log.info("metrics: /metrics without a token on %s:%d", *where)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # closes every browser's WebSocket with 1001
            self._runner = None
        if self._metrics is not None:
            await self._metrics.cleanup()
            self._metrics = None
        await self.https.stop()
        await self.recordings.close()
        await self.meetings.close()
        if self.cluster is not None:
            await self.cluster.stop()  # gives its rooms back: a clean stop is not a death
        await self.gateway.stop()
        if self._bridge_started:
            await self.bridge.stop()
            self._bridge_started = False
        self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        try:
            yield self
        finally:
            await self.stop()


def live_rooms(focus: Focus, lobby: Lobby) -> dict[str, int]:
    """{room: people here} for a cluster node's claims: participants and those waiting in
    the room's lobby (a room whose only people wait for a host is still hosted here)."""
    rooms = lobby.waiting_rooms()
    for room, count in focus.live_rooms().items():
        rooms[room] = rooms.get(room, 0) + count
    return rooms


def cluster_node(config: Config, rooms: Callable[[], Mapping[str, int]],
                 sip: str = "") -> ClusterNode | None:
    """This process as a node of a cluster ([cluster] redis_url), else None; `rooms` gives
    {room: people here}; `sip` where other nodes hand it phone calls."""
    c = config.cluster
    if not c.redis_url:
        return None
    if not config.admin.token:
        log.warning("cluster: admin.token is not set: each node generates its own, so one "
                    "token does not open /api/ on every node")
    settings = ClusterSettings(redis_url=c.redis_url, node_id=c.node_id or default_node_id(),
                               public_url=c.public_url.rstrip("/"), sip=sip)  # fmt: skip
    return ClusterNode(settings, rooms)


def token_settings(config: Config) -> TokenSettings:
    """[auth] as the token verifier takes it: the public key file read now (a bad file
    stops start-up with its name)."""
    a = config.auth
    public_key = Path(a.jwt_public_key).read_text() if a.jwt_public_key else ""
    return TokenSettings(
        secret=a.jwt_secret, public_key=public_key, jwks_url=a.jwt_jwks_url,
        issuers=a.jwt_issuers, audience=a.jwt_audience, max_lifetime=a.jwt_max_lifetime,
        leeway=a.jwt_leeway, jwks_refresh=a.jwt_jwks_refresh,
    )  # fmt: skip


def _meeting_settings(config: Config) -> MeetingSettings:
    m, b = config.meetings, config.bridge
    ice = IceServers(
        stun_urls=tuple(b.stun_servers), turn_urls=tuple(b.turn_servers),
        secret=b.turn_secret, ttl=b.turn_ttl, username=b.turn_username,
        password=b.turn_password,
    )  # fmt: skip
    return MeetingSettings(
        create_rooms=m.create_rooms, max_participants=m.max_participants,
        chat_history=m.chat_history, ice=ice,
        joins_per_minute=m.joins_per_minute, rooms_per_hour=m.rooms_per_hour,
        max_endpoints_per_source=m.max_endpoints_per_source,
    )  # fmt: skip


async def run(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(config)
    loop.add_signal_handler(signal.SIGHUP, server.https.reload)
    try:
        async with server.running():
            _tune_gc()
            log.info("switchboard: serving (pid %d)", os.getpid())
            await stop.wait()
            log.info("switchboard: stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _tune_gc() -> None:
    """Media runs on a 20 ms clock: a full collection over every object the process made at
    start-up (modules, prompts, tables) is a stall the mixer feels. Freeze those objects out
    of the collector, and collect the young generation less often (the hot paths allocate
    little, so this costs little memory). SWITCHBOARD_GC=default keeps Python's settings."""
    if os.environ.get("SWITCHBOARD_GC") == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def serve(config: Config) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without
        log.warning("uvloop is not installed: using the default asyncio loop")
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
