"""Fixtures for integration tests against real peers on 127.0.0.1.

- `peers_installed` (session, autouse): sipp, baresip, kamailio, sox and svwar must be installed;
  a missing one FAILS the run (never skips), naming it.
- `tmp_workdir`: a fresh directory per test for configs, logs and recordings.
- `switchboard_server`: a factory that writes a TOML config with free ports, starts
  `switchboard serve --config FILE`, waits for /api/health, and stops it by PID afterwards.
- `redis_server` / `postgres_server` (session): throwaway Redis and PostgreSQL for the cluster
  tests (peers/redis.py, peers/postgres.py); `redis_url` (emptied) and `postgres_url` (a fresh
  database) per test.
- Every peer process is stopped after each test; at the end of the session no process group
  this run started may still have members (checked with pgrep).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
from peers import procs
from peers.postgres import postgres_server, postgres_url
from peers.redis import redis_server, redis_url

from switchboard import nodes_plan, toml_write

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
REQUIRED_PROGRAMS = ("sipp", "baresip", "kamailio", "sox", "svwar")
RTP_PORT_COUNT = 100
#: [sip.limits] loose enough for one address to place calls as fast as a test needs: for tests
#: of what happens to a call (bad SDP, PIN guessing), not of the load shedding in front of it
#: (tests/integration/test_attack_sip.py tests that with the defaults).
UNSHED_SIP_LIMITS = {"request_rate": 10000.0, "request_burst": 10000, "invite_rate": 10000.0,
                     "invite_burst": 10000, "calls_in_setup_per_source": 1000,
                     "scan_targets": 100000, "scan_failures": 100000}
_SERVERS_KEY = pytest.StashKey[list["SwitchboardServer"]]()
__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]  # fixtures


# --- peers ---------------------------------------------------------------------------------


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


@pytest.fixture(scope="session", autouse=True)
def peers_installed() -> Iterator[dict[str, str]]:
    """{program: path} of the peers; fails loudly when one is missing. At the end of the
    session, stops leftovers and fails if any process group we started still has members."""
    found = {p: _which(p) for p in REQUIRED_PROGRAMS}
    missing = [p for p, path in found.items() if path is None]
    if missing:
        pytest.fail(
            f"integration peers missing: {', '.join(missing)}. Install them with "
            f"`make test` or `sudo scripts/install-peers.sh` (apt packages sip-tester, "
            f"baresip-core, kamailio, sox, sipvicious).",
            pytrace=False,
        )
    yield {p: str(path) for p, path in found.items()}
    leftovers = procs.stop_all()
    strays = procs.stray_processes()
    if leftovers or strays:
        pytest.fail(f"stray peer processes at the end of the session: stopped {leftovers}, "
                    f"still alive (pgid: pids) {strays}", pytrace=False)


@pytest.fixture(autouse=True)
def _stop_leftover_peers() -> Iterator[None]:
    """Whatever a test started and did not stop (a failure midway, say) is stopped here."""
    yield
    stopped = procs.stop_all()
    if stopped:
        log.warning("stopped leftover peer processes: %s", ", ".join(stopped))


@pytest.fixture
def tmp_workdir(tmp_path: Path) -> Path:
    """A fresh directory for one test's configs, logs and recordings."""
    work = tmp_path / "work"
    work.mkdir()
    return work


# --- the server under test -----------------------------------------------------------------


@dataclass
class ApiResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class SwitchboardServer:
    sip_port: int
    http_port: int
    token: str
    rtp_low: int
    rtp_high: int
    config_path: Path
    data_dir: Path
    log_path: Path
    proc: procs.ManagedProcess
    scheme: str = "http"  # "https" when the config sets http.tls_cert or http.acme_domains
    killed_by_test: bool = False  # kill9() was called: the teardown expects no clean exit

    @property
    def pid(self) -> int:
        """The server's own PID (the child of the timeout wrapper)."""
        return self.proc.main_pid

    @property
    def rtp_ports(self) -> tuple[int, int]:
        return (self.rtp_low, self.rtp_high)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{procs.LOOPBACK}:{self.http_port}"

    @property
    def sip_address(self) -> str:
        return f"{procs.LOOPBACK}:{self.sip_port}"

    def sip_uri(self, user: str, transport: str | None = None) -> str:
        uri = f"sip:{user}@{self.sip_address}"
        return f"{uri};transport={transport}" if transport else uri

    def api(self, method: str, path: str, json: object = None, *, auth: bool = True,
            timeout: float = 10.0) -> ApiResponse:
        """An HTTP request to the server (bearer token unless auth=False); 4xx/5xx are
        returned, not raised."""
        # Over HTTPS the certificate is not checked here (tests that check it bring their
        # own context): this is the harness's health and API channel.
        context = _UNVERIFIED if self.scheme == "https" else None
        return http_request(method, self.base_url + path, json,
                            token=self.token if auth else None, timeout=timeout,
                            context=context)  # fmt: skip

    def kill9(self, timeout: float = 10.0) -> None:
        """SIGKILL the server itself (a crash) and wait until it is gone."""
        self.killed_by_test = True
        self.proc.signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.proc.log_text()

    def log_tail(self, lines: int = 80) -> str:
        return self.proc.log_tail(lines)

    def running(self) -> bool:
        return self.proc.running()


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_UNVERIFIED = ssl._create_unverified_context()


