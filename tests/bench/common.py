"""Shared pieces of the benchmarks: the server under test (pinned to one core), what the
kernel says about a process (CPU time, RSS, UDP sockets), rooms, the tone file, sipp runs.

Everything runs on 127.0.0.1. The server is pinned to core 0 with `taskset -c 0`; this
process pins itself to core 1 at start, so sipp (started from here) inherits core 1.
Every process is started through `peers.procs` (bounded by a `timeout` wrapper, stopped by
PID); `procs.stop_all()` in `__main__` stops whatever is left, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import shutil
import sys
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_INTEGRATION = REPO / "tests" / "integration"
if str(_INTEGRATION) not in sys.path:  # the integration harness imports `peers` top-level
    sys.path.insert(0, str(_INTEGRATION))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from peers import procs as procs  # noqa: E402  (re-exported)
from peers.sipp import Sipp, SippResult  # noqa: E402

from tests.integration.conftest import (  # noqa: E402
    SwitchboardServer,
    deep_merge,
    server_command,
    to_toml,
)

log = logging.getLogger("bench")

SERVER_CPU = 0
LOAD_CPU = 1
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A step during which the server waited this much of the time for its core (another
# process ran there) is "contended": its failure does not count, the step runs again.
CONTENDED_PERCENT = 5.0


def steal_seconds(cpus: set[int]) -> float:
    """Time the hypervisor took from these CPUs (the steal column of /proc/stat)."""
    with open("/proc/stat") as stat:
        rows = [line.split() for line in stat if line[:3] == "cpu" and line[3].isdigit()]
    return sum(int(r[8]) for r in rows if int(r[0][3:]) in cpus) / CLK_TCK


class BenchError(RuntimeError):
    """A benchmark could not run (server did not start, sipp missing...)."""


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the final table."""

    figure: str
    measured: str
    goal: str
    how: str
    met: bool | None = None            # None: not measured
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "measured": self.measured, "goal": self.goal,
                "how": self.how, "met": self.met, "details": self.details}


class Budget:
    """A wall-clock budget for one figure: `left()` seconds remain, `fits(s)` says whether
    a step of `s` seconds still fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def fits(self, step_s: float) -> bool:
        return self.left() >= step_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start


# --- the kernel's view of a process --------------------------------------------------------


def pin_self(cpu: int = LOAD_CPU) -> bool:
    """Pin this process (and so every child it starts later) to `cpu`, if it exists."""
    if cpu >= (os.cpu_count() or 1):
        log.warning("only %s CPU(s): not pinning the load generators", os.cpu_count())
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds; 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def runqueue_wait_seconds(pid: int) -> float:
    """Time the threads of `pid` spent runnable but waiting for a CPU (schedstat), in
    seconds: on a pinned core, the share other processes took from the server."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class CpuMeter:
    """CPU use of one process between `start()` and `stop()`, as % of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._t0 = 0.0
        self._c0 = 0.0
        self._w0 = 0.0
        self.wall = 0.0
        self.cpu = 0.0
        self.waited = 0.0

    def start(self) -> CpuMeter:
        self._t0, self._c0 = time.monotonic(), cpu_seconds(self.pid)
        self._w0 = runqueue_wait_seconds(self.pid)
        return self

    def stop(self) -> float:
        self.wall = time.monotonic() - self._t0
        self.cpu = cpu_seconds(self.pid) - self._c0
        self.waited = runqueue_wait_seconds(self.pid) - self._w0
        return self.percent

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu / self.wall if self.wall > 0 else 0.0

    @property
    def wait_percent(self) -> float:
        """% of the time the process was runnable but another one had its CPU."""
        return 100.0 * self.waited / self.wall if self.wall > 0 else 0.0


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets `pid` holds open."""
    out: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return out
    for entry in entries:
        with contextlib.suppress(OSError):
            target = os.readlink(entry)
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


@dataclass(frozen=True)
class UdpCounters:
    sockets: int
    rx_queue_bytes: int
    drops: int


def udp_counters(inodes: Iterable[int]) -> UdpCounters:
    """Sum of rx_queue and drops over the UDP sockets (of /proc/net/udp) with these inodes.
    A socket nobody reads (sipp's media socket) drops every packet once its queue is full,
    so its drops count the packets that reach it."""
    wanted = set(inodes)
    sockets = queue = drops = 0
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return UdpCounters(0, 0, 0)
    for line in lines:
        cols = line.split()
        if len(cols) < 13 or int(cols[9]) not in wanted:
            continue
        sockets += 1
        queue += int(cols[4].split(":")[1], 16)
        drops += int(cols[12])
    return UdpCounters(sockets, queue, drops)


