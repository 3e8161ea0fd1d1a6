"""Janus AudioBridge for the side-by-side benchmark (issue 14): its own config folder, its
HTTP API, plain-RTP participants.

- `write_config(root, ...)`: a minimal config of the bench's own in `root`: `janus.jcfg`
  (folders under `root`, no event handlers, no loggers, sessions never time out),
  `janus.transport.http.jcfg` (plain HTTP on 127.0.0.1 only) and
  `janus.plugin.audiobridge.jcfg` (plain-RTP sockets on 127.0.0.1, a port range of its own).
  Only the AudioBridge plugin and the HTTP transport are linked into `root`'s plugin and
  transport folders, so Janus loads nothing else.
- `start_janus(workdir)`: `janus -C root/janus.jcfg -F root -o`, pinned to core 0 with
  taskset, under `peers.procs` (stopped by PID); waits for `GET /janus/info`.
- The API, in two halves: pure functions that build each request and read each answer
  (`create_session`, `attach`, `create_room`, `join_rtp`, `session_id`, `handle_id`,
  `room_created`, `rtp_joined`, `events_for`), unit-tested against answers captured from
  Janus 1.1.2; and `JanusApi`, which sends them over HTTP (urllib) and long-polls the
  session for the asynchronous `join` answers.

AudioBridge answers a `join` with an `ack`, then an `event` carrying the same transaction:
`{"audiobridge": "joined", "id": ..., "rtp": {"ip", "port", "payload_type"}}` (the port
Janus listens on for that participant), or `{"error_code", "error"}`. A room takes plain-RTP
participants only when created with `allow_rtp_participants`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import SERVER_CPU, BenchError, procs

log = logging.getLogger("bench.janus")

PLUGIN = "janus.plugin.audiobridge"
# Where Debian puts Janus's plugins (/usr/lib/<multiarch>/janus).
LIBDIR = next((p.parent for p in sorted(Path("/usr/lib").glob("*/janus/plugins"))),
              Path("/usr/lib/x86_64-linux-gnu/janus"))
PLUGIN_SO = "libjanus_audiobridge.so"
TRANSPORT_SO = "libjanus_http.so"
CODEC_PT = {"pcmu": 0, "pcma": 8, "opus": 111}


class JanusError(BenchError):
    """Janus answered an error, or did not answer."""


# --- the config folder ---------------------------------------------------------------------


def write_config(root: Path, *, http_port: int, rtp_low: int, rtp_high: int,
                 libdir: Path = LIBDIR, debug_level: int = 3) -> Path:
    """Write the bench's own Janus config into `root`; the path of janus.jcfg."""
    for sub, so in (("plugins", PLUGIN_SO), ("transports", TRANSPORT_SO)):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / so
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(libdir / sub / so)
    for sub in ("events", "loggers"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "janus.jcfg").write_text(f"""general: {{
\tconfigs_folder = "{root}"
\tplugins_folder = "{root / 'plugins'}"
\ttransports_folder = "{root / 'transports'}"
\tevents_folder = "{root / 'events'}"
\tloggers_folder = "{root / 'loggers'}"
\tdebug_level = {debug_level}
\tsession_timeout = 0
}}
media: {{
\trtp_port_range = "{rtp_low}-{rtp_low + 99}"
}}
nat: {{
\tignore_mdns = true
}}
events: {{
\tbroadcast = false
}}
""")
    (root / "janus.transport.http.jcfg").write_text(f"""general: {{
\tjson = "plain"
\tbase_path = "/janus"
\thttp = true
\tport = {http_port}
\tip = "127.0.0.1"
\thttps = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
""")
    (root / "janus.plugin.audiobridge.jcfg").write_text(f"""general: {{
\trtp_port_range = "{rtp_low + 100}-{rtp_high}"
\tlocal_ip = "127.0.0.1"
\tevents = false
}}
""")
    return root / "janus.jcfg"


# --- the API: pure builders and readers -----------------------------------------------------