def http_request(method: str, url: str, body: object = None, *, token: str | None = None,
                 timeout: float = 10.0, context: ssl.SSLContext | None = None) -> ApiResponse:
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method.upper(), headers=headers)
    opener = _NO_PROXY
    if context is not None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return ApiResponse(resp.status, resp.read(), dict(resp.headers.items()))
    except urllib.error.HTTPError as err:
        return ApiResponse(err.code, err.read(), dict(err.headers.items()))


to_toml = toml_write.to_toml  # the product's writer (the tests import it from here)


deep_merge = nodes_plan.deep_merge  # the product's (the tests import it from here)


def server_command(config: Path) -> list[str]:
    script = REPO / ".venv" / "bin" / "switchboard"
    if script.exists():
        return [str(script), "serve", "--config", str(config)]
    return [sys.executable, "-m", "switchboard", "serve", "--config", str(config)]


def _stop_server(server: SwitchboardServer, term_timeout: float = 10.0) -> str | None:
    """Stop by PID (SIGTERM, 10 s, SIGKILL); a problem description, or None if clean."""
    server.proc.stop(term_timeout=term_timeout, kill_timeout=5.0)
    if server.killed_by_test and not server.proc.running():
        return None
    if server.proc.running():
        return f"switchboard (pid {server.proc.pid}) is still running after SIGKILL"
    if server.proc.killed:
        return f"switchboard did not exit within {term_timeout:.0f} s of SIGTERM (SIGKILLed)"
    return None


ServerFactory = Callable[..., SwitchboardServer]


@pytest.fixture
def switchboard_server(request: pytest.FixtureRequest,
                       tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: `switchboard_server(extra=None, *, command=None, health_timeout=20.0)`
    starts a server on fresh 127.0.0.1 ports and returns a SwitchboardServer; `extra` is
    TOML data merged into the config; `command(config_path)` replaces the server command."""
    servers: list[SwitchboardServer] = []
    request.node.stash[_SERVERS_KEY] = servers

    def start(extra: Mapping[str, Any] | None = None, *,
              command: Callable[[Path], Sequence[str]] | None = None,
              health_timeout: float = 20.0) -> SwitchboardServer:
        root = tmp_path / f"switchboard-{len(servers)}"
        data_dir = root / "data"
        data_dir.mkdir(parents=True)
        sip_port = procs.free_port(kinds=("udp", "tcp"))
        http_port = procs.free_port(kinds=("tcp",))
        rtp_low = procs.find_port_block(RTP_PORT_COUNT, kinds=("udp",))
        rtp_high = rtp_low + RTP_PORT_COUNT - 1
        token = secrets.token_urlsafe(24)
        base = {
            "sip": {"listen": [f"udp:{procs.LOOPBACK}:{sip_port}",
                               f"tcp:{procs.LOOPBACK}:{sip_port}"]},
            "http": {"listen": f"{procs.LOOPBACK}:{http_port}"},
            "media": {"address": procs.LOOPBACK, "rtp_ports": f"{rtp_low}-{rtp_high}"},
            "bridge": {"address": procs.LOOPBACK,
                       "udp_port": procs.free_port(kinds=("udp",)),
                       "tcp_port": procs.free_port(kinds=("tcp",))},
            "store": {"path": str(data_dir)},
            "admin": {"token": token},
        }
        config = deep_merge(base, extra or {})
        config_path = root / "switchboard.toml"
        config_path.write_text(to_toml(config))
        argv = list(command(config_path)) if command else server_command(config_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = procs.start_process(argv, name="switchboard", log_dir=root, timeout_s=900,
                                   cwd=REPO, env=env)
        server = SwitchboardServer(sip_port=sip_port, http_port=http_port, token=token,
                                   rtp_low=rtp_low, rtp_high=rtp_high,
                                   config_path=config_path, data_dir=data_dir,
                                   log_path=proc.log_path, proc=proc,
                                   scheme="https" if _tls(config) else "http")
        servers.append(server)
        _wait_healthy(server, health_timeout)
        return server

    yield start

    problems = [p for p in (_stop_server(s) for s in servers) if p]
    if problems:
        pytest.fail("; ".join(problems) + "\n--- server log tail ---\n"
                    + "\n".join(s.log_tail(40) for s in servers), pytrace=False)


def _tls(config: Mapping[str, Any]) -> bool:
    http = config.get("http", {})
    return bool(http.get("tls_cert") or http.get("acme_domains"))


def _wait_healthy(server: SwitchboardServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if not server.running():
            pytest.fail(f"switchboard exited with {server.proc.returncode} before it was "
                        f"healthy:\n{server.log_tail(60)}", pytrace=False)
        try:
            resp = server.api("GET", "/api/health", auth=False, timeout=1.0)
            if resp.status == 200:
                log.info("switchboard healthy on %s (sip %d)", server.base_url,
                         server.sip_port)
                return
            last = f"HTTP {resp.status}: {resp.text[:200]}"
        except (OSError, urllib.error.URLError) as err:
            last = str(err)
        if time.monotonic() > deadline:
            pytest.fail(f"switchboard not healthy within {timeout:.0f} s ({last}):\n"
                        f"{server.log_tail(60)}", pytrace=False)
        time.sleep(0.2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach each server's log tail to the report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for server in item.stash.get(_SERVERS_KEY, []):
            report.sections.append((f"switchboard log tail ({server.log_path})",
                                    server.log_tail(80)))


@pytest.fixture
def loopback_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aiortc clients gather on 127.0.0.1 only (aioice would skip it)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])
