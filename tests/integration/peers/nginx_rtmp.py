"""nginx with the RTMP module (Debian libnginx-mod-rtmp) as a live-stream ingest on loopback
that records every publish to its own FLV file (PEERS.md, "nginx: RTMP ingest")."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from peers import procs

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


class RtmpIngest:
    def __init__(self, workdir: Path, port: int) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists() or not MODULE.exists():
            pytest.fail("nginx with the RTMP module is not installed (Debian nginx-light and "
                        "libnginx-mod-rtmp: scripts/install-peers.sh)", pytrace=False)
        self.nginx = nginx
        self.port = port
        self.prefix = workdir / "nginx-rtmp"
        self.records = self.prefix / "records"
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        self.records.mkdir(parents=True, exist_ok=True)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(f"""
load_module {MODULE};
user root;  # the worker writes the recordings under pytest's private temporary folder
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record all;
            record_path {self.records};
            record_unique on;
        }}
    }}
}}
""")
        self.proc: procs.ManagedProcess | None = None
        self.starts = 0

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def start(self) -> RtmpIngest:
        self.starts += 1
        self.proc = procs.start_process(
            [self.nginx, "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr", "-g",
             "daemon off;"], name=f"nginx-rtmp-{self.starts}", log_dir=self.prefix / "logs",
            timeout_s=300)
        if not procs.wait_until(lambda: not procs.port_is_free(self.port, ("tcp",)), 10):
            raise AssertionError(f"nginx-rtmp did not listen:\n{self.proc.log_tail()}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
            deadline = time.monotonic() + 10
            while not procs.port_is_free(self.port, ("tcp",)) and time.monotonic() < deadline:
                time.sleep(0.1)

    def files(self) -> list[Path]:
        return sorted(self.records.glob("*.flv"), key=lambda p: p.stat().st_mtime)