def create_session(tx: str) -> dict[str, Any]:
    return {"janus": "create", "transaction": tx}


def attach(tx: str) -> dict[str, Any]:
    return {"janus": "attach", "plugin": PLUGIN, "transaction": tx}


def create_room(tx: str, room: int, sampling_rate: int) -> dict[str, Any]:
    if sampling_rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError(f"AudioBridge sampling rates: 8/12/16/24/48 kHz, not {sampling_rate}")
    return {"janus": "message", "transaction": tx,
            "body": {"request": "create", "room": room, "sampling_rate": sampling_rate,
                     "allow_rtp_participants": True, "permanent": False,
                     "audiolevel_event": False, "record": False}}


def join_rtp(tx: str, room: int, display: str, *, ip: str, port: int,
             codec: str) -> dict[str, Any]:
    """Join `room` as a plain-RTP participant: Janus sends its mix to ip:port."""
    if codec not in CODEC_PT:
        raise ValueError(f"codec: one of {sorted(CODEC_PT)}, not {codec!r}")
    return {"janus": "message", "transaction": tx,
            "body": {"request": "join", "room": room, "display": display, "codec": codec,
                     "rtp": {"ip": ip, "port": port, "payload_type": CODEC_PT[codec]}}}


def _check(answer: Mapping[str, Any], what: str) -> None:
    if answer.get("janus") == "error":
        err = answer.get("error", {})
        raise JanusError(f"{what}: Janus error {err.get('code')}: {err.get('reason')}")


def session_id(answer: Mapping[str, Any]) -> int:
    _check(answer, "create")
    try:
        return int(answer["data"]["id"])
    except (KeyError, TypeError, ValueError) as err:
        raise JanusError(f"create: no session id in {answer!r:.200}") from err


handle_id = session_id  # `attach` answers the same way: {"janus": "success", "data": {"id"}}


