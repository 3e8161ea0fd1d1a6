"""dnsmasq as an authoritative-enough DNS server on loopback for trunk tests: SRV records
(`--srv-host`) and A records (`--host-record`) given by the test, on its own port, nothing
forwarded upstream, every query logged. Started and stopped by PID (procs)."""

from __future__ import annotations

import shutil
import socket
import struct
import time
from pathlib import Path

from . import procs

DNS_HOST = "127.0.0.53"


def _binary() -> str:
    found = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq"
                                        if Path("/usr/sbin/dnsmasq").exists() else None)
    if found is None:
        raise RuntimeError("dnsmasq is not installed (Debian dnsmasq-base; "
                           "scripts/install-peers.sh installs it)")
    return found


def _query(port: int, name: str) -> bytes:
    """A DNS question for `name` (type A); the raw reply, or b"" on timeout."""
    header = struct.pack("!HHHHHH", 0x5342, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(header + qname + struct.pack("!HH", 1, 1), (DNS_HOST, port))
        try:
            return sock.recv(4096)
        except OSError:
            return b""


class Dnsmasq:
    """`srv`: (service name, target, port, priority, weight); `hosts`: (name, IPv4)."""

    def __init__(self, workdir: Path, *, srv: list[tuple[str, str, int, int, int]],
                 hosts: list[tuple[str, str]], timeout_s: float = 180.0) -> None:
        self.dir = workdir / "dnsmasq"
        self.port = procs.free_port(kinds=("udp",))
        self.srv = srv
        self.hosts = hosts
        self.timeout_s = timeout_s
        self.proc: procs.ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{DNS_HOST}:{self.port}"

    def start(self, ready_timeout: float = 10.0) -> Dnsmasq:
        argv = [_binary(), "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--no-poll", "--user=root", "--bind-interfaces",
                f"--listen-address={DNS_HOST}", f"--port={self.port}", "--local-ttl=0",
                "--log-queries", "--log-facility=-", f"--pid-file={self.dir / 'pid'}"]
        argv += [f"--srv-host={name},{target},{port},{priority},{weight}"
                 for name, target, port, priority, weight in self.srv]
        argv += [f"--host-record={name},{ip}" for name, ip in self.hosts]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.start_process(argv, name="dnsmasq", log_dir=self.dir,
                                        timeout_s=self.timeout_s)
        deadline = time.monotonic() + ready_timeout
        probe = self.hosts[0][0] if self.hosts else "localhost"
        while not _query(self.port, probe):
            if not self.proc.running():
                raise RuntimeError(f"dnsmasq exited:\n{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq did not answer in {ready_timeout:.0f} s:\n"
                                   f"{self.proc.log_tail()}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc is not None else ""

    def queries(self, kind: str, name: str) -> int:
        return self.log_text().count(f"query[{kind}] {name} from")

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
