"""Issue 19's idle figure: what heartbeats and coordination cost a node when nothing happens.

Two idle cluster nodes (cluster_nodes.py: one Redis, one PostgreSQL as `switchboard nodes`
runs them) and, for comparison, one idle node without cluster settings (SQLite, no other
server), all started, healthy and left alone for a settling time; then over one window: the
CPU of each process from /proc (a node's own threads; Redis; PostgreSQL's postmaster and
its backends), and the commands Redis processed (INFO stats, total_commands_processed,
minus the INFO calls themselves). The cost of being a cluster node is the cluster node's CPU
minus the lone node's.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

from .common import Budget, Figure, cpu_seconds, start_server, stop_server

log = logging.getLogger("bench.cluster_idle")

FIGURES: dict[str, tuple[str, str]] = {
    "cluster-idle": ("Idle cost per node of heartbeats and coordination",
                     "report (no target set)"),
}
NODES = 2
SETTLE_S = 5.0


def tree(pid: int) -> list[int]:
    """`pid` and its descendants now (through /proc's children lists)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def info_counter(info: str, key: str) -> int:
    """A number from Redis's INFO text ("key:value" lines); 0 when absent."""
    for line in info.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name == key:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def redis_info(sock: Path) -> str:
    """INFO stats over the Unix socket (RESP bulk string)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(str(sock))
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]):
                break
    return data.decode("utf-8", "replace")


def idle_figure(window_s: float, lone: float, nodes: list[float], redis: float,
                postgres: float, commands: int, *, how: str,
                title: str = FIGURES["cluster-idle"][0],
                goal: str = FIGURES["cluster-idle"][1]) -> Figure:
    """CPU in % of one core over the window; `commands`: Redis commands in the window."""
    if not nodes or window_s <= 0:
        return Figure(title, "not measured", goal, how)
    per_node = sum(nodes) / len(nodes)
    rate = commands / window_s / len(nodes)
    measured = (f"{per_node:.2f}% of a core per idle cluster node against {lone:.2f}% for a "
                f"node without a cluster (+{per_node - lone:.2f}%); Redis {rate:.1f} commands/s "
                f"per node, Redis {redis / len(nodes):.2f}% and PostgreSQL "
                f"{postgres / len(nodes):.2f}% of a core per node")
    details = {"window_s": window_s, "lone_node_percent": round(lone, 3),
               "cluster_node_percent": [round(x, 3) for x in nodes],
               "redis_percent": round(redis, 3), "postgres_percent": round(postgres, 3),
               "redis_commands_per_s_per_node": round(rate, 2)}
    return Figure(title, measured, goal, how, details=details)


def measure_idle(workdir: Path, *, budget_s: float = 120.0, window_s: float = 30.0) -> Figure:
    from .cluster_nodes import start_cluster

    title, goal = FIGURES["cluster-idle"]
    how = (f"{NODES} idle nodes on one Redis and one PostgreSQL (as `switchboard nodes` runs "
           f"them) and one idle node without cluster settings, not pinned; after {SETTLE_S:g} s "
           f"of quiet, CPU from /proc over {window_s:g} s (a node's threads; Redis; PostgreSQL's "
           f"postmaster and backends) and Redis's total_commands_processed")
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    lone = start_server(workdir, cpu=None, name="lone", rtp_port_count=100)
    cluster = start_cluster()
    try:
        ids = [f"i{k + 1}" for k in range(NODES)]
        nodes = [cluster.start_node(i, cpu=None, workdir=workdir) for i in ids]
        cluster.wait_alive(ids)
        if not budget.fits(SETTLE_S + window_s + 5):
            return Figure(title, "not measured", goal, f"{how}; time budget spent")
        time.sleep(SETTLE_S)
        sock = cluster.root / "redis" / "redis.sock"
        pids = {"lone": lone.pid, "redis": cluster.services[0].main_pid,
                "postgres": cluster.services[1].main_pid,
                **{i: n.pid for i, n in zip(ids, nodes, strict=True)}}
        c0 = {k: tree_cpu_seconds(p) if k == "postgres" else cpu_seconds(p)
              for k, p in pids.items()}
        r0, t0 = info_counter(redis_info(sock), "total_commands_processed"), time.monotonic()
        time.sleep(window_s)
        r1 = info_counter(redis_info(sock), "total_commands_processed")
        wall = time.monotonic() - t0
        pct = {k: 100.0 * ((tree_cpu_seconds(p) if k == "postgres" else cpu_seconds(p))
                           - c0[k]) / wall for k, p in pids.items()}
    finally:
        stop_server(lone)
        cluster.stop()
    return idle_figure(wall, pct["lone"], [pct[i] for i in ids], pct["redis"],
                       pct["postgres"], max(0, r1 - r0 - 1), how=how, title=title, goal=goal)