def _plugin_data(answer: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    _check(answer, what)
    data = answer.get("plugindata", {}).get("data")
    if not isinstance(data, dict):
        raise JanusError(f"{what}: no plugin data in {answer!r:.200}")
    if "error_code" in data:
        raise JanusError(f"{what}: AudioBridge error {data['error_code']}: {data.get('error')}")
    return data


def room_created(answer: Mapping[str, Any]) -> int:
    data = _plugin_data(answer, "create room")
    if data.get("audiobridge") != "created":
        raise JanusError(f"create room: unexpected answer {answer!r:.200}")
    return int(data["room"])


@dataclass(frozen=True)
class Joined:
    participant: int
    ip: str
    port: int
    payload_type: int


def rtp_joined(event: Mapping[str, Any]) -> Joined:
    """The `joined` event answering a plain-RTP join: where Janus listens for this
    participant's RTP."""
    data = _plugin_data(event, "join")
    rtp = data.get("rtp")
    if data.get("audiobridge") != "joined" or not isinstance(rtp, dict):
        raise JanusError(f"join: unexpected answer {event!r:.200}")
    return Joined(int(data["id"]), str(rtp["ip"]), int(rtp["port"]),
                  int(rtp.get("payload_type", -1)))


def events_for(events: Sequence[Mapping[str, Any]], tx: str) -> list[Mapping[str, Any]]:
    """The events of a long-poll answer that answer transaction `tx`."""
    return [e for e in events if e.get("transaction") == tx and e.get("janus") == "event"]


# --- the server and its HTTP API -----------------------------------------------------------


def _http(method: str, url: str, body: Mapping[str, Any] | None = None,
          timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError) as err:
        raise JanusError(f"{method} {url}: {err}") from err


class JanusApi:
    """One session on Janus's HTTP API; a handle per participant (a handle joins once)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._tx = itertools.count(1)
        self.session = session_id(_http("POST", base_url, create_session(self.tx())))
        self._pending: list[Mapping[str, Any]] = []
        self._control = self.attach()

    def tx(self) -> str:
        return f"b{next(self._tx)}"

    def attach(self) -> int:
        return handle_id(_http("POST", f"{self.base_url}/{self.session}", attach(self.tx())))

    def create_room(self, room: int, sampling_rate: int) -> int:
        return room_created(_http("POST", f"{self.base_url}/{self.session}/{self._control}",
                                  create_room(self.tx(), room, sampling_rate)))

    def join(self, room: int, display: str, *, ip: str, port: int, codec: str,
             timeout: float = 10.0) -> Joined:
        handle = self.attach()
        tx = self.tx()
        answer = _http("POST", f"{self.base_url}/{self.session}/{handle}",
                       join_rtp(tx, room, display, ip=ip, port=port, codec=codec))
        _check(answer, "join")
        if answer.get("janus") == "event":  # answered at once
            return rtp_joined(answer)
        return rtp_joined(self._wait_event(tx, timeout))

    def _wait_event(self, tx: str, timeout: float) -> Mapping[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = events_for(self._pending, tx)
            if found:
                self._pending = [e for e in self._pending if e.get("transaction") != tx]
                return found[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise JanusError(f"no answer to transaction {tx} in {timeout:g} s")
            got = _http("GET", f"{self.base_url}/{self.session}?maxev=100",
                        timeout=left + 5)
            events = got if isinstance(got, list) else [got]
            # Keep only answers to requests (the others are notifications of who joined).
            self._pending += [e for e in events if isinstance(e, dict) and e.get("transaction")]

    def drain(self) -> None:
        """Drop the notifications queued on the session (bounded)."""
        for _ in range(20):
            got = _http("GET", f"{self.base_url}/{self.session}?maxev=500", timeout=35)
            events = got if isinstance(got, list) else [got]
            if all(e.get("janus") == "keepalive" for e in events if isinstance(e, dict)):
                return


@dataclass
class JanusServer:
    http_port: int
    root: Path
    proc: Any  # procs.ManagedProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def pid(self) -> int:
        return int(self.proc.main_pid)

    def running(self) -> bool:
        return bool(self.proc.running())

    def stop(self) -> None:
        self.proc.stop(term_timeout=10.0, kill_timeout=5.0)


def janus_binary() -> str:
    found = shutil.which("janus") or shutil.which("janus", path="/usr/bin:/usr/local/bin")
    if found is None:
        raise BenchError("janus is not installed (make bench installs the Debian package "
                         "`janus`: scripts/install-bench.sh)")
    return found


def start_janus(workdir: Path, *, ports: int = 2000, cpu: int | None = SERVER_CPU,
                name: str = "janus", timeout: float = 20.0) -> JanusServer:
    root = workdir / name
    root.mkdir(parents=True, exist_ok=True)
    http_port = procs.free_port(kinds=("tcp",))
    rtp_low = procs.find_port_block(ports, kinds=("udp",))
    config = write_config(root, http_port=http_port, rtp_low=rtp_low,
                          rtp_high=rtp_low + ports - 1)
    argv = [janus_binary(), "-C", str(config), "-F", str(root), "-o"]
    if cpu is not None and cpu < (os.cpu_count() or 1) and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]  # taskset execs: main_pid is janus
    proc = procs.start_process(argv, name=name, log_dir=root, timeout_s=1800)
    server = JanusServer(http_port, root, proc)
    deadline = time.monotonic() + timeout
    while True:
        if not server.running():
            raise BenchError(f"janus exited with {proc.returncode}:\n{proc.log_tail(20)}")
        try:
            info = _http("GET", f"{server.base_url}/info", timeout=1.0)
            if info.get("janus") == "server_info":
                log.info("janus %s (pid %d) on 127.0.0.1:%d", info.get("version_string"),
                         server.pid, http_port)
                return server
        except JanusError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise BenchError(f"janus did not answer on {server.base_url} within "
                             f"{timeout:g} s:\n{proc.log_tail(20)}")
        time.sleep(0.2)
