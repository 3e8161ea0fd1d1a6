"""The start-up log of where media binds and what it announces, and the warnings for the trap
of issue 15: web and SIP on every interface while browser media (the bridge) or phone media
(RTP) announces 127.0.0.1, one per service.

Each server runs with the shipped defaults (HTTP 0.0.0.0:8080, SIP 0.0.0.0:5060, browser
media 127.0.0.1 UDP 10000 and TCP 4443, phone RTP 127.0.0.1 UDP 20000-20999) inside a
network namespace of its own that has only loopback (`unshare -n`), so "every interface" is
the namespace's lo and nothing is exposed.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import pytest
from conftest import server_command, to_toml
from peers import procs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _start_in_namespace(tmp_path: Path, extra: dict[str, object]) -> tuple[procs.ManagedProcess,
                                                                        str]:
    config = tmp_path / "switchboard.toml"
    config.write_text(to_toml({
        "store": {"path": str(tmp_path / "data")},
        "admin": {"token": secrets.token_urlsafe(24)},
        **extra,
    }))
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is missing: scripts/install-peers.sh")
    inner = " ".join(server_command(config))
    argv = [unshare, "-n", "--", "sh", "-c", f"ip link set lo up && exec {inner}"]
    proc = procs.start_process(argv, name="switchboard", log_dir=tmp_path, timeout_s=60)
    deadline = time.monotonic() + 30.0
    text = ""
    while time.monotonic() < deadline:
        text = proc.log_path.read_text(errors="replace")
        if "switchboard: serving" in text:
            break
        if not proc.running():
            pytest.fail(f"switchboard exited ({proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.2)
    else:
        proc.stop()
        pytest.fail(f"switchboard did not start in 30 s:\n{text[-3000:]}")
    proc.stop(term_timeout=10.0)
    text = proc.log_path.read_text(errors="replace")
    assert "switchboard: stopping" in text and "Traceback" not in text, text[-3000:]
    return proc, text


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING " in line and "start-up:" in line]


def test_the_default_configuration_warns_at_start(tmp_path: Path) -> None:
    _, text = _start_in_namespace(tmp_path, {})
    [bridge, phone] = _warnings(text)
    assert "web on 0.0.0.0:8080" in bridge and "SIP on udp:0.0.0.0:5060" in bridge
    assert "browser media announces the loopback address 127.0.0.1" in bridge
    assert "SIP on udp:0.0.0.0:5060 and SIP on tcp:0.0.0.0:5060" in phone
    assert "phone media (RTP) announces the loopback address 127.0.0.1" in phone
    assert "bridge: media binds UDP 127.0.0.1:10000 and ICE-TCP 127.0.0.1:4443; " \
           "candidates announce 127.0.0.1" in text
    assert "gateway: SIP on udp:0.0.0.0:5060, tcp:0.0.0.0:5060 (Via and Contact announce " \
           "127.0.0.1 on 0.0.0.0 and ::); phone media (RTP) binds UDP 127.0.0.1 ports " \
           "20000-20999; SDP announces 127.0.0.1" in text


def test_a_public_bridge_with_phone_media_on_loopback_warns_for_phones(tmp_path: Path) -> None:
    """Browser media announced publicly (1:1 NAT) is not enough: phones reach SIP on every
    interface and would be told to send their RTP to 127.0.0.1."""
    _, text = _start_in_namespace(tmp_path, {"bridge": {"announce": "203.0.113.5",
                                                        "tcp_port": 0}})  # fmt: skip
    [warning] = _warnings(text)
    assert "phone media (RTP) announces the loopback address 127.0.0.1" in warning
    assert "browser media" not in warning
    assert "bridge: media binds UDP 127.0.0.1:10000; candidates announce 203.0.113.5" in text


def test_one_public_address_for_both_does_not_warn(tmp_path: Path) -> None:
    """1:1 NAT with the one setting: media binds the private (here loopback) address and
    announces the public one, phones' and browsers' alike; the log says both, and nothing
    warns."""
    _, text = _start_in_namespace(tmp_path, {"server": {"public_address": "203.0.113.5"},
                                             "bridge": {"tcp_port": 0}})  # fmt: skip
    assert "start-up:" not in text, text[-3000:]
    assert "bridge: media binds UDP 127.0.0.1:10000; candidates announce 203.0.113.5" in text
    assert "(Via and Contact announce 203.0.113.5 on 0.0.0.0 and ::); phone media (RTP) " \
           "binds UDP 127.0.0.1 ports 20000-20999; SDP announces 203.0.113.5" in text
