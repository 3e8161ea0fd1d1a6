"""switchboard/nodes_plan.py: one configuration per node from a base configuration, without
I/O; and the launcher's restart backoff."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import parse_config
from switchboard.nodes import BACKOFF_MAX_S, STABLE_AFTER_S, Child
from switchboard.nodes_plan import (
    NodesError,
    default_prefix,
    node_count,
    plan_nodes,
    split_ports,
    to_toml,
)

REDIS = "unix:///srv/c/redis/redis.sock?db=0"
PG = "postgresql://switchboard@/switchboard?host=/srv/c/postgres"


def plans(raw: dict[str, Any], count: int = 2, **kw: Any) -> list[Any]:
    args: dict[str, Any] = {"root": Path("/srv/c"), "prefix": "h-", "step": 10,
                            "public_host": "", "redis_url": REDIS, "store_url": PG,
                            "token": "t" * 32} | kw
    return plan_nodes(raw, parse_config(raw), count, **args)


def test_node_count() -> None:
    assert node_count("auto", 2) == 2
    assert node_count("auto", None) == 1
    assert node_count(" 3 ", 2) == 3
    for bad in ("0", "65", "-1", "two", ""):
        with pytest.raises(NodesError):
            node_count(bad, 2)


def test_default_prefix_is_a_valid_node_id_start() -> None:
    assert default_prefix("box.example.org") == "box-"
    assert default_prefix("we!rd name") == "we-rd-name-"
    assert default_prefix("...") == "node-"


def test_rtp_ports_split_in_equal_even_shares() -> None:
    assert [split_ports((20000, 20999), 2, i) for i in (0, 1)] == ["20000-20499",
                                                                  "20500-20999"]
    assert split_ports((20001, 20999), 3, 2) == "20666-20997"
    with pytest.raises(NodesError):
        split_ports((20000, 20005), 2, 0)


def test_defaults_give_each_node_its_own_ports_data_and_identity() -> None:
    a, b = plans({"log": {"level": "warning"}})
    assert (a.node_id, b.node_id) == ("h-1", "h-2")
    assert a.config["http"]["listen"] == "0.0.0.0:8080"
    assert b.config["http"]["listen"] == "0.0.0.0:8090"
    assert a.sip == ("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
    assert b.sip == ("udp:0.0.0.0:5070", "tcp:0.0.0.0:5070")
    assert b.config["sip"]["listen"] == list(b.sip)
    assert (a.config["bridge"], b.config["bridge"]) == (
        {"udp_port": 10000, "tcp_port": 4443}, {"udp_port": 10010, "tcp_port": 4453})
    assert b.config["media"]["rtp_ports"] == "20500-20999"
    assert b.config["store"] == {"path": "/srv/c/nodes/h-2/data", "url": PG}
    assert b.config["cluster"] == {"redis_url": REDIS, "node_id": "h-2",
                                   "public_url": "http://127.0.0.1:8090"}
    assert a.config["admin"]["token"] == b.config["admin"]["token"] == "t" * 32
    assert b.config["log"] == {"level": "warning"}  # the base's other keys are kept
    parse_config(tomllib.loads(to_toml(b.config)))  # and the result is a valid config


def test_public_host_scheme_and_port_step(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    raw = {"http": {"listen": "10.0.0.5:8443", "tls_cert": str(cert), "tls_key": str(key)},
           "sip": {"listen": ["udp:[::1]:5060"]}, "bridge": {"tcp_port": 0},
           "metrics": {"listen": "10.0.0.5:9100"}}
    a, b = plans(raw, step=1)
    assert a.public_url == "https://10.0.0.5:8443" and b.public_url == "https://10.0.0.5:8444"
    assert b.sip == ("udp:[::1]:5061",)
    assert b.config["bridge"]["tcp_port"] == 0  # off stays off
    assert b.config["metrics"] == {"listen": "10.0.0.5:9101"}
    assert b.config["http"]["tls_cert"] == str(cert)
    (c,) = plans({}, count=1, public_host="meet.example.org")
    assert c.public_url == "http://meet.example.org:8080"


def test_what_cannot_be_split_is_refused() -> None:
    with pytest.raises(NodesError, match="acme_domains"):
        plans({"http": {"acme_domains": ["meet.example.org"], "listen": "0.0.0.0:443"}})
    plans({"http": {"acme_domains": ["meet.example.org"], "listen": "0.0.0.0:443"}}, count=1)
    with pytest.raises(NodesError, match="65535"):
        plans({"http": {"listen": "127.0.0.1:65530"}})
    with pytest.raises(NodesError, match="port-step"):
        plans({}, step=0)


def test_toml_round_trip() -> None:
    data = {"a": 1, "b": "x\"y", "c": [1, 2], "t": {"k": True, "u": {"v": 1.5}},
            "arr": [{"n": 1}, {"n": 2}], "odd key": "z"}
    assert tomllib.loads(to_toml(data)) == data


def test_restart_backoff_doubles_while_it_dies_young_and_resets_after() -> None:
    child = Child("n1", ["true"])
    child.started_at = 100.0
    assert [child.next_delay(101.0) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert BACKOFF_MAX_S == 30
    assert child.next_delay(100.0 + STABLE_AFTER_S) == 1  # it ran a minute: from 1 s again
