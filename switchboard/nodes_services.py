"""The Redis and PostgreSQL of `switchboard nodes`: processes under the cluster's folder.

Not the system's services: nothing system-wide is configured or left running, they stop with
the nodes, and the system's own PostgreSQL cluster (5432) and Redis (6379) are left alone.
Both listen on a Unix socket only, in a folder only their user (and root) may enter:

- Redis: DIR/redis/redis.sock, no TCP port, no persistence (the registry and the room map
  are rebuilt by the nodes' next heartbeats);
- PostgreSQL (the Debian package's binaries): DIR/postgres/data made by initdb on the first
  start, superuser `switchboard`, local (socket) connections trusted, no TCP; the database
  `switchboard` created when missing. As root it runs as the `postgres` user (it refuses
  root); when that user cannot reach DIR (a clone under /root, mode 0700), its folder is
  /var/lib/switchboard-nodes/postgres instead.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("switchboard.nodes")

PG_USER = "switchboard"
PG_DATABASE = "switchboard"
#: where PostgreSQL's folder goes when the postgres user cannot reach the cluster's folder
FALLBACK_ROOT = Path("/var/lib/switchboard-nodes")
_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """Redis or PostgreSQL cannot be set up or started here."""


@dataclass
class Service:
    """One program the launcher runs and restarts: its command line and readiness check."""

    name: str
    argv: list[str]
    url: str
    stop_signal: int = signal.SIGTERM
    ready_kind: str = ""           # "redis" | "postgres"
    socket_path: Path = field(default_factory=Path)


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the launcher dies (even by SIGKILL), so no node
    or server outlives it holding its ports and files. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _as_postgres() -> list[str]:
    """The prefix that runs a program as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root, and there is no 'postgres' user to run "
                           "PostgreSQL as (install the Debian package postgresql)") from None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServiceError("setpriv is missing (Debian package util-linux)")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups",
            "--pdeathsig=TERM"]


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/VERSION/bin with initdb and postgres."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if not found:
        raise ServiceError("PostgreSQL is not installed (Debian package postgresql; "
                           "`make run NODES=...` installs it)")
    return Path(found[-1]).parent


def redis_service(root: Path) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (Debian package redis-server; "
                           "`make run NODES=...` installs it)")
    folder = root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    sock = folder / "redis.sock"
    argv = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
            "--protected-mode", "yes"]
    return Service("redis", argv, f"unix://{sock}?db=0", ready_kind="redis",
                   socket_path=sock)


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _unreachable(folder: Path) -> Path | None:
    """As root: the first folder on the way to `folder` that the `postgres` user cannot
    enter (a clone under /root, mode 0700), else None."""
    if os.geteuid() != 0:
        return None
    for parent in [*reversed(folder.resolve().parents), folder.resolve()]:
        if parent.exists() and parent.stat().st_mode & 0o001 == 0:
            return parent
    return None


def postgres_service(root: Path) -> Service:
    """initdb on the first start (as the postgres user when root), then the server. Its
    folder is ROOT/postgres, or FALLBACK_ROOT/postgres when the postgres user cannot reach
    ROOT (as root, a clone under /root)."""
    bindir = postgres_bin()
    prefix = _as_postgres()
    root.mkdir(parents=True, exist_ok=True)
    closed = _unreachable(root)
    if closed is not None:
        log.info("nodes: the postgres user cannot enter %s (mode %o): PostgreSQL's files go "
                 "to %s instead", closed, closed.stat().st_mode & 0o777, FALLBACK_ROOT)
        root = FALLBACK_ROOT
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o711)
        closed = _unreachable(root)
        if closed is not None:
            raise ServiceError(f"PostgreSQL runs as the user postgres, which cannot enter "
                               f"{closed}: give the cluster a folder it can reach (--dir)")
    folder = root / "postgres"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o700)
    _chown_postgres(folder)
    data = folder / "data"
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)  # a half-made folder of an initdb that failed
        import subprocess

        log.info("nodes: creating the PostgreSQL cluster in %s", data)
        done = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                               "--auth-local=trust", "--auth-host=scram-sha-256",
                               "-E", "UTF8", "--locale=C"],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-800:]}")
    argv = [*prefix, str(bindir / "postgres"), "-D", str(data), "-k", str(folder),
            "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700"]
    url = f"postgresql://{PG_USER}@/{PG_DATABASE}?host={folder}"
    return Service("postgres", argv, url, stop_signal=signal.SIGINT, ready_kind="postgres",
                   socket_path=folder / ".s.PGSQL.5432")


def redis_ready(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def postgres_ready(service: Service) -> bool:
    """The server answers, and the database `switchboard` exists (created here if not)."""
    import psycopg

    host = str(service.socket_path.parent)
    try:
        with psycopg.connect(host=host, user=PG_USER, dbname="postgres", connect_timeout=1,
                             autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (PG_DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {PG_DATABASE}")
                log.info("nodes: created the database %s", PG_DATABASE)
        return True
    except psycopg.Error:
        return False


def ready(service: Service) -> bool:
    if service.ready_kind == "redis":
        return redis_ready(service.socket_path)
    if service.ready_kind == "postgres":
        return postgres_ready(service)
    return True


def wait_ready(service: Service, alive: object, timeout: float = 60.0) -> None:
    """Polls `ready` until it holds; ServiceError after `timeout` or when `alive()` says
    the process has exited."""
    deadline = time.monotonic() + timeout
    while not ready(service):
        if not callable(alive) or not alive():
            raise ServiceError(f"{service.name} exited while starting (its log is above)")
        if time.monotonic() > deadline:
            raise ServiceError(f"{service.name} not ready within {timeout:.0f} s")
        time.sleep(0.2)
