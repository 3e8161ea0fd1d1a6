"""Run sipp (3.6) on 127.0.0.1: a built-in uac/uas or an XML scenario, always bounded by
`-timeout` (and a `timeout` wrapper), with statistics, errors and messages traced to files.

The result comes from the exit code and the last row of the `-trace_stat` CSV:
sipp exits 0 when every call succeeded, 1 when at least one failed, 97 on an internal exit
(or `-timeout` with no calls), 99 after a normal exit with no calls, 255/254 on fatal errors.

The dial-in scenarios are generated from the templates in `scenarios.py`, re-exported here
(PIN digits become RFC 2833 pcaps), so a test writes one per PIN into its own tmp dir; the
files in tests/integration/scenarios/ are the same templates with default values.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .scenarios import (
    PCAP_DIR,
    SCENARIO_DIR,
    dtmf_pcap,
    options_scenario,
    pin_dial_scenario,
    room_direct_scenario,
    static_scenarios,
    uas_scenario,
    write_dtmf_pcaps,
    write_pin_dial,
    write_scenario,
    write_static_scenarios,
    write_wrong_pin,
    wrong_pin_scenario,
)

__all__ = [
    "BUILTIN",
    "EXIT_CODES",
    "PCAP_DIR",
    "SCENARIO_DIR",
    "Sipp",
    "SippResult",
    "dtmf_pcap",
    "options_scenario",
    "pin_dial_scenario",
    "room_direct_scenario",
    "run_sipp",
    "static_scenarios",
    "uas_scenario",
    "write_dtmf_pcaps",
    "write_pin_dial",
    "write_scenario",
    "write_static_scenarios",
    "write_wrong_pin",
    "wrong_pin_scenario",
]

log = logging.getLogger(__name__)

BUILTIN = frozenset({"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-A",
                     "3pcc-B", "3pcc-C-A", "3pcc-C-B"})
EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command, or -timeout reached with no call",
    99: "normal exit without calls processed",
    124: "killed by the timeout wrapper",
    254: "fatal error binding a socket",
    255: "fatal error",
}


@dataclass
class SippResult:
    name: str
    returncode: int
    successful: int
    failed: int
    created: int
    stats: dict[str, str]             # the last (cumulative) row of the stat CSV
    rows: list[dict[str, str]]        # every row (one per -fd period) for benchmarks
    log_path: Path
    stat_path: Path
    error_path: Path
    message_path: Path | None
    extra_files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Exit 0, no failed call, at least one successful call."""
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    @property
    def meaning(self) -> str:
        return EXIT_CODES.get(self.returncode, f"unknown exit code {self.returncode}")

    def describe(self, tail: int = 40) -> str:
        """A summary for assertion messages: counts, exit code, errors and log tails."""
        parts = [f"sipp {self.name}: exit {self.returncode} ({self.meaning}), "
                 f"{self.successful} successful, {self.failed} failed, {self.created} created"]
        for label, path in (("errors", self.error_path), ("log", self.log_path)):
            text = _tail(path, tail)
            if text:
                parts.append(f"--- {label} ({path}) ---\n{text}")
        return "\n".join(parts)

    def counter(self, name: str, cumulative: bool = True) -> int:
        """A stat counter by its CSV name without the (P)/(C) suffix, e.g. 'Retransmissions'."""
        key = f"{name}({'C' if cumulative else 'P'})"
        return _int(self.stats.get(key, self.stats.get(name, "0")))


