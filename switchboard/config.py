"""Configuration: one TOML file, every key with a default, strict validation.

An unknown key or a value of the wrong type or shape stops start-up with a `ConfigError`
that names the key and says what was expected. `deploy/switchboard.example.toml` documents
every key; a test checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchboard.config_base import ConfigError, ListenAddress, parse_hostport
from switchboard.config_base import check_ip as _check_ip
from switchboard.config_base import parse_listen as _parse_listen
from switchboard.config_http import HttpConfig, MetricsConfig
from switchboard.config_http import validate_http as _validate_http
from switchboard.config_recording import RecordingConfig
from switchboard.config_recording import validate_recording as _validate_recording

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "BridgeConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DialplanConfig",
    "HttpConfig",
    "IvrConfig",
    "ListenAddress",
    "LogConfig",
    "MediaConfig",
    "MeetingConfig",
    "MetricsConfig",
    "RecordingConfig",
    "ServerConfig",
    "SipConfig",
    "SipLimitsConfig",
    "StoreConfig",
    "ThrottleConfig",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The one setting for where the server is reached: `public_address`, when set, is what
    sip.announce, media.announce and bridge.announce default to (each set one still wins)."""

    public_address: str = ""


@dataclass(frozen=True, slots=True)
class SipLimitsConfig:
    """SIP load shedding (gateway/shedding.py); per-source limits skip sip.trusted_peers."""

    request_rate: float = 20.0
    request_burst: int = 60
    invite_rate: float = 5.0
    invite_burst: int = 10
    calls_in_setup_per_source: int = 10
    calls_in_setup: int = 1000
    scan_targets: int = 10
    scan_failures: int = 10
    scan_window: float = 60.0
    block_time: float = 600.0
    retry_after: int = 10
    reclaim_free_ports: float = 0.1
    reclaim_after: float = 3.0
    max_sources: int = 10000
    max_finished_transactions: int = 20000


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen: tuple[str, ...] = ("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
    announce: str = ""
    user_agent: str = "Switchboard"
    session_expires: int = 1800
    min_se: int = 90
    tcp_idle_timeout: float = 300.0
    max_tcp_connections: int = 1024
    max_tcp_connections_per_source: int = 32
    trusted_peers: tuple[str, ...] = ("127.0.0.0/8", "::1")
    require_trunk: bool = False
    digest_realm: str = "switchboard"
    nonce_lifetime: float = 300.0
    # the digest challenges' algorithms, one 407 header each in this order (RFC 7616 3.7)
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    tls_cert: str = ""   # PEM: the certificate (chain) of tls: listen addresses
    tls_key: str = ""    # PEM: its private key
    tls_ca: str = ""     # PEM: CAs to verify TLS peers we connect to ("": the system's)
    tls_keylog: str = ""  # debugging: append TLS secrets to this file ("": never)
    dns_server: str = ""  # IP:PORT of the DNS server for trunk host names ("": the system's)
    dialout_ringing_timeout: float = 45.0  # dial-out: seconds of ringing before CANCEL
    dialout_display: str = "mask"  # how a called-out number shows: show | mask | hide
    limits: SipLimitsConfig = field(default_factory=SipLimitsConfig)

    @property
    def listen_addresses(self) -> list[ListenAddress]:
        return [_parse_listen("sip.listen", item) for item in self.listen]


@dataclass(frozen=True, slots=True)
class MediaConfig:
    address: str = "127.0.0.1"
    announce: str = ""
    rtp_ports: str = "20000-20999"
    timeout: float = 30.0
    relatch_after: float = 3.0
    relatch_packets: int = 5
    mixed_browser_streams: int = 3
    opus_complexity: int = 0
    opus_complexity_wideband: int = 5

    @property
    def announce_address(self) -> str:
        return self.announce or self.address

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.rtp_ports.partition("-")
        return int(low), int(high)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    address: str = "127.0.0.1"
    announce: str = ""
    udp_port: int = 10000
    tcp_port: int = 4443  # 0: no ICE-TCP
    stun_servers: tuple[str, ...] = ()
    turn_servers: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl: int = 86400
    turn_username: str = ""
    turn_password: str = ""
    last_n: int = 20
    endpoint_timeout: float = 15.0

    @property
    def announce_address(self) -> str:
        return self.announce or self.address


CREATE_ROOMS = ("anyone", "hosts", "nobody")


@dataclass(frozen=True, slots=True)
class MeetingConfig:
    create_rooms: str = "anyone"  # true/false of older files read as "anyone"/"nobody"
    default_lobby: bool = False
    default_start: str = "anyone"
    default_guests: bool = True
    max_participants: int = 100
    chat_history: int = 50
    joins_per_minute: int = 30
    rooms_per_hour: int = 20
    max_endpoints_per_source: int = 20
    mapper_by_name: bool = True


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = "./data"
    url: str = ""

    @property
    def postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    @property
    def database_path(self) -> Path:
        """The SQLite file (store.url "sqlite:///PATH", else PATH/switchboard.db)."""
        if self.url.startswith("sqlite:") and self.url not in ("sqlite:", "sqlite://"):
            return Path(self.url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        return Path(self.path) / "switchboard.db"

    @property
    def database(self) -> str:
        """What dialplan.store.Store opens: the PostgreSQL URL, else the SQLite file."""
        return self.url if self.postgres else str(self.database_path)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Nodes coordinated through Redis (cluster/); empty redis_url: one process, no cluster."""

    redis_url: str = ""
    node_id: str = ""  # empty: HOSTNAME-PID
    public_url: str = ""  # the URL browsers use for this node
    room_state_ttl: float = 600.0  # seconds a room's chat and resume entries outlive it


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str = ""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Tokens (JWT, as Jitsi's) for the meeting page and the API (focus/tokens.py)."""

    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_jwks_url: str = ""
    jwt_issuers: tuple[str, ...] = ()
    jwt_audience: str = ""
    jwt_max_lifetime: float = 86400.0
    jwt_leeway: float = 30.0
    jwt_jwks_refresh: float = 300.0


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    max_failures: int = 10
    window: float = 600.0
    block: float = 900.0
    max_concurrent_per_source: int = 5
    global_checks_per_second: float = 20.0
    global_checks_burst: int = 40
    max_check_wait: float = 20.0


@dataclass(frozen=True, slots=True)
class IvrConfig:
    prompts_dir: str = ""
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    max_attempts: int = 3
    max_pin_length: int = 12
    lobby_max_wait: float = 1800.0  # seconds a caller may wait in a lobby before goodbye
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)


@dataclass(frozen=True, slots=True)
class DialplanConfig:
    default_route: str = "pin"
    pin_length: int = 8
    default_country: str = ""


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    meetings: MeetingConfig = field(default_factory=MeetingConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    ivr: IvrConfig = field(default_factory=IvrConfig)
    dialplan: DialplanConfig = field(default_factory=DialplanConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file; None gives the defaults."""
    if path is None:
        return parse_config({})
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> Config:
    meetings = data.get("meetings")
    if isinstance(meetings, dict) and isinstance(meetings.get("create_rooms"), bool):
        # before issue 17 the key was a boolean: keep such files working
        data = {**data, "meetings": {**meetings, "create_rooms":
                                     "anyone" if meetings["create_rooms"] else "nobody"}}
    config = _build(Config, data, "")
    assert isinstance(config, Config)
    config = _public_address(config)
    _validate(config)
    return config


def _public_address(config: Config) -> Config:
    """server.public_address fills sip.announce, media.announce and bridge.announce where
    they are empty (an explicit one wins)."""
    public = config.server.public_address
    if not public:
        return config
    _check_ip("server.public_address", public)
    if ipaddress.ip_address(public).is_unspecified:
        raise ConfigError("server.public_address: expected the address phones and browsers "
                          f"reach this server at, not {public!r}")
    return dataclasses.replace(
        config,
        sip=dataclasses.replace(config.sip, announce=config.sip.announce or public),
        media=dataclasses.replace(config.media, announce=config.media.announce or public),
        bridge=dataclasses.replace(config.bridge, announce=config.bridge.announce or public),
    )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return _build(tp, value, key + ".")
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{prefix}{key}: unknown key (known keys here: {known})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if isinstance(tp, types.UnionType):  # pragma: no cover - no optional keys today
            tp = typing.get_args(tp)[0]
        kwargs[name] = _coerce(tp, value, prefix + name)
    return cls(**kwargs)


def _validate_sip_limits(sip: SipConfig) -> None:
    if not 1 <= sip.max_tcp_connections_per_source <= sip.max_tcp_connections:
        raise ConfigError("sip.max_tcp_connections_per_source: expected 1 to "
                          "sip.max_tcp_connections")
    limits = sip.limits
    positive = ("request_rate", "invite_rate", "scan_window", "reclaim_after")
    at_least_one = ("request_burst", "invite_burst", "calls_in_setup_per_source",
                    "calls_in_setup", "scan_targets", "scan_failures", "max_sources",
                    "max_finished_transactions")
    for name in positive:
        if getattr(limits, name) <= 0:
            raise ConfigError(f"sip.limits.{name}: expected a positive number")
    for name in at_least_one:
        if getattr(limits, name) < 1:
            raise ConfigError(f"sip.limits.{name}: expected at least 1")
    if limits.block_time < 0:
        raise ConfigError("sip.limits.block_time: expected 0 or more seconds")
    if not 1 <= limits.retry_after <= 3600:
        raise ConfigError("sip.limits.retry_after: expected 1 to 3600 seconds")
    if not 0 <= limits.reclaim_free_ports < 1:
        raise ConfigError("sip.limits.reclaim_free_ports: expected a fraction from 0 to "
                          "below 1")


def _validate_auth(auth: AuthConfig) -> None:
    if auth.jwt_secret and len(auth.jwt_secret) < 32:
        raise ConfigError("auth.jwt_secret: expected at least 32 characters (HS256 needs a "
                          "secret as long as its hash)")
    if auth.jwt_public_key and not Path(auth.jwt_public_key).is_file():
        raise ConfigError(f"auth.jwt_public_key: {auth.jwt_public_key!r} is not a file "
                          "(expected a PEM public key)")
    if auth.jwt_jwks_url and not auth.jwt_jwks_url.startswith(("https://", "http://")):
        raise ConfigError("auth.jwt_jwks_url: expected an https:// URL")
    for i, issuer in enumerate(auth.jwt_issuers):
        if not issuer:
            raise ConfigError(f"auth.jwt_issuers[{i}]: expected a non-empty string")
    if not 60 <= auth.jwt_max_lifetime <= 31 * 86400:
        raise ConfigError("auth.jwt_max_lifetime: expected 60 to 2678400 seconds")
    if not 0 <= auth.jwt_leeway <= 300:
        raise ConfigError("auth.jwt_leeway: expected 0 to 300 seconds")
    if not 10 <= auth.jwt_jwks_refresh <= 86400:
        raise ConfigError("auth.jwt_jwks_refresh: expected 10 to 86400 seconds")


_PORTS = re.compile(r"^(\d{1,5})-(\d{1,5})$")
_LEVELS = ("debug", "info", "warning", "error")


def _validate_cluster(config: Config) -> None:
    c = config.cluster
    if c.redis_url and not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("cluster.redis_url: expected '' (no cluster) or 'redis://HOST:PORT/DB' "
                          "('rediss://' for TLS, 'unix://PATH')")
    if c.node_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", c.node_id):
        raise ConfigError("cluster.node_id: expected 1 to 64 characters from A-Z, a-z, 0-9, "
                          "'.', '_', '-' (or '' for HOSTNAME-PID)")
    if c.public_url and not re.fullmatch(r"https?://[^/\s?#]+/?", c.public_url):
        raise ConfigError("cluster.public_url: expected 'http(s)://HOST[:PORT]' (or '')")
    if not 10.0 <= c.room_state_ttl <= 604800.0:
        raise ConfigError("cluster.room_state_ttl: expected seconds from 10 to 604800")
    if c.redis_url and not config.store.postgres:
        raise ConfigError("cluster.redis_url: a cluster keeps its rooms in PostgreSQL: set "
                          "store.url = 'postgresql://...' (every node on the same database)")


def _validate(config: Config) -> None:
    if not config.sip.listen:
        raise ConfigError("sip.listen: expected at least one 'udp:HOST:PORT' address")
    config.sip.listen_addresses  # noqa: B018 - parses and raises on a bad entry
    if config.sip.announce:
        _check_ip("sip.announce", config.sip.announce)
    for i, peer in enumerate(config.sip.trusted_peers):
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(f"sip.trusted_peers[{i}]: expected an IP address or network "
                              f"like '192.0.2.0/24', got {peer!r}") from None
    _validate_sip_limits(config.sip)
    if config.sip.min_se < 90:
        raise ConfigError("sip.min_se: expected at least 90 seconds (RFC 4028)")
    if config.sip.session_expires < config.sip.min_se:
        raise ConfigError("sip.session_expires: expected a value >= sip.min_se")
    _validate_http(config.http)
    _check_ip("media.address", config.media.address)
    if config.media.announce:
        _check_ip("media.announce", config.media.announce)
    m = _PORTS.match(config.media.rtp_ports)
    if m is None:
        raise ConfigError(f"media.rtp_ports: expected 'LOW-HIGH', got {config.media.rtp_ports!r}")
    low, high = int(m.group(1)), int(m.group(2))
    if not (1024 <= low < high <= 65535) or high - low < 3:
        raise ConfigError(
            "media.rtp_ports: expected 1024 <= LOW < HIGH <= 65535 with room for two legs, "
            f"got {config.media.rtp_ports!r}"
        )
    if config.media.timeout <= 0:
        raise ConfigError("media.timeout: expected a positive number of seconds")
    if not 0.5 <= config.media.relatch_after <= 60:
        raise ConfigError("media.relatch_after: expected 0.5 to 60 seconds")
    if not 2 <= config.media.relatch_packets <= 50:
        raise ConfigError("media.relatch_packets: expected 2 to 50")
    if not 1 <= config.media.mixed_browser_streams <= 16:
        raise ConfigError("media.mixed_browser_streams: expected 1 to 16")
    if not 0 <= config.media.opus_complexity <= 10:
        raise ConfigError("media.opus_complexity: expected 0 to 10")
    if not 0 <= config.media.opus_complexity_wideband <= 10:
        raise ConfigError("media.opus_complexity_wideband: expected 0 to 10")
    bridge = config.bridge
    _check_ip("bridge.address", bridge.address)
    if bridge.announce:
        _check_ip("bridge.announce", bridge.announce)
    if not 1 <= bridge.udp_port <= 65535:
        raise ConfigError(f"bridge.udp_port: expected 1-65535, got {bridge.udp_port!r}")
    if not 0 <= bridge.tcp_port <= 65535:
        raise ConfigError(f"bridge.tcp_port: expected 1-65535 (0: off), got {bridge.tcp_port!r}")
    for key, urls, schemes in (
        ("bridge.stun_servers", bridge.stun_servers, ("stun:",)),
        ("bridge.turn_servers", bridge.turn_servers, ("turn:", "turns:")),
    ):
        for url in urls:
            if not url.startswith(schemes):
                raise ConfigError(f"{key}: expected URLs starting {' or '.join(schemes)}, "
                                  f"got {url!r}")
    if bridge.turn_servers and not (bridge.turn_secret or (bridge.turn_username
                                                           and bridge.turn_password)):
        raise ConfigError("bridge.turn_servers: needs bridge.turn_secret (or "
                          "bridge.turn_username and bridge.turn_password)")
    if not 60 <= bridge.turn_ttl <= 7 * 86400:
        raise ConfigError("bridge.turn_ttl: expected 60 to 604800 seconds")
    if bridge.last_n < -1 or bridge.last_n == 0:
        raise ConfigError("bridge.last_n: expected -1 (no limit) or a positive number")
    if bridge.endpoint_timeout <= 0:
        raise ConfigError("bridge.endpoint_timeout: expected a positive number of seconds")
    if not 2 <= config.meetings.max_participants <= 1000:
        raise ConfigError("meetings.max_participants: expected 2-1000")
    if not 0 <= config.meetings.chat_history <= 1000:
        raise ConfigError("meetings.chat_history: expected 0-1000")
    for name in ("joins_per_minute", "rooms_per_hour", "max_endpoints_per_source"):
        if not 1 <= getattr(config.meetings, name) <= 100_000:
            raise ConfigError(f"meetings.{name}: expected 1-100000")
    if config.meetings.create_rooms not in CREATE_ROOMS:
        raise ConfigError("meetings.create_rooms: expected 'anyone', 'hosts' or 'nobody'")
    if config.meetings.default_start not in ("anyone", "hosts"):
        raise ConfigError("meetings.default_start: expected 'anyone' or 'hosts'")
    _validate_auth(config.auth)
    if config.store.url and not (config.store.url.startswith("sqlite:")
                                 or config.store.postgres):
        raise ConfigError("store.url: expected '' or 'sqlite:///PATH' (a file) or "
                          "'postgresql://USER[:PASSWORD]@HOST[:PORT]/DB'")
    _validate_cluster(config)
    if config.admin.token and len(config.admin.token) < 16:
        raise ConfigError("admin.token: expected at least 16 characters (or empty to generate)")
    ivr = config.ivr
    for name in ("first_digit_timeout", "inter_digit_timeout"):
        if getattr(ivr, name) <= 0:
            raise ConfigError(f"ivr.{name}: expected a positive number of seconds")
    if not 1 <= ivr.max_attempts <= 10:
        raise ConfigError("ivr.max_attempts: expected 1-10")
    if not 4 <= ivr.max_pin_length <= 20:
        raise ConfigError("ivr.max_pin_length: expected 4-20")
    if not 60 <= ivr.lobby_max_wait <= 86400:
        raise ConfigError("ivr.lobby_max_wait: expected 60 to 86400 seconds")
    if ivr.prompts_dir and not Path(ivr.prompts_dir).is_dir():
        raise ConfigError(f"ivr.prompts_dir: {ivr.prompts_dir!r} is not a directory")
    t = ivr.throttle
    if t.max_failures < 1 or t.window <= 0 or t.block < 0:
        raise ConfigError(
            "ivr.throttle: expected max_failures >= 1, window > 0 and block >= 0"
        )
    if not 1 <= t.max_concurrent_per_source <= 1000:
        raise ConfigError("ivr.throttle.max_concurrent_per_source: expected 1-1000")
    if t.global_checks_per_second <= 0:
        raise ConfigError("ivr.throttle.global_checks_per_second: expected a positive number")
    if t.global_checks_burst < 1:
        raise ConfigError("ivr.throttle.global_checks_burst: expected at least 1")
    if t.max_check_wait <= 0:
        raise ConfigError("ivr.throttle.max_check_wait: expected a positive number of seconds")
    route = config.dialplan.default_route
    if route not in ("pin", "reject") and not (route.startswith("room:") and len(route) > 5):
        raise ConfigError(
            f"dialplan.default_route: expected 'pin', 'reject' or 'room:NAME', got {route!r}"
        )
    if not 4 <= config.dialplan.pin_length <= min(12, ivr.max_pin_length):
        raise ConfigError("dialplan.pin_length: expected 4-12, at most ivr.max_pin_length")
    config.metrics.host_port  # noqa: B018 - parses and raises on a bad value
    country = config.dialplan.default_country
    if country and not (country.isascii() and country.isdigit() and len(country) <= 3
                        and country[0] != "0"):
        raise ConfigError(f"dialplan.default_country: expected a calling code like '1' or "
                          f"'44' (digits, no '+'), or '' for none, got {country!r}")
    if not config.sip.digest_realm or not re.fullmatch(r"[A-Za-z0-9.:_-]{1,64}",
                                                        config.sip.digest_realm):
        raise ConfigError("sip.digest_realm: expected 1 to 64 characters from A-Z, a-z, 0-9, "
                          "'.', ':', '_', '-'")
    if not 10 <= config.sip.nonce_lifetime <= 3600:
        raise ConfigError("sip.nonce_lifetime: expected 10-3600 seconds")
    algorithms = config.sip.digest_algorithms
    if not algorithms or len(set(algorithms)) != len(algorithms) \
            or any(a not in ("SHA-256", "MD5") for a in algorithms):
        raise ConfigError("sip.digest_algorithms: expected one or both of \"SHA-256\" and "
                          "\"MD5\", each once")
    keylog = config.sip.tls_keylog
    if keylog and not os.path.isdir(os.path.dirname(os.path.abspath(keylog))):
        raise ConfigError(f"sip.tls_keylog: no such directory for {keylog}")
    if config.sip.dns_server:
        parse_hostport("sip.dns_server", config.sip.dns_server)
    if not 5 <= config.sip.dialout_ringing_timeout <= 300:
        raise ConfigError("sip.dialout_ringing_timeout: expected 5-300 seconds")
    if config.sip.dialout_display not in ("show", "mask", "hide"):
        raise ConfigError("sip.dialout_display: expected 'show', 'mask' or 'hide'")
    if any(a.transport == "tls" for a in config.sip.listen_addresses) \
            and not (config.sip.tls_cert and config.sip.tls_key):
        raise ConfigError("sip.listen has a tls: address: set sip.tls_cert and sip.tls_key")
    for key in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(config.sip, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"sip.{key}: no such file: {path}")
    _validate_recording(config.recording)
    if config.log.level not in _LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(_LEVELS)}")
