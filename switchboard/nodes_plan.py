"""What `switchboard nodes` starts, decided without I/O: one node configuration per core.

Every node is `switchboard serve` with the base configuration (the operator's file, or the
defaults) and its own ports: node i (0-based) listens on each base port + i * step (HTTP,
each SIP address, the bridge's UDP and TCP ports, metrics), takes the i-th equal share of
`media.rtp_ports`, keeps its data in a folder of its own, and joins the cluster under
`cluster.node_id` = PREFIX + (i + 1), with `cluster.public_url` naming its own HTTP port.
All share `admin.token`, `store.url` (PostgreSQL) and `cluster.redis_url`.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.config import Config
from switchboard.toml_write import to_toml

__all__ = ["NodePlan", "NodesError", "deep_merge", "default_prefix", "node_count",
           "plan_nodes", "split_ports", "to_toml"]  # to_toml: the per-node files' writer

MAX_NODES = 64
DEFAULT_STEP = 10  # 5060, 5070...: a step of 1 would put node 2's SIP on 5061 (SIP over TLS)
_WILDCARD = ("0.0.0.0", "::", "")


class NodesError(ValueError):
    """A node count or a base configuration that cannot be split into nodes."""


@dataclass(frozen=True)
class NodePlan:
    node_id: str
    config: dict[str, Any]   # the node's whole configuration (base + its own keys)
    public_url: str
    sip: tuple[str, ...]     # its SIP listen addresses (what phones and trunks point at)


def node_count(spec: str, cpus: int | None) -> int:
    """'auto' (one per core) or a number, 1..MAX_NODES."""
    text = spec.strip().lower()
    if text == "auto":
        return max(1, min(cpus or 1, MAX_NODES))
    if not text.isdigit() or not 1 <= int(text) <= MAX_NODES:
        raise NodesError(f"nodes: expected 'auto' or 1-{MAX_NODES}, got {spec!r}")
    return int(text)


def default_prefix(hostname: str | None = None) -> str:
    """The host's short name, cleaned to what cluster.node_id accepts, and a dash."""
    name = (hostname or socket.gethostname()).split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", name).strip("-")[:40] or "node"
    return f"{name}-"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(key: str, port: int, offset: int) -> int:
    moved = port + offset
    if not 1 <= moved <= 65535:
        raise NodesError(f"{key}: port {port} + {offset} is beyond 65535: use a lower base "
                         f"port or a smaller --port-step")
    return moved


def split_ports(ports: tuple[int, int], count: int, index: int) -> str:
    """The index-th of `count` equal shares of LOW-HIGH, each starting on an even port."""
    low, high = ports
    share = (high - low + 1) // count // 2 * 2
    if share < 4:
        raise NodesError(f"media.rtp_ports: {low}-{high} is too small for {count} nodes")
    start = low + (low % 2) + index * share
    return f"{start}-{start + share - 1}"


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` over it, tables merged key by key (the tests' configs use it too)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def plan_nodes(raw: dict[str, Any], config: Config, count: int, *, root: Path,
               prefix: str, step: int, public_host: str, redis_url: str, store_url: str,
               token: str) -> list[NodePlan]:
    """`raw`: the base file as read (kept as it is apart from the keys set here); `config`:
    the same, validated (its effective values, defaults included)."""
    if not 1 <= step <= 1000:
        raise NodesError(f"--port-step: expected 1-1000, got {step}")
    if count > 1 and config.http.acme_domains:
        raise NodesError("http.acme_domains: ACME's HTTP-01 answers on one port 80 and gets "
                         "one certificate per host: run several nodes behind a proxy that "
                         "holds the certificate (docs/deploy.md), with plain HTTP nodes")
    http_host, http_port = config.http.host_port
    scheme = "https" if config.http.tls else "http"
    host = public_host or (http_host if http_host not in _WILDCARD else "127.0.0.1")
    plans = []
    for i in range(count):
        node_id = f"{prefix}{i + 1}"
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", node_id):
            raise NodesError(f"node id {node_id!r}: 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'")
        off = i * step
        port = _port("http.listen", http_port, off)
        sip = tuple(f"{a.transport}:{_hostport(a.host, _port('sip.listen', a.port, off))}"
                    for a in config.sip.listen_addresses)
        own: dict[str, Any] = {
            "http": {"listen": _hostport(http_host, port)},
            "sip": {"listen": list(sip)},
            "media": {"rtp_ports": split_ports(config.media.port_range, count, i)},
            "bridge": {"udp_port": _port("bridge.udp_port", config.bridge.udp_port, off),
                       "tcp_port": _port("bridge.tcp_port", config.bridge.tcp_port, off)
                       if config.bridge.tcp_port else 0},
            "store": {"path": str(root / "nodes" / node_id / "data"), "url": store_url},
            "admin": {"token": token},
            "cluster": {"redis_url": redis_url, "node_id": node_id,
                        "public_url": f"{scheme}://{_hostport(host, port)}"},
        }  # fmt: skip
        if config.metrics.listen:
            m_host, m_port = config.metrics.host_port or ("", 0)
            own["metrics"] = {"listen": _hostport(m_host, _port("metrics.listen", m_port, off))}
        plans.append(NodePlan(node_id, deep_merge(raw, own), own["cluster"]["public_url"], sip))
    return plans
