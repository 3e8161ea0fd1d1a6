"""`switchboard nodes` (what `make run NODES=2` runs): the launcher starts its own Redis and
PostgreSQL under its folder and two `switchboard serve` nodes that form one cluster (each
lists two live nodes in GET /api/cluster, a room made on one is seen on the other); a node
killed with SIGKILL is started again and comes back into the cluster; SIGTERM to the
launcher stops every node and both servers."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, RTP_PORT_COUNT, to_toml
from peers import procs
from peers.throwaway import new_folder, require

log = logging.getLogger(__name__)
TOKEN = secrets.token_urlsafe(24)


def api(base_url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError as err:
        return 0, str(err)


def alive_ids(base_url: str) -> dict[str, bool]:
    status, data = api(base_url, "GET", "/api/cluster")
    return {n["id"]: n["alive"] for n in data["nodes"]} if status == 200 else {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped by its parent) has stopped too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def state(root: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((root / "nodes.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def wait_for(what: str, predicate: Any, timeout: float, proc: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{proc.log_tail(80)}",
                        pytrace=False)
        time.sleep(0.2)


def test_two_nodes_one_cluster_restarted_after_a_crash_stopped_together() -> None:
    require("redis-server", "redis-server")
    require("/usr/lib/postgresql/15/bin/postgres", "postgresql-15")
    folder = new_folder("sb-nodes-")  # PostgreSQL (as the user postgres) must reach it
    http = procs.find_port_block(2, kinds=("tcp",))
    rtp = procs.find_port_block(2 * RTP_PORT_COUNT, kinds=("udp",))
    base = {
        "http": {"listen": f"{procs.LOOPBACK}:{http}"},
        "sip": {"listen": [f"udp:{procs.LOOPBACK}:{procs.find_port_block(2, kinds=('udp',))}"]},
        "media": {"address": procs.LOOPBACK, "rtp_ports": f"{rtp}-{rtp + 2 * RTP_PORT_COUNT - 1}"},
        "bridge": {"address": procs.LOOPBACK,
                   "udp_port": procs.find_port_block(2, kinds=("udp",)),
                   "tcp_port": procs.find_port_block(2, kinds=("tcp",))},
        "admin": {"token": TOKEN},
    }  # fmt: skip
    config = folder / "base.toml"
    config.write_text(to_toml(base))
    root = folder / "cluster"
    launcher = procs.start_process(
        [sys.executable, "-m", "switchboard", "nodes", "--config", str(config), "--count", "2",
         "--port-step", "1", "--node-prefix", "t", "--dir", str(root)],
        name="nodes", log_dir=folder, timeout_s=600, cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), kill_after_s=60)
    urls = [f"http://{procs.LOOPBACK}:{http}", f"http://{procs.LOOPBACK}:{http + 1}"]
    try:
        # both nodes up, one cluster: each lists two live nodes
        for url in urls:
            wait_for(f"two live nodes at {url}",
                     lambda u=url: alive_ids(u) == {"t1": True, "t2": True}, 90, launcher)
        running = state(root)
        assert [n["id"] for n in running["nodes"]] == ["t1", "t2"]
        assert [n["public_url"] for n in running["nodes"]] == urls
        assert (root / "nodes" / "t1" / "switchboard.toml").stat().st_mode & 0o777 == 0o600
        # one PostgreSQL behind both: a room made on one node is seen on the other
        status, made = api(urls[0], "POST", "/api/rooms", {"name": "launched"})
        assert status == 201, made
        status, seen = api(urls[1], "GET", "/api/rooms/launched")
        assert status == 200 and seen["pin"] == made["pin"], seen
        # a crashed node is started again and comes back into the cluster
        first = running["nodes"][0]["pid"]
        os.kill(first, signal.SIGKILL)
        wait_for("t1 restarted", lambda: state(root)["nodes"][0]["pid"] not in (first, None),
                 30, launcher)
        wait_for("t1 back", lambda: alive_ids(urls[1]) == {"t1": True, "t2": True}, 60,
                 launcher)
        assert launcher.running()
        running = state(root)
        pids = [n["pid"] for n in running["nodes"]] + list(running["services"].values())
        assert len(pids) == 4 and all(pid_alive(p) for p in pids), running
    finally:
        # SIGTERM to the launcher: every node, then Redis and PostgreSQL, are stopped
        launcher.signal(signal.SIGTERM)
        try:
            code = launcher.wait(timeout=60)
        finally:
            launcher.stop(term_timeout=5)
    assert code == 0, launcher.log_tail(40)
    assert all(not pid_alive(p) for p in pids), [p for p in pids if pid_alive(p)]
    text = launcher.log_text()
    assert "t1 | " in text and "t2 | " in text and "postgres | " in text
    assert "every node and service stopped" in text
    for url in urls:
        assert api(url, "GET", "/api/health")[0] == 0  # nothing answers any more
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_goes_elsewhere_when_its_user_cannot_reach_the_folder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, a cluster folder under a 0700 parent (a clone in /root): PostgreSQL's files
    go to the fallback folder, where initdb (as the user postgres) succeeds."""
    from switchboard import nodes_services

    outer = new_folder("sb-nodes-closed-")
    os.chmod(outer, 0o700)
    fallback = new_folder("sb-nodes-fallback-") / "pg"
    monkeypatch.setattr(nodes_services, "FALLBACK_ROOT", fallback)
    try:
        service = nodes_services.postgres_service(outer / "cluster")
        if os.geteuid() == 0:
            assert nodes_services._unreachable(outer / "cluster") == outer
            assert service.socket_path.parent == fallback / "postgres"
            assert (fallback / "postgres" / "data" / "PG_VERSION").exists()
        else:  # the server runs as this user, who can enter its own folder
            assert service.socket_path.parent == outer / "cluster" / "postgres"
    finally:
        shutil.rmtree(outer, ignore_errors=True)
        shutil.rmtree(fallback.parent, ignore_errors=True)
