"""`switchboard rooms|numbers add|list|remove` on the configured store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard.cli import main


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, object]:
    code = main([args[0], "--config", str(config), *args[1:]])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_rooms_and_numbers_survive_a_reopen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "data"}"\n')
    code, room = run(capsys, config, "rooms", "add", "standup")
    assert code == 0 and isinstance(room, dict)
    assert room["name"] == "standup" and str(room["pin"]).isdigit() and len(room["pin"]) == 8
    host_pin = str(room["host_pin"])  # generated with the PIN, never the same
    assert host_pin.isdigit() and len(host_pin) == 8 and host_pin != room["pin"]
    assert run(capsys, config, "rooms", "add", "retro", "--pin", "4321987", "--no-host-pin")[1] == {
        "name": "retro",
        "pin": "4321987",
        # the policy (issue 17), today's behaviour by default
        "host_pin": None, "lobby": False, "has_password": False, "start": "anyone",
        "guests": True,
    }  # fmt: skip
    code, number = run(capsys, config, "numbers", "add", "+1 555 0101", "--route", "room",
                       "--room", "standup")  # fmt: skip
    assert code == 0 and isinstance(number, dict) and number["number"] == "+15550101"
    assert main(["rooms", "--config", str(config), "add", "standup"]) == 1  # a duplicate
    assert "standup" in capsys.readouterr().err
    rooms = run(capsys, config, "rooms", "list")[1]
    assert isinstance(rooms, list) and {r["name"] for r in rooms} == {"standup", "retro"}
    assert run(capsys, config, "rooms", "remove", "standup")[0] == 1  # a number routes to it
    assert run(capsys, config, "numbers", "remove", "+15550101")[0] == 0
    assert run(capsys, config, "rooms", "remove", "standup")[0] == 0
    assert [r["name"] for r in run(capsys, config, "rooms", "list")[1]] == ["retro"]  # type: ignore[union-attr]
    # --config after the action works too
    assert main(["rooms", "list", "--config", str(config)]) == 0
    assert "retro" in capsys.readouterr().out


def test_trunks_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "data"}"\n[dialplan]\n'
                      'default_country = "44"\n')
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret\n")
    code, trunk = run(capsys, config, "trunks", "add", "carrier", "--address", "127.0.0.1:5070",
                      "--username", "sb", "--password-file", str(secret), "--register",
                      "--number", "020 7946 0000", "--allow", "127.0.0.0/8")  # fmt: skip
    assert code == 0 and isinstance(trunk, dict)
    assert trunk["numbers"] == ["+442079460000"] and trunk["register"] is True
    assert "hunter2" not in json.dumps(trunk)
    listed = run(capsys, config, "trunks", "list")[1]
    assert isinstance(listed, list) and [t["name"] for t in listed] == ["carrier"]
    assert "hunter2" not in json.dumps(listed)
    # register without a password is refused, naming the fields
    assert main(["trunks", "--config", str(config), "add", "x", "--address", "h",
                 "--username", "u", "--register"]) == 1
    assert "password" in capsys.readouterr().err
    assert run(capsys, config, "trunks", "remove", "carrier")[0] == 0
    assert run(capsys, config, "trunks", "list")[1] == []