def udp_snmp() -> dict[str, int]:
    """System-wide UDP counters from /proc/net/snmp (InDatagrams, OutDatagrams,
    RcvbufErrors...)."""
    try:
        lines = [ln for ln in Path("/proc/net/snmp").read_text().splitlines()
                 if ln.startswith("Udp:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names, values = lines[0].split()[1:], lines[1].split()[1:]
    return {n: int(v) for n, v in zip(names, values, strict=False)}


# --- the server under test -----------------------------------------------------------------


def start_server(workdir: Path, extra: Mapping[str, Any] | None = None, *,
                 rtp_port_count: int = 6000, cpu: int | None = SERVER_CPU,
                 health_timeout: float = 30.0, name: str = "switchboard") -> SwitchboardServer:
    """Start `switchboard serve` on fresh 127.0.0.1 ports, pinned to `cpu`, log level
    warning (logging at info per call would be part of the measurement), and wait for
    /api/health. `extra` is merged into the config."""
    root = workdir / name
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sip_port = procs.free_port(kinds=("udp", "tcp"))
    http_port = procs.free_port(kinds=("tcp",))
    rtp_low = rtp_block(rtp_port_count)
    rtp_high = rtp_low + rtp_port_count - 1
    token = secrets.token_urlsafe(24)
    base = {
        "sip": {"listen": [f"udp:{procs.LOOPBACK}:{sip_port}"]},
        # The load comes from one address: the per-source limits (docs/security.md) would
        # refuse it, and are not what is measured.
        "http": {"listen": f"{procs.LOOPBACK}:{http_port}", "max_connections_per_source": 10000,
                 "mapper_lookups_per_minute": 100000},
        "meetings": {"joins_per_minute": 100000, "rooms_per_hour": 100000,
                     "max_endpoints_per_source": 100000},
        "media": {"address": procs.LOOPBACK, "rtp_ports": f"{rtp_low}-{rtp_high}"},
        "bridge": {"address": procs.LOOPBACK, "udp_port": procs.free_port(kinds=("udp",)),
                   "tcp_port": 0},
        "store": {"path": str(data_dir)},
        "admin": {"token": token},
        "log": {"level": "warning"},
    }
    config = deep_merge(base, extra or {})
    config_path = root / "switchboard.toml"
    config_path.write_text(to_toml(config))
    argv = server_command(config_path)
    if cpu is not None and cpu < (os.cpu_count() or 1) and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]  # taskset execs: main_pid is the server
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = procs.start_process(argv, name=name, log_dir=root, timeout_s=1800, cwd=REPO,
                               env=env)
    server = SwitchboardServer(sip_port=sip_port, http_port=http_port, token=token,
                               rtp_low=rtp_low, rtp_high=rtp_high, config_path=config_path,
                               data_dir=data_dir, log_path=proc.log_path, proc=proc)
    try:
        wait_healthy(server, health_timeout)
    except BaseException:
        stop_server(server)
        raise
    return server


# Server RTP ports come from below the integration harness's range (12000-32000, where
# parallel test runs pick their ports) and below the kernel's ephemeral range, and one block
# serves every server of a run (they run one after the other).
_RTP_LOW, _RTP_HIGH = 1024, 12000
_rtp_blocks: dict[int, int] = {}


def rtp_block(count: int) -> int:
    """First port of `count` consecutive even-based UDP ports free on 127.0.0.1."""
    cached = _rtp_blocks.get(count)
    if cached is not None and all(procs.port_is_free(p, ("udp",))
                                  for p in range(cached, cached + count)):
        return cached
    base = _RTP_LOW
    while base + count <= _RTP_HIGH:
        busy = next((p for p in range(base, base + count)
                     if not procs.port_is_free(p, ("udp",))), None)
        if busy is None:
            _rtp_blocks[count] = base
            return base
        base = busy + 2 - (busy % 2)
    raise BenchError(f"no {count} free UDP ports in {_RTP_LOW}-{_RTP_HIGH} for RTP")


def wait_healthy(server: SwitchboardServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.running():
            raise BenchError(f"switchboard exited with {server.proc.returncode} before it was "
                             f"healthy:\n{server.log_tail(30)}")
        try:
            resp = server.api("GET", "/api/health", auth=False, timeout=1.0)
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}: {resp.text[:200]}"
        except (OSError, urllib.error.URLError) as err:
            last = str(err)
        time.sleep(0.2)
    raise BenchError(f"switchboard not healthy within {timeout:.0f} s ({last}):\n"
                     f"{server.log_tail(30)}")


def stop_server(server: SwitchboardServer) -> None:
    server.proc.stop(term_timeout=10.0, kill_timeout=5.0)
    if server.proc.killed:
        log.warning("switchboard (pid %d) needed SIGKILL", server.proc.pid)


def healthy(server: SwitchboardServer) -> bool:
    if not server.running():
        return False
    try:
        return server.api("GET", "/api/health", auth=False, timeout=2.0).status == 200
    except (OSError, urllib.error.URLError):
        return False


def stats(server: SwitchboardServer) -> dict[str, int]:
    """GET /api/stats (numbers only); {} when it does not answer."""
    try:
        resp = server.api("GET", "/api/stats", timeout=3.0)
    except (OSError, urllib.error.URLError):
        return {}
    if resp.status != 200:
        return {}
    try:
        body = resp.json()
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: int(v) for k, v in body.items() if isinstance(v, int | float)}


