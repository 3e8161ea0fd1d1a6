"""A throwaway PostgreSQL 15 on a free 127.0.0.1 port (PEERS.md): initdb into a fresh folder
owned by `postgres` (the server refuses root), the postmaster run with setpriv, trust
authentication, fsync off; SIGINT (fast shutdown) to its PID, the folder removed.
`postgres_server` (session) shares one per test session; `postgres_url` makes a database per
test and drops it afterwards. The system cluster on 5432 is left alone."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from peers import procs
from peers.throwaway import Throwaway, new_folder, require

PG_BIN = "/usr/lib/postgresql/15/bin"


@dataclass
class PostgresInstance:
    port: int
    process: Throwaway

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{procs.LOOPBACK}:{self.port}/{database}"

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=1, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def create_database(self) -> str:
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_postgres() -> PostgresInstance:
    initdb = require(f"{PG_BIN}/initdb", "postgresql-15")
    postgres = require(f"{PG_BIN}/postgres", "postgresql-15")
    for program in ("runuser", "setpriv"):
        require(program, "util-linux")
    folder = new_folder("sb-pg-")
    pg = folder / "pg"
    subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", str(pg)],
                   check=True, timeout=30)
    data, sock = pg / "data", pg / "sock"
    done = subprocess.run(["runuser", "-u", "postgres", "--", initdb, "-D", str(data),
                           "-U", "postgres", "-A", "trust"],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                    pytrace=False)
    subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700",
                    str(sock)], check=True, timeout=30)
    port = procs.free_port(kinds=("tcp",))
    process = Throwaway("postgres", folder, stop_signal=signal.SIGINT)
    process.start(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                   postgres, "-D", str(data), "-p", str(port), "-k", str(sock),
                   "-c", f"listen_addresses={procs.LOOPBACK}", "-c", "fsync=off",
                   "-c", "max_connections=200"])
    instance = PostgresInstance(port=port, process=process)
    process.wait_ready(instance.ready, timeout=60.0)
    return instance


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresInstance]:
    instance = start_postgres()
    yield instance
    instance.process.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresInstance) -> Iterator[str]:
    """A fresh, empty database on the shared server for this test; dropped afterwards."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
