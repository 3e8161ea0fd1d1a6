"""Processes for integration tests: bounded, logged to files, stopped by PID.

Each process runs as `timeout --kill-after=5 <seconds> <argv...>` in a new session, so its
process group id equals the PID we hold: SIGTERM goes to the wrapper (which forwards it to the
program), and the SIGKILL fallback goes to the whole group (forked children included). Nothing
is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Port blocks come from below the Linux ephemeral range (32768-60999), so the kernel does not
# hand one of them to some other socket between our check and the peer's bind.
_BLOCK_LOW = 12000
_BLOCK_HIGH = 32000
_handed_out: set[int] = set()
_live: list[ManagedProcess] = []
_started_pgids: list[int] = []  # every process group this test process started


@dataclass
class ManagedProcess:
    """A program started by `start_process`; `pid` is the wrapper's PID and process group."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    timeout_s: float
    started_at: float = field(default_factory=time.monotonic)
    killed: bool = False  # True when it took SIGKILL to end it

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def main_pid(self) -> int:
        """The program's own PID (the child of the `timeout` wrapper), else the wrapper's."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return self.pid
        return int(children[0]) if children else self.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for exit; raises subprocess.TimeoutExpired after `timeout` seconds."""
        return self.popen.wait(timeout=timeout)

    def signal(self, signum: int) -> None:
        """Send a signal to the program itself (not the wrapper)."""
        if self.running():
            os.kill(self.main_pid, signum)

    def stop(self, term_timeout: float = 5.0, kill_timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `term_timeout`; then SIGKILL the group, wait `kill_timeout`."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=term_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.1f s: SIGKILL",
                            self.name, self.pid, term_timeout)
                self.killed = True
                _kill_group(self.pid)
                try:
                    self.popen.wait(timeout=kill_timeout)
                except subprocess.TimeoutExpired:
                    log.error("%s (pid %d) survived SIGKILL", self.name, self.pid)
        if self.popen.poll() in (-signal.SIGKILL, 128 + signal.SIGKILL):
            self.killed = True  # by us, or by the wrapper's --kill-after
        # Forked children that outlived the program (same process group) go too.
        if group_members(self.pid):
            _kill_group(self.pid)
            wait_until(lambda: not group_members(self.pid), timeout=kill_timeout)
        if self in _live and not self.running():
            _live.remove(self)
        return self.popen.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """PIDs still alive in process group `pgid` (via pgrep -g; zombies left out)."""
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return []
    out = subprocess.run([pgrep, "-g", str(pgid)], capture_output=True, text=True,
                         timeout=10, check=False)
    return [int(p) for p in out.stdout.split() if not _is_zombie(int(p))]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone already
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def start_process(
    argv: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin_path: Path | None = None,
    kill_after_s: float = 20.0,
) -> ManagedProcess:
    """Start `argv` under `timeout`, stdout+stderr to `log_dir/<name>.log`, stdin from
    /dev/null (or `stdin_path`). The wrapper sends SIGTERM after `timeout_s` and SIGKILL
    `kill_after_s` later, so nothing outlives a crashed test run. (The wrapper forwards any
    SIGTERM it gets and then also kills after `kill_after_s`: keep that longer than the
    `term_timeout` given to `stop`, so `stop` decides when to SIGKILL.)"""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    timeout_bin = shutil.which("timeout") or "/usr/bin/timeout"
    full = [timeout_bin, f"--kill-after={kill_after_s:.1f}", f"{timeout_s:.1f}", *argv]
    full_env = dict(os.environ if env is None else env)
    with open(log_path, "ab") as out, open(stdin_path or os.devnull, "rb") as inp:
        popen = subprocess.Popen(full, stdin=inp, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=cwd, env=full_env, start_new_session=True)
    proc = ManagedProcess(name=name, argv=list(argv), popen=popen, log_path=log_path,
                          timeout_s=timeout_s)
    _live.append(proc)
    _started_pgids.append(popen.pid)
    log.info("started %s (pid %d, timeout %.0f s): %s", name, popen.pid, timeout_s,
             " ".join(argv))
    return proc


def live_processes() -> list[ManagedProcess]:
    return [p for p in _live if p.running() or group_members(p.pid)]


def stray_processes() -> dict[int, list[int]]:
    """{process group: live PIDs} over every group started by this test process."""
    out = {}
    for pgid in _started_pgids:
        members = group_members(pgid)
        if members:
            out[pgid] = members
    return out


def stop_all(term_timeout: float = 5.0) -> list[str]:
    """Stop every process still running; returns the names of those that were stopped."""
    stopped = []
    for proc in list(_live):
        if proc.running() or group_members(proc.pid):
            stopped.append(f"{proc.name} (pid {proc.pid})")
            proc.stop(term_timeout=term_timeout)
        if proc in _live:
            _live.remove(proc)
    return stopped


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it returns truthy or `timeout` passes; returns the outcome."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- ports -------------------------------------------------------------------------------


def port_is_free(port: int, kinds: Iterable[str] = ("udp", "tcp")) -> bool:
    """True if `port` can be bound on 127.0.0.1 for every kind ("udp", "tcp")."""
    for kind in kinds:
        stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, stype) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
    return True


def free_port(kinds: Iterable[str] = ("udp", "tcp")) -> int:
    """A port free on 127.0.0.1 for all `kinds`, not handed out before in this process."""
    return find_port_block(1, kinds=kinds)


def find_port_block(count: int, *, kinds: Iterable[str] = ("udp", "tcp"), align: int = 2,
                    attempts: int = 200) -> int:
    """First port of `count` consecutive ports, all free on 127.0.0.1 (for each of `kinds`)
    and not handed out before in this process. The base is a multiple of `align` (RTP wants
    even ports). Random bases keep parallel test runs apart. When the range is used up
    (a whole suite's servers took 20,000 ports between them), the record of what was handed
    out is forgotten once and the search starts again: the ports of servers that have
    stopped are free again, and those still in use fail the bind check."""
    kinds = tuple(kinds)
    rng = random.Random()
    for round_ in range(2):
        for _ in range(attempts):
            base = rng.randrange(_BLOCK_LOW, _BLOCK_HIGH - count)
            base -= base % max(align, 1)
            ports = range(base, base + count)
            if any(p in _handed_out for p in ports):
                continue
            if all(port_is_free(p, kinds) for p in ports):
                _handed_out.update(ports)
                return base
        if round_ == 0:
            _handed_out.clear()
    raise RuntimeError(f"no block of {count} free ports on {LOOPBACK} after {attempts} tries")