def wait_stats(server: SwitchboardServer, predicate: Callable[[dict[str, int]], bool],
               timeout: float, interval: float = 0.25) -> dict[str, int]:
    """Poll /api/stats until `predicate` holds or `timeout` passes; the last stats."""
    deadline = time.monotonic() + timeout
    last = stats(server)
    while not (last and predicate(last)) and time.monotonic() < deadline:
        time.sleep(interval)
        last = stats(server)
    return last


def live_calls(st: Mapping[str, int]) -> int:
    """Live calls in a stats answer (`calls`, else `legs`); -1 if neither is there."""
    for key in ("calls", "legs"):
        if key in st:
            return st[key]
    return -1


def create_rooms(server: SwitchboardServer, names: Sequence[str]) -> None:
    """POST /api/rooms for each name; an existing room (409) is fine."""
    for name in names:
        resp = server.api("POST", "/api/rooms", {"name": name})
        if resp.status not in (200, 201, 409):
            raise BenchError(f"POST /api/rooms {name}: HTTP {resp.status} {resp.text[:200]}")


def room_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def write_rooms_csv(path: Path, rooms: Sequence[str], per_room: int) -> Path:
    """A sipp -inf file: SEQUENTIAL, each room name `per_room` times in a row, so calls
    1..5 go to the first room, 6..10 to the second, and so on."""
    lines = ["SEQUENTIAL"]
    for room in rooms:
        lines += [room] * per_room
    path.write_text("\n".join(lines) + "\n")
    return path


# --- media ---------------------------------------------------------------------------------


