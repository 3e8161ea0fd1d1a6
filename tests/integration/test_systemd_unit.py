"""deploy/switchboard.service, rendered as `make install-service` renders it, passes
`systemd-analyze verify` with no warning (an unknown key is only a warning there, so any
output fails the test), and runs the server as its own user with only the capability to bind
low ports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def render(tmp_path: Path, prefix: Path, config: Path) -> Path:
    text = (REPO / "deploy" / "switchboard.service").read_text()
    unit = tmp_path / "switchboard.service"
    unit.write_text(text.replace("@PREFIX@", str(prefix)).replace("@CONFIG@", str(config)))
    return unit


def test_the_unit_is_valid_and_confined(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: make test installs it (scripts/install-peers.sh)"
    prefix = Path(sys.executable).parent.parent  # a venv with bin/switchboard, like PREFIX
    assert (prefix / "bin" / "switchboard").exists()
    config = tmp_path / "switchboard.toml"
    made = subprocess.run([str(prefix / "bin" / "switchboard"), "server-config", "--domain",
                           "meet.example.org", "--bind-ip", "127.0.0.1"],
                          capture_output=True, text=True, timeout=60, check=True)
    config.write_text(made.stdout)
    unit = render(tmp_path, prefix, config)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), \
        result.stderr + result.stdout
    text = unit.read_text()
    assert "User=switchboard" in text and "NoNewPrivileges=yes" in text
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in text
    assert f"ExecStart={prefix}/bin/switchboard serve --config {config}" in text


def test_a_broken_unit_is_caught(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and a missing program are reported."""
    analyze = shutil.which("systemd-analyze")
    assert analyze
    unit = render(tmp_path, tmp_path / "nowhere", tmp_path / "x.toml")
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nBogus=1"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert "Bogus" in result.stderr and "nowhere" in result.stderr
