"""The configuration loader: defaults, strict validation, and the documented example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from switchboard.config import Config, ConfigError, ListenAddress, load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "switchboard.example.toml"


def test_defaults_need_no_file() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.sip.listen_addresses == [
        ListenAddress("udp", "0.0.0.0", 5060),
        ListenAddress("tcp", "0.0.0.0", 5060),
    ]
    assert config.http.host_port == ("0.0.0.0", 8080)


def test_example_documents_every_key_with_its_default() -> None:
    with open(EXAMPLE, "rb") as fh:
        data = tomllib.load(fh)
    assert parse_config(data) == Config()

    def keys(obj: object, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name in obj.__dataclass_fields__:  # type: ignore[attr-defined]
            value = getattr(obj, name)
            if hasattr(value, "__dataclass_fields__"):
                out |= keys(value, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    def toml_keys(d: dict[str, object], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in d.items():
            if isinstance(v, dict):
                out |= toml_keys(v, f"{prefix}{k}.")
            else:
                out.add(prefix + k)
        return out

    assert toml_keys(data) == keys(Config())


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[sip]\nlisten = ["udp:127.0.0.1:5070"]\n[media]\nrtp_ports = "30000-30100"\n'
        '[admin]\ntoken = "0123456789abcdef0123"\n'
    )
    config = load_config(f)
    assert config.sip.listen_addresses == [ListenAddress("udp", "127.0.0.1", 5070)]
    assert config.media.port_range == (30000, 30100)
    assert config.http == Config().http
    assert config.admin.token == "0123456789abcdef0123"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sip": {"lissten": []}}, "sip.lissten: unknown key"),
        ({"bogus": {}}, "bogus: unknown key"),
        ({"sip": {"listen": "udp:1.2.3.4:5060"}}, "sip.listen: expected a list"),
        ({"sip": {"listen": ["sctp:127.0.0.1:5060"]}}, "sip.listen: expected 'udp:HOST:PORT'"),
        ({"sip": {"listen": ["udp:127.0.0.1:70000"]}}, "sip.listen: port must be 1-65535"),
        ({"http": {"listen": "localhost"}}, "http.listen: expected 'host:port'"),
        ({"http": {"public_urls": ["meet.example.org"]}}, "http.public_urls[0]: expected a URL"),
        ({"http": {"cors_origins": ["*"]}}, "http.cors_origins[0]: expected a URL"),
        ({"http": {"public_urls": ["https://x.example/meet"]}}, "http.public_urls[0]"),
        ({"http": {"trusted_proxies": ["proxy"]}}, "http.trusted_proxies[0]"),
        ({"http": {"max_connections_per_source": 0}}, "http.max_connections_per_source"),
        ({"http": {"header_timeout": 0}}, "http.header_timeout"),
        ({"meetings": {"joins_per_minute": 0}}, "meetings.joins_per_minute"),
        ({"meetings": {"max_endpoints_per_source": -1}}, "meetings.max_endpoints_per_source"),
        ({"meetings": {"mapper_by_name": "no"}}, "meetings.mapper_by_name: expected boolean"),
        ({"meetings": {"create_rooms": "some"}}, "meetings.create_rooms: expected 'anyone'"),
        ({"meetings": {"default_start": "all"}}, "meetings.default_start"),
        ({"auth": {"jwt_secret": "short"}}, "auth.jwt_secret: expected at least 32"),
        ({"auth": {"jwt_public_key": "/nonexistent.pem"}}, "auth.jwt_public_key"),
        ({"auth": {"jwt_jwks_url": "ftp://x"}}, "auth.jwt_jwks_url"),
        ({"auth": {"jwt_issuers": "one"}}, "auth.jwt_issuers: expected a list"),
        ({"auth": {"jwt_leeway": 3600}}, "auth.jwt_leeway"),
        ({"auth": {"jwt_max_lifetime": 1}}, "auth.jwt_max_lifetime"),
        ({"media": {"address": "not-an-ip"}}, "media.address: expected an IP address"),
        ({"media": {"rtp_ports": "3000"}}, "media.rtp_ports: expected 'LOW-HIGH'"),
        ({"media": {"rtp_ports": "30000-20000"}}, "media.rtp_ports"),
        ({"media": {"timeout": "5"}}, "media.timeout: expected number"),
        ({"bridge": {"udp_ports": "40000-40999"}}, "bridge.udp_ports: unknown key"),
        ({"bridge": {"udp_port": 0}}, "bridge.udp_port: expected 1-65535"),
        ({"bridge": {"tcp_port": 70000}}, "bridge.tcp_port"),
        ({"bridge": {"turn_servers": ["turn:t.example.org:3478"]}}, "bridge.turn_secret"),
        ({"bridge": {"turn_servers": ["stun:t.example.org"], "turn_secret": "s"}},
         "bridge.turn_servers: expected URLs starting turn: or turns:"),
        ({"bridge": {"turn_secret": "s", "turn_ttl": 10}}, "bridge.turn_ttl"),
        ({"admin": {"token": "short"}}, "admin.token: expected at least 16"),
        ({"ivr": {"max_attempts": True}}, "ivr.max_attempts: expected an integer"),
        ({"ivr": {"throttle": {"window": 0}}}, "ivr.throttle"),
        ({"ivr": {"lobby_max_wait": 10}}, "ivr.lobby_max_wait: expected 60 to 86400"),
        ({"ivr": {"throttle": {"nope": 1}}}, "ivr.throttle.nope: unknown key"),
        ({"dialplan": {"default_route": "room:"}}, "dialplan.default_route"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"store": {"url": "mysql://x"}}, "store.url"),
        ({"cluster": {"redis_url": "127.0.0.1:6379"}}, "cluster.redis_url: expected"),
        ({"cluster": {"redis_url": "redis://127.0.0.1:6379/0"}},
         "cluster.redis_url: a cluster keeps its rooms in PostgreSQL"),
        ({"cluster": {"node_id": "node one"}}, "cluster.node_id"),
        ({"cluster": {"public_url": "node1.example.org"}}, "cluster.public_url"),
        ({"cluster": {"public_url": "https://node1.example.org/meet"}}, "cluster.public_url"),
        ({"http": {"tls_cert": "/nonexistent/cert.pem"}}, "http.tls_cert and http.tls_key"),
        ({"http": {"tls_cert": "/nonexistent/c.pem", "tls_key": "/nonexistent/k.pem"}},
         "http.tls_cert: '/nonexistent/c.pem' is not a file"),
        ({"http": {"acme_domains": "meet.example.org"}}, "http.acme_domains: expected a list"),
        ({"http": {"acme_domains": ["*.example.org"]}}, "http.acme_domains[0]: expected a DNS"),
        ({"http": {"acme_domains": ["192.0.2.1"]}}, "http.acme_domains[0]"),
        ({"http": {"acme_domains": ["Meet.Example.org"]}}, "http.acme_domains[0]"),
        ({"http": {"acme_domains": ["a.example.org", "a.example.org"]}}, "listed twice"),
        ({"http": {"acme_directory": "ftp://ca.example/dir"}}, "http.acme_directory"),
        ({"http": {"acme_directory": "http://ca.example/dir"}}, "expected an https:// URL"),
        ({"http": {"acme_email": "not an address"}}, "http.acme_email"),
        ({"http": {"acme_ca_bundle": "/nonexistent/ca.pem"}}, "http.acme_ca_bundle"),
        ({"http": {"acme_http_listen": "80"}}, "http.acme_http_listen: expected 'host:port'"),
        ({"http": {"acme_domains": ["a.example.org"], "listen": "0.0.0.0:80"}},
         "http.acme_http_listen: must differ from http.listen"),
        ({"http": {"tls_reload_interval": 0}}, "http.tls_reload_interval"),
        ({"http": {"hsts_max_age": -1}}, "http.hsts_max_age"),
        ({"metrics": {"listen": "localhost:9100"}}, "metrics.listen: expected an IP address"),
        ({"sip": {"digest_algorithms": []}}, "sip.digest_algorithms"),
        ({"sip": {"digest_algorithms": ["SHA-512-256"]}}, "sip.digest_algorithms"),
        ({"sip": {"digest_algorithms": ["MD5", "MD5"]}}, "sip.digest_algorithms"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_tls_keys(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    config = parse_config({"http": {"tls_cert": str(cert), "tls_key": str(key)}})
    assert config.http.tls
    with pytest.raises(ConfigError, match="not both"):
        parse_config({"http": {"tls_cert": str(cert), "tls_key": str(key),
                               "acme_domains": ["meet.example.org"]}})  # fmt: skip
    acme = parse_config({"http": {"listen": "0.0.0.0:443", "acme_domains": ["meet.example.org"],
                                  "acme_email": "ops@example.org"}})  # fmt: skip
    assert acme.http.tls and acme.http.acme_http_host_port == ("0.0.0.0", 80)
    assert not Config().http.tls  # the default stays plain HTTP
    assert Config().metrics.host_port is None


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[sip\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from switchboard.cli import main

    good = tmp_path / "good.toml"
    good.write_text('[http]\nlisten = "127.0.0.1:8081"\n')
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[http]\nlisten = 8080\n')
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(bad)])
    assert info.value.code == 2
    assert "http.listen: expected string" in capsys.readouterr().err


def test_create_rooms_of_older_files_still_reads() -> None:
    """Before issue 17 meetings.create_rooms was a boolean."""
    assert parse_config({"meetings": {"create_rooms": True}}).meetings.create_rooms == "anyone"
    assert parse_config({"meetings": {"create_rooms": False}}).meetings.create_rooms == "nobody"
    assert parse_config({"meetings": {"create_rooms": "hosts"}}).meetings.create_rooms == "hosts"


def test_sip_over_tls_needs_its_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert"):
        parse_config({"sip": {"listen": ["tls:127.0.0.1:5061"]}})
    with pytest.raises(ConfigError, match="no such file"):
        parse_config({"sip": {"listen": ["tls:127.0.0.1:5061"], "tls_cert": "/nope.pem",
                              "tls_key": "/nope.key"}})
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    config = parse_config({"sip": {"listen": ["tls:127.0.0.1:5061", "udp:127.0.0.1:5060"],
                                   "tls_cert": str(cert), "tls_key": str(key)}})
    assert [a.transport for a in config.sip.listen_addresses] == ["tls", "udp"]
    with pytest.raises(ConfigError, match="tls:HOST:PORT"):
        parse_config({"sip": {"listen": ["sctp:127.0.0.1:5060"]}})


def test_a_cluster_node_on_redis_and_postgresql() -> None:
    config = parse_config({
        "store": {"url": "postgresql://switchboard@127.0.0.1:5432/switchboard"},
        "cluster": {"redis_url": "redis://127.0.0.1:6379/0", "node_id": "node-1",
                    "public_url": "https://node1.example.org"},
    })  # fmt: skip
    assert config.store.postgres
    assert config.store.database == "postgresql://switchboard@127.0.0.1:5432/switchboard"
    assert config.cluster.node_id == "node-1"
    assert parse_config({}).store.database.endswith("switchboard.db")
    assert parse_config({"store": {"url": "sqlite:"}}).store.database.endswith("switchboard.db")


def test_one_public_address_is_what_sip_phone_and_browser_media_announce() -> None:
    config = parse_config({"server": {"public_address": "203.0.113.7"},
                           "media": {"address": "10.0.0.5"},
                           "bridge": {"address": "10.0.0.5"}})  # fmt: skip
    assert config.sip.announce == config.media.announce == config.bridge.announce \
        == "203.0.113.7"
    assert config.media.address == config.bridge.address == "10.0.0.5"
    explicit = parse_config({"server": {"public_address": "203.0.113.7"},
                             "sip": {"announce": "198.51.100.1"},
                             "bridge": {"announce": "198.51.100.2"}})  # fmt: skip
    assert explicit.sip.announce == "198.51.100.1"  # each explicit key still wins
    assert explicit.bridge.announce == "198.51.100.2"
    assert explicit.media.announce == "203.0.113.7"
    unset = parse_config({"media": {"address": "10.0.0.5"}})
    assert unset.media.announce_address == "10.0.0.5" and unset.sip.announce == ""
    for bad in ("meet.example.org", "0.0.0.0", "::"):
        with pytest.raises(ConfigError, match=r"server\.public_address"):
            parse_config({"server": {"public_address": bad}})
