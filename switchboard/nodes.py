"""`switchboard nodes`: several nodes on one machine, one per core, as one supervised group.

What `make run NODES=auto` (or NODES=3) runs. It starts Redis and PostgreSQL as processes
under the cluster's folder (switchboard/nodes_services.py; or uses the `--redis-url` /
`--store-url` given, e.g. servers shared with nodes on other machines), writes one
configuration per node (switchboard/nodes_plan.py) under DIR/nodes/NODE_ID/, and runs one
`switchboard serve` per node. One process supervises them all:

- every child runs in a process group of its own (a Ctrl-C at the terminal reaches the
  launcher only) and gets SIGTERM if the launcher dies, even by SIGKILL;
- SIGTERM or SIGINT: the nodes are stopped (SIGTERM, then SIGKILL after 20 s), then Redis
  and PostgreSQL; SIGHUP is passed on to the nodes (they reload their certificates);
- a child that exits on its own is started again after 1 s, then 2, 4... up to 30 s while it
  keeps failing within a minute of its start;
- every line a child prints is printed with its name in front ("n1 | ...");
- DIR/nodes.json says what runs: each node's id, pid, public URL and SIP addresses, and the
  services' pids (rewritten at each start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchboard.config import Config, ConfigError, load_config
from switchboard.nodes_plan import (
    DEFAULT_STEP,
    NodePlan,
    NodesError,
    default_prefix,
    node_count,
    plan_nodes,
    to_toml,
)
from switchboard.nodes_services import (
    Service,
    ServiceError,
    die_with_parent,
    postgres_service,
    redis_service,
    wait_ready,
)

log = logging.getLogger("switchboard.nodes")

STOP_TIMEOUT_S = 20.0
BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_AFTER_S = 1.0, 30.0, 60.0


def add_parser(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("nodes", help="run several nodes on this machine (one per core), "
                       "with Redis and PostgreSQL, as one supervised group")
    config_arg(p)
    p.add_argument("--count", default="auto", help="'auto' (one per core) or a number")
    p.add_argument("--dir", default="data/cluster", type=Path,
                   help="the nodes' configurations and data, Redis's and PostgreSQL's files")
    p.add_argument("--port-step", type=int, default=DEFAULT_STEP,
                   help="node i listens on each configured port + i * STEP")
    p.add_argument("--public-host", default="",
                   help="the host name or address in the nodes' public URLs (default: "
                        "http.listen's address, 127.0.0.1 for a wildcard)")
    p.add_argument("--node-prefix", default="", help="node ids are PREFIX1, PREFIX2...; "
                   "default: this host's short name and a dash")
    p.add_argument("--redis-url", default="", help="an existing Redis (default: the "
                   "configuration's cluster.redis_url, else one started here)")
    p.add_argument("--store-url", default="", help="an existing PostgreSQL database "
                   "(default: the configuration's store.url, else one started here)")


class Child:
    """One supervised process: started, watched, restarted, stopped."""

    def __init__(self, name: str, argv: list[str], stop_signal: int = signal.SIGTERM) -> None:
        self.name, self.argv, self.stop_signal = name, argv, stop_signal
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST_S
        self.restarts = 0
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.started_at = time.monotonic()
        log.info("nodes: %s started (pid %d)", self.name, self.proc.pid)
        self._pump = asyncio.get_running_loop().create_task(self._copy_output(self.proc))

    async def _copy_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        out = sys.stdout
        while line := await proc.stdout.readline():
            out.write(f"{self.name} | {line.decode('utf-8', 'replace').rstrip()}\n")
            out.flush()

    def next_delay(self, now: float) -> float:
        """The wait before a restart: doubled while it dies young, reset when it lived."""
        if now - self.started_at >= STABLE_AFTER_S:
            self.backoff = BACKOFF_FIRST_S
        delay = self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        return delay

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None:
            return
        if self.alive():
            self.signal(self.stop_signal)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                log.warning("nodes: %s (pid %d) did not stop within %.0f s: SIGKILL",
                            self.name, self.proc.pid, timeout)
                self.signal(signal.SIGKILL)
                await asyncio.wait_for(self.proc.wait(), 10.0)
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 5.0)


class Launcher:
    def __init__(self, root: Path, services: list[tuple[Service, Child]],
                 nodes: list[tuple[NodePlan, Child]]) -> None:
        self.root, self.services, self.nodes = root, services, nodes
        self.stopping = asyncio.Event()

    def children(self) -> list[Child]:
        return [c for _, c in self.services] + [c for _, c in self.nodes]

    def write_state(self) -> None:
        state = {
            "launcher": os.getpid(),
            "services": {s.name: c.pid for s, c in self.services},
            "nodes": [{"id": p.node_id, "pid": c.pid, "public_url": p.public_url,
                       "sip": list(p.sip)} for p, c in self.nodes],
        }  # fmt: skip
        tmp = self.root / "nodes.json.new"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.root / "nodes.json")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._pass_on, signal.SIGHUP)
        try:
            for service, child in self.services:
                await child.start()
                await asyncio.to_thread(wait_ready, service, child.alive)
                log.info("nodes: %s ready", service.name)
                if self.stopping.is_set():
                    return 0
            for plan, child in self.nodes:
                await child.start()
                log.info("nodes: %s at %s, SIP %s", plan.node_id, plan.public_url,
                         ", ".join(plan.sip))
            self.write_state()
            await self._watch()
            return 0
        except ServiceError as exc:
            log.error("nodes: %s", exc)
            return 1
        finally:
            await self._stop_all()

    def _stop(self, sig: int) -> None:
        if not self.stopping.is_set():
            log.info("nodes: %s: stopping every node, then Redis and PostgreSQL",
                     signal.Signals(sig).name)
        self.stopping.set()

    def _pass_on(self, sig: int) -> None:
        log.info("nodes: %s passed on to the nodes", signal.Signals(sig).name)
        for _, child in self.nodes:
            child.signal(sig)

    async def _watch(self) -> None:
        """Until a stop signal: restart whatever exits."""
        restarts: dict[Child, float] = {}  # child -> when to start it again
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                for child in self.children():
                    if child.alive() or child in restarts:
                        continue
                    assert child.proc is not None
                    delay = child.next_delay(now)
                    log.error("nodes: %s (pid %d) exited with %s: starting it again in "
                              "%.0f s", child.name, child.proc.pid, child.proc.returncode, delay)
                    restarts[child] = now + delay
                for child, when in list(restarts.items()):
                    if now >= when:
                        del restarts[child]
                        child.restarts += 1
                        try:
                            await child.start()
                        except OSError as exc:  # no process could be made: later again
                            delay = child.next_delay(now)
                            log.error("nodes: %s cannot be started (%s): again in %.0f s",
                                      child.name, exc, delay)
                            restarts[child] = now + delay
                            continue
                        self.write_state()
                waits = [asyncio.ensure_future(c.proc.wait()) for c in self.children()
                         if c.proc is not None and c.alive()]
                timeout = max(0.05, min(restarts.values(), default=now + 1.0) - now)
                await asyncio.wait([stop, *waits], timeout=min(timeout, 1.0),
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
        finally:
            stop.cancel()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(c.stop() for _, c in self.nodes), return_exceptions=True)
        for _, child in reversed(self.services):
            await child.stop()
        with contextlib.suppress(OSError):
            self.write_state()
        log.info("nodes: every node and service stopped")


def _admin_token(config: Config, root: Path) -> str:
    """The base configuration's admin.token, else one made once and kept in DIR/admin-token
    (mode 0600): every node of a cluster needs the same."""
    if config.admin.token:
        return config.admin.token
    path = root / "admin-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.info("nodes: the admin token of every node is in %s", path)
    return token


def build(config: Config, config_path: str | None, args: argparse.Namespace) -> Launcher:
    """The services and the nodes' configurations, written; nothing started yet."""
    count = node_count(args.count, len(os.sched_getaffinity(0)))
    raw: dict[str, Any] = {}
    if config_path:
        with open(config_path, "rb") as fh:
            raw = tomllib.load(fh)
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # the postgres user passes through, nobody else lists it
    services: list[tuple[Service, Child]] = []
    redis_url = args.redis_url or config.cluster.redis_url
    store_url = args.store_url or (config.store.url if config.store.postgres else "")
    if not redis_url:
        redis = redis_service(root)
        services.append((redis, Child("redis", redis.argv, redis.stop_signal)))
        redis_url = redis.url
    if not store_url:
        pg = postgres_service(root)
        services.append((pg, Child("postgres", pg.argv, pg.stop_signal)))
        store_url = pg.url
    plans = plan_nodes(raw, config, count, root=root, step=args.port_step,
                       prefix=args.node_prefix or default_prefix(),
                       public_host=args.public_host, redis_url=redis_url,
                       store_url=store_url, token=_admin_token(config, root))
    nodes = []
    for plan in plans:
        folder = root / "nodes" / plan.node_id
        (folder / "data").mkdir(parents=True, exist_ok=True)
        path = folder / "switchboard.toml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the token
        with os.fdopen(fd, "w") as fh:
            fh.write(f"# node {plan.node_id}, written by `switchboard nodes` at each start "
                     f"(edit the base configuration instead)\n" + to_toml(plan.config))
        load_config(path)  # every node's configuration is valid before anything starts
        argv = [sys.executable, "-m", "switchboard", "serve", "--config", str(path)]
        nodes.append((plan, Child(plan.node_id, argv)))
    started = [s.name for s, _ in services]
    log.info("nodes: %d nodes; %s", len(nodes),
             f"{' and '.join(started)} started here" if started else "Redis and PostgreSQL given")
    return Launcher(root, services, nodes)


def run_nodes(config: Config, config_path: str | None, args: argparse.Namespace) -> int:
    log.setLevel(min(log.getEffectiveLevel(), logging.INFO))  # its few lines always show
    try:
        launcher = build(config, config_path, args)
    except (NodesError, ServiceError, ConfigError, OSError) as exc:
        sys.stderr.write(f"switchboard nodes: {exc}\n")
        return 2
    return asyncio.run(launcher.run())
