"""A cluster for the benchmarks of issue 19 (cluster_failover.py, cluster_capacity.py): Redis
and PostgreSQL started as `switchboard nodes` starts them (switchboard/nodes_services.py:
processes under a folder of their own, Unix sockets only), and `switchboard serve` nodes on
fresh 127.0.0.1 ports with one admin token, each pinned to a core or not.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchboard.nodes_services import postgres_service, redis_service, wait_ready

from .common import (
    REPO,
    BenchError,
    SwitchboardServer,
    deep_merge,
    procs,
    server_command,
    stop_server,
    to_toml,
    wait_healthy,
)

log = logging.getLogger("bench.cluster")


@dataclass
class Cluster:
    """Redis, PostgreSQL and the nodes started so far (by node id)."""

    root: Path
    redis_url: str
    store_url: str
    services: list[procs.ManagedProcess]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    nodes: dict[str, SwitchboardServer] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)

    def start_node(self, node_id: str, *, cpu: int | None, rtp_ports: int = 400,
                   bridge_ports: int = 200, extra: dict[str, Any] | None = None,
                   workdir: Path | None = None) -> SwitchboardServer:
        """A node on fresh ports (or, for a node id started before, its own configuration
        again: a node restarted after a kill)."""
        path = self.configs.get(node_id)
        if path is None:
            path = self._write_config(node_id, rtp_ports, bridge_ports, extra or {},
                                      workdir or self.root)
        config = _read(path)
        argv = server_command(path)
        if cpu is not None and cpu < (os.cpu_count() or 1) and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = procs.start_process(argv, name=node_id, log_dir=path.parent, timeout_s=3600,
                                   cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        low, high = (int(x) for x in config["media"]["rtp_ports"].split("-"))
        server = SwitchboardServer(
            sip_port=int(config["sip"]["listen"][0].rsplit(":", 1)[1]),
            http_port=int(config["http"]["listen"].rsplit(":", 1)[1]), token=self.token,
            rtp_low=low, rtp_high=high, config_path=path, data_dir=path.parent / "data",
            log_path=proc.log_path, proc=proc)
        self.nodes[node_id] = server
        try:
            wait_healthy(server, 60.0)
        except BaseException:
            stop_server(server)
            raise
        return server

    def _write_config(self, node_id: str, rtp_ports: int, bridge_ports: int,
                      extra: dict[str, Any], workdir: Path) -> Path:
        root = workdir / node_id
        (root / "data").mkdir(parents=True, exist_ok=True)
        sip = procs.free_port(kinds=("udp", "tcp"))
        http = procs.free_port(kinds=("tcp",))
        rtp = procs.find_port_block(rtp_ports, kinds=("udp",))  # never another node's
        bridge = procs.find_port_block(bridge_ports, kinds=("udp",))
        base = {
            "sip": {"listen": [f"udp:{procs.LOOPBACK}:{sip}"]},
            # the load comes from one address: the per-source limits (docs/security.md)
            # would refuse it, and are not what is measured
            "http": {"listen": f"{procs.LOOPBACK}:{http}", "max_connections_per_source": 10000,
                     "mapper_lookups_per_minute": 100000},
            "meetings": {"joins_per_minute": 100000, "rooms_per_hour": 100000,
                         "max_endpoints_per_source": 100000},
            "media": {"address": procs.LOOPBACK, "rtp_ports": f"{rtp}-{rtp + rtp_ports - 1}",
                      "timeout": 30.0},
            "bridge": {"address": procs.LOOPBACK, "udp_port": bridge, "tcp_port": 0},
            "store": {"path": str(root / "data"), "url": self.store_url},
            "admin": {"token": self.token},
            "log": {"level": "warning"},
            "cluster": {"redis_url": self.redis_url, "node_id": node_id,
                        "public_url": f"http://{procs.LOOPBACK}:{http}"},
        }  # fmt: skip
        path = root / "switchboard.toml"
        path.write_text(to_toml(deep_merge(base, extra)))
        self.configs[node_id] = path
        return path

    def alive(self, via: SwitchboardServer) -> dict[str, bool]:
        try:
            resp = via.api("GET", "/api/cluster", timeout=2.0)
        except OSError:
            return {}
        if resp.status != 200:
            return {}
        return {n["id"]: n["alive"] for n in resp.json()["nodes"]}

    def wait_alive(self, ids: list[str], timeout: float = 30.0) -> None:
        """Every node in `ids` lists exactly those as alive (others may be listed dead)."""
        deadline = time.monotonic() + timeout
        want = set(ids)
        while True:
            views = [self.alive(self.nodes[i]) for i in ids]
            if all({k for k, v in view.items() if v} == want for view in views):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the nodes do not see {sorted(want)} alive within "
                                 f"{timeout:.0f} s: {views}")
            time.sleep(0.2)

    def stop(self) -> None:
        for server in self.nodes.values():
            stop_server(server)
        for proc in reversed(self.services):
            proc.stop(term_timeout=20.0)
        shutil.rmtree(self.root, ignore_errors=True)


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    with open(path, "rb") as fh:
        return tomllib.load(fh)


def start_cluster() -> Cluster:
    """Redis and PostgreSQL, no node yet. Their folder is under the temporary directory
    (PostgreSQL runs as the user postgres when we are root: the bench's own work folder,
    mode 0700, is closed to it)."""
    root = Path(tempfile.mkdtemp(prefix="sb-bench-cluster-"))
    os.chmod(root, 0o711)
    started: list[procs.ManagedProcess] = []
    try:
        urls = []
        for service in (redis_service(root), postgres_service(root)):
            proc = procs.start_process(service.argv, name=service.name, log_dir=root,
                                       timeout_s=3600)
            started.append(proc)
            wait_ready(service, proc.running, timeout=60.0)
            urls.append(service.url)
    except BaseException:
        for proc in reversed(started):
            proc.stop(term_timeout=20.0)
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Cluster(root, urls[0], urls[1], started)
