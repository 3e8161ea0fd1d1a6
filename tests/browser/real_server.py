"""`switchboard serve` for browser tests: a TOML config on loopback ports, start, wait for
/api/health, stop by PID.

The process runs as `timeout --kill-after=5 SECONDS switchboard serve --config FILE` in a new
session, so its process group is ours alone: SIGTERM goes to the wrapper (which passes it on),
and if the server does not stop, SIGKILL goes to that group. Nothing is stopped by name.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.toml_write import to_toml

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The harness's own channel to a server on HTTPS (http.tls_cert set): certificate unchecked
# here; the browser test checks what the browser sees.
_NO_PROXY_TLS = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))


_NS_FETCH = """
import sys, ssl, urllib.request, json
url, method, headers, body = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers=json.loads(headers))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
with opener.open(req, timeout=5) as resp:
    sys.stdout.buffer.write(resp.read())
"""


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _free_block(count: int, start: int) -> int:
    """The first even port from `start` with `count` free UDP ports after it."""
    port = start
    while port + count < 65000:
        if all(_udp_free(p) for p in range(port, port + count, max(1, count // 8))):
            return port
        port += count
    raise RuntimeError(f"no block of {count} free UDP ports from {start}")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


_toml = to_toml  # switchboard.toml_write's: one writer for every config


@dataclass
class SwitchboardProcess:
    url: str
    token: str
    config_path: Path
    log_path: Path
    popen: subprocess.Popen[bytes]
    sip_port: int = 0  # UDP, on LOOPBACK
    netns: str | None = None  # the network namespace it runs in (None: the test's own)

    @property
    def sip_address(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    def sip_uri(self, user: str) -> str:
        """sip:USER@127.0.0.1:PORT, a number of this server to dial."""
        return f"sip:{user}@{self.sip_address}"

    @classmethod
    def start(cls, workdir: Path, extra: Mapping[str, Mapping[str, Any]] | None = None,
              *, health_timeout: float = 30.0, max_seconds: int = 900,
              netns: str | None = None, host: str = LOOPBACK,
              http_port: int | None = None) -> SwitchboardProcess:
        """`netns`: run inside that network namespace (`ip netns exec`), web and browser
        media on `host` there; the harness then reaches the API through the namespace.
        `http_port`: chosen by the caller (a cluster node's public URL names it)."""
        workdir.mkdir(parents=True, exist_ok=True)
        if http_port is None:
            http_port = _free_port(socket.SOCK_STREAM) if netns is None else 8080
        sip_port = _free_port(socket.SOCK_DGRAM) if netns is None else 5060
        token = secrets.token_urlsafe(24)
        rtp = _free_block(100, 20000)
        config: dict[str, dict[str, Any]] = {
            "sip": {"listen": [f"udp:{LOOPBACK}:{sip_port}"]},
            "http": {"listen": f"{host}:{http_port}"},
            "media": {"address": LOOPBACK, "rtp_ports": f"{rtp}-{rtp + 99}"},
            "bridge": {"address": host, "udp_port": _free_port(socket.SOCK_DGRAM),
                       "tcp_port": _free_port(socket.SOCK_STREAM)},
            "store": {"path": str(workdir / "data")},
            "admin": {"token": token},
        }
        for table, values in (extra or {}).items():
            config.setdefault(table, {}).update(values)
        config_path = workdir / "switchboard.toml"
        config_path.write_text(_toml(config))
        script = REPO / ".venv" / "bin" / "switchboard"
        argv = ([str(script)] if script.exists() else [sys.executable, "-m", "switchboard"])
        argv = ["timeout", "--kill-after=5", str(max_seconds), *argv, "serve",
                "--config", str(config_path)]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        log_path = workdir / "switchboard.log"
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
            )
        tls = config["http"].get("tls_cert") or config["http"].get("acme_domains")
        scheme = "https" if tls else "http"
        server = cls(f"{scheme}://{host}:{http_port}", token, config_path, log_path, popen,
                     sip_port, netns)
        try:
            server._wait_healthy(health_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"switchboard exited with {self.popen.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                status, _ = self._fetch(urllib.request.Request(f"{self.url}/api/health"), 1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except (OSError, urllib.error.URLError) as err:
                last = str(err)
            time.sleep(0.2)
        raise RuntimeError(f"switchboard not healthy in {timeout:.0f} s ({last}):\n"
                           f"{self.log_tail()}")

    def api(self, method: str, path: str, body: object = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"},
        )
        _, raw = self._fetch(req, 5.0)
        return json.loads(raw) if raw else None

    def _fetch(self, req: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        if self.netns is None:
            with self._opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        # The server's namespace is not reachable from here: ask from inside it.
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-c", _NS_FETCH,
                req.full_url, req.get_method(), json.dumps(dict(req.header_items())),
                (req.data or b"").decode()]  # type: ignore[union-attr]
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 10, check=False)
        if done.returncode != 0:
            raise OSError(f"fetch in {self.netns}: {done.stderr.decode()[-300:]}")
        return 200, done.stdout

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        return _NO_PROXY_TLS if self.url.startswith("https:") else _NO_PROXY

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL to the process group; True when it stopped on SIGTERM."""
        if self.popen.poll() is not None:
            return True
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            log.warning("switchboard (pid %d) ignored SIGTERM: killing its group",
                        self.popen.pid)
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
            return False