class Sipp:
    """One sipp run. `scenario` is a built-in name ("uac", "uas") or an XML file path."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        scenario: str | Path,
        *,
        remote: str | None = None,
        local_port: int | None = None,
        media_port: int | None = None,
        service: str | None = None,
        calls: int | None = 1,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        hold_ms: int | None = None,
        transport: str = "u1",
        keys: Mapping[str, str] | None = None,
        sets: Mapping[str, str] | None = None,
        inf: Path | None = None,
        rtp_echo: bool = False,
        auto_answer: bool = True,
        timeout_s: float = 30.0,
        timeout_error: bool = True,
        trace_msg: bool = True,
        trace_logs: bool = False,
        stat_period_s: int = 1,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.scenario = scenario
        self.remote = remote
        self.local_port = local_port if local_port is not None else procs.free_port()
        self.media_port = media_port if media_port is not None else procs.find_port_block(4)
        self.timeout_s = timeout_s
        self.stat_path = workdir / f"{name}_stat.csv"
        self.error_path = workdir / f"{name}_errors.log"
        self.message_path = workdir / f"{name}_messages.log" if trace_msg else None
        self.logs_path = workdir / f"{name}_logs.log" if trace_logs else None
        self.proc: procs.ManagedProcess | None = None

        args: list[str] = []
        if isinstance(scenario, Path) or scenario not in BUILTIN:
            path = Path(scenario)
            if not path.is_absolute() and not path.exists():
                path = SCENARIO_DIR / path
            if not path.is_file():
                raise FileNotFoundError(f"sipp scenario {scenario} not found")
            args += ["-sf", str(path)]
        else:
            args += ["-sn", str(scenario)]
        if remote:
            args.append(remote)
        args += ["-i", procs.LOOPBACK, "-p", str(self.local_port),
                 "-mi", procs.LOOPBACK, "-mp", str(self.media_port),
                 "-t", transport, "-nostdin", "-timeout", f"{timeout_s:g}s",
                 "-trace_stat", "-stf", str(self.stat_path), "-fd", str(stat_period_s),
                 "-trace_err", "-error_file", str(self.error_path)]
        if timeout_error:
            args.append("-timeout_error")
        if self.message_path is not None:
            args += ["-trace_msg", "-message_file", str(self.message_path)]
        if self.logs_path is not None:
            args += ["-trace_logs", "-log_file", str(self.logs_path)]
        if service is not None:
            args += ["-s", service]
        if calls is not None:
            args += ["-m", str(calls)]
        if rate is not None:
            args += ["-r", f"{rate:g}"]
        if rate_period_ms is not None:
            args += ["-rp", str(rate_period_ms)]
        if limit is not None:
            args += ["-l", str(limit)]
        if hold_ms is not None:
            args += ["-d", str(hold_ms)]
        if rtp_echo:
            args.append("-rtp_echo")
        if auto_answer:
            args.append("-aa")
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        for key, value in (sets or {}).items():
            args += ["-set", key, value]
        if inf is not None:
            args += ["-inf", str(inf)]
        args += list(extra_args)
        self.args = args

    @property
    def address(self) -> str:
        """Where this sipp listens for SIP: '127.0.0.1:port'."""
        return f"{procs.LOOPBACK}:{self.local_port}"

    def start(self) -> Sipp:
        sipp = shutil.which("sipp")
        if sipp is None:
            raise RuntimeError("sipp is not installed: run scripts/install-peers.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The wrapper only fires if sipp's own -timeout fails to end it.
        self.proc = procs.start_process([sipp, *self.args], name=f"sipp-{self.name}",
                                        log_dir=self.workdir, timeout_s=self.timeout_s + 15,
                                        cwd=self.workdir)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to exit (by default its -timeout plus a margin) and parse the result;
        a sipp that outstays that is stopped and reported with its exit code."""
        if self.proc is None:
            raise RuntimeError(f"sipp {self.name} was not started")
        limit = timeout if timeout is not None else self.timeout_s + 10
        try:
            code = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            log.error("sipp %s still running after %.0f s: stopping it", self.name, limit)
            stopped = self.proc.stop()
            code = stopped if stopped is not None else -9
        return self.result(code)

    def stop(self) -> SippResult:
        if self.proc is None:
            raise RuntimeError(f"sipp {self.name} was not started")
        code = self.proc.stop()
        return self.result(code if code is not None else -9)

    def result(self, code: int) -> SippResult:
        assert self.proc is not None
        rows = read_stat_rows(self.stat_path)
        last = rows[-1] if rows else {}
        successful = _int(last.get("SuccessfulCall(C)", "")) if last else -1
        failed = _int(last.get("FailedCall(C)", "")) if last else -1
        created = _int(last.get("TotalCallCreated", "")) if last else -1
        if not last:
            successful, failed = _screen_counts(self.proc.log_text())
        res = SippResult(name=self.name, returncode=code, successful=successful, failed=failed,
                         created=created, stats=last, rows=rows, log_path=self.proc.log_path,
                         stat_path=self.stat_path, error_path=self.error_path,
                         message_path=self.message_path)
        log.info("sipp %s: exit %d (%s), %d successful, %d failed", self.name, code,
                 res.meaning, successful, failed)
        return res


def run_sipp(workdir: Path, name: str, scenario: str | Path, **kwargs: object) -> SippResult:
    """Start sipp in the foreground and wait for it (bounded by its -timeout)."""
    return Sipp(workdir, name, scenario, **kwargs).start().wait()  # type: ignore[arg-type]


def read_stat_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a sipp -trace_stat CSV (';'-separated, header first)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    reader = csv.reader(lines, delimiter=";")
    header = next(reader)
    return [dict(zip(header, row, strict=False)) for row in reader]


def _screen_counts(screen: str) -> tuple[int, int]:
    """Fallback when there is no stat file: the cumulative column of the final screen."""
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    bad = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return (int(ok[-1]) if ok else -1, int(bad[-1]) if bad else -1)


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
