"""`switchboard rooms add|set|show` with the room policy; the password comes from stdin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dialplan.models import verify_password
from dialplan.store import Store
from switchboard.cli import main


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, object]:
    code = main([args[0], "--config", str(config), *args[1:]])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_policy_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "data"}"\n'
                      '[meetings]\ndefault_lobby = true\n')  # fmt: skip
    code, room = run(capsys, config, "rooms", "add", "standup", "--pin", "48213077",
                     "--host-pin", "59372014", "--start", "hosts")  # fmt: skip
    assert code == 0 and room == {"name": "standup", "pin": "48213077", "host_pin": "59372014",
                                  "lobby": True, "has_password": False, "start": "hosts",
                                  "guests": True}  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO("sesame42\n"))
    code, room = run(capsys, config, "rooms", "set", "standup", "--password-stdin",
                     "--lobby", "off", "--guests", "off")  # fmt: skip
    assert code == 0 and isinstance(room, dict)
    assert (room["has_password"], room["lobby"], room["guests"]) == (True, False, False)
    assert "sesame42" not in json.dumps(room)
    with Store(tmp_path / "data" / "switchboard.db") as store:
        record = store.room("standup")
        assert record is not None and record.password_hash is not None
        assert verify_password(record.password_hash, "sesame42")
    code, room = run(capsys, config, "rooms", "set", "standup", "--no-password", "--no-host-pin")
    assert code == 0 and isinstance(room, dict)
    assert room["has_password"] is False and room["host_pin"] is None
    assert run(capsys, config, "rooms", "show", "standup")[1] == room
    assert main(["rooms", "show", "nope", "--config", str(config)]) == 1
    assert main(["rooms", "set", "standup", "--host-pin", "48213077",
                 "--config", str(config)]) == 1  # its own PIN
