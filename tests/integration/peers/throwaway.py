"""Throwaway servers for one test session (Redis, PostgreSQL): started on a free loopback
port in their own folder, stopped by the PID held, the folder removed afterwards.

They are not `procs.start_process` processes on purpose: that registry is emptied after every
test, and these live for the whole session. Each runs in its own session (process group) so
a stop reaches nothing else; `atexit` stops what a crashed session left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

log = logging.getLogger(__name__)


class Throwaway:
    """One server process, its folder and log; `stop()` ends it by PID and removes both."""

    def __init__(self, name: str, folder: Path, stop_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.folder = folder
        self.log_path = folder / f"{name}.log"
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, argv: Sequence[str]) -> None:
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          cwd=self.folder)
        atexit.register(self.stop)
        log.info("started %s (pid %d): %s", self.name, self.popen.pid, " ".join(argv))

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                pytest.fail(f"{self.name} exited with {self.popen and self.popen.returncode} "
                            f"before it was ready:\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} not ready within {timeout:.0f} s", pytrace=False)
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """The stop signal to the PID held, then SIGKILL to its process group; the folder
        goes in any case."""
        popen = self.popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, self.stop_signal)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored its stop signal: SIGKILL", self.name, popen.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=timeout)
        if popen is not None:  # forked children (PostgreSQL's backends) share the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


def new_folder(prefix: str) -> Path:
    """A fresh folder under the temporary directory that other users may traverse (the
    PostgreSQL server runs as `postgres`), but not list."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, 0o711)
    return folder


def require(program: str, package: str) -> str:
    """The program's path; fails the run (never skips) when it is not installed."""
    path = shutil.which(program) or (program if os.path.isfile(program) else None)
    if path is None:
        pytest.fail(f"{program} is missing: install the Debian package {package} "
                    f"(scripts/install-peers.sh does)", pytrace=False)
    return path