def _ulaw(sample: int) -> int:
    """G.711 mu-law of one 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def write_tone(path: Path, *, freq: float = 400.0, seconds: float = 1.0,
               amplitude: float = 0.25) -> Path:
    """Headerless raw mu-law (what sipp's rtp_stream sends as is): a sine of `freq` Hz,
    a whole number of 20 ms frames and of periods, so the loop has no click."""
    count = int(8000 * seconds) // 160 * 160
    data = bytes(_ulaw(int(amplitude * 32767 * math.sin(2 * math.pi * freq * n / 8000)))
                 for n in range(count))
    path.write_bytes(data)
    return path


# --- sipp ----------------------------------------------------------------------------------


def scenario(name: str) -> Path:
    path = SCENARIOS / name
    if not path.is_file():
        raise BenchError(f"sipp scenario {path} is missing")
    return path


def require_programs(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BenchError(f"missing programs: {', '.join(missing)} (run `make peers`)")


def sipp_failures(res: SippResult) -> dict[str, int]:
    """The non-zero failure counters of a sipp run (cumulative). Messages for calls that
    already ended (DeadCallMsgs: the answer to a retransmitted BYE, say) are not failures;
    see `sipp_late_messages`."""
    names = ("FailedCall", "FailedMaxUDPRetrans", "FailedUnexpectedMessage",
             "FailedCallRejected", "FailedTimeoutOnRecv", "FailedTimeoutOnSend",
             "FailedCannotSendMessage", "FailedOutboundCongestion", "FatalErrors")
    return {n: res.counter(n) for n in names if res.counter(n)}


def sipp_late_messages(res: SippResult) -> int:
    """Messages sipp got for calls it had finished or never knew (retransmission echoes)."""
    return int(res.counter("DeadCallMsgs")) + int(res.counter("OutOfCallMsgs"))


_ERROR_KINDS = (
    (re.compile(r"Aborting call on unexpected message.*?while expecting '([^']+)'.*?"
                r"received '(SIP/2.0 \d+ [^\r\n]*|[A-Z]+)", re.S), "unexpected {1} (expected {0})"),
    (re.compile(r"timeout on message [^:]*:(\d+)"), "receive timeout at scenario step {0}"),
    (re.compile(r"Max retrans for (?:call|message) .*?(\d+)", re.S), "max retransmissions"),
    (re.compile(r"Dead call .*? \((successful|aborted[^)]*)\)"), "late message for an ended call"),
)


def sipp_error_tail(res: SippResult, kinds: int = 3) -> str:
    """The commonest kinds of event in sipp's error log, counted: 'unexpected SIP/2.0 503
    Service Unavailable (expected 100) x377, ...'."""
    try:
        text = res.error_path.read_text(errors="replace")
    except OSError:
        return ""
    counts: dict[str, int] = {}
    for event in re.split(r"\n?'?(?=\d{4}-\d\d-\d\d\t)", text):
        for pattern, label in _ERROR_KINDS:
            m = pattern.search(event)
            if m:
                key = label.format(*m.groups())
                counts[key] = counts.get(key, 0) + 1
                break
    top = sorted(counts.items(), key=lambda kv: (kv[0].startswith("late"), -kv[1]))[:kinds]
    return ", ".join(f"{k} x{v}" for k, v in top)


def elapsed_seconds(value: str) -> float:
    """sipp's ElapsedTime 'HH:MM:SS:mmmmmm' (or 'HH:MM:SS') in seconds."""
    parts = value.strip().split(":")
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        frac = float("0." + parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0.0
    except (ValueError, IndexError):
        return 0.0
    return h * 3600 + m * 60 + s + frac


def new_sipp(workdir: Path, name: str, scenario_path: Path, remote: str, **kwargs: Any) -> Sipp:
    """A Sipp for load: message tracing off (it would cost more than the calls), a short
    receive timeout so an unanswered call fails instead of hanging."""
    kwargs.setdefault("trace_msg", False)
    return Sipp(workdir, name, scenario_path, remote=remote, **kwargs)


# --- what the load runs against ------------------------------------------------------------


@dataclass
class Target:
    """The system under test: the switchboard server, or sipp's built-in uas standing in for
    it (to prove the load side of a benchmark without the server)."""

    name: str
    sip_address: str
    server: SwitchboardServer | None = None
    uas: Sipp | None = None

    @property
    def pid(self) -> int:
        if self.server is not None:
            return int(self.server.pid)
        if self.uas is not None and self.uas.proc is not None:
            return int(self.uas.proc.main_pid)
        return 0

    def healthy(self) -> bool:
        if self.server is not None:
            return healthy(self.server)
        return self.uas is not None and self.uas.running()

    def stats(self) -> dict[str, int]:
        return stats(self.server) if self.server is not None else {}

    def create_rooms(self, names: Sequence[str]) -> None:
        if self.server is not None:
            create_rooms(self.server, names)

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)
        if self.uas is not None and self.uas.proc is not None:
            self.uas.proc.stop()


def start_target(workdir: Path, *, against: str, extra: Mapping[str, Any] | None = None,
                 name: str = "switchboard") -> Target:
    """`against` is "server" (switchboard on core 0) or "uas" (sipp -sn uas on core 0, with
    -rtp_echo so media comes back as a mixer's would)."""
    if against == "server":
        server = start_server(workdir, extra, name=name)
        return Target(name, server.sip_address, server=server)
    uas = Sipp(workdir / name, "uas", "uas", calls=None, timeout_s=1500, trace_msg=False,
               rtp_echo=True, timeout_error=False,
               extra_args=["-max_recv_loops", "100000", "-max_sched_loops", "100000"])
    if (os.cpu_count() or 1) > SERVER_CPU and shutil.which("taskset"):
        sipp_bin = shutil.which("sipp") or "sipp"
        (workdir / name).mkdir(parents=True, exist_ok=True)
        uas.proc = procs.start_process(["taskset", "-c", str(SERVER_CPU), sipp_bin, *uas.args],
                                       name="sipp-uas", log_dir=workdir / name,
                                       timeout_s=uas.timeout_s + 15, cwd=workdir / name)
    else:
        uas.start()
    time.sleep(0.5)
    if not uas.running():
        raise BenchError(f"sipp uas did not start: {uas.proc.log_tail(10) if uas.proc else ''}")
    return Target("sipp-uas", uas.address, uas=uas)
