"""`switchboard trunks list|add|remove`: through the running server's API when it answers
(its registration state shown; add and remove go to the server, which registers and
un-REGISTERs), else the store with "state unknown (server not reachable)".

The "server" here is a small HTTP server on a free loopback port that plays the trunks API
and records what it was asked.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from switchboard.cli import main
from switchboard.trunks_cli import UNREACHABLE

TOKEN = "trunks-cli-token-0123456789"


class FakeApi:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []  # method, path, auth, body
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                api.requests.append((self.command, self.path,
                                     self.headers.get("Authorization", ""),
                                     json.loads(raw) if raw else None))
                status, body = api.answers.get((self.command, self.path), (404, {"error": "?"}))
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, port: int, token: str | None = TOKEN) -> Path:
    config = tmp_path / "c.toml"
    text = (f'[store]\npath = "{tmp_path / "data"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
            '[dialplan]\ndefault_country = "1"\n')
    if token:
        text += f'[admin]\ntoken = "{token}"\n'
    config.write_text(text)
    return config


def run(capsys: pytest.CaptureFixture[str], config: Path,
        *args: str) -> tuple[int, Any, str]:
    code = main(["trunks", *args, "--config", str(config)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


CARRIER = {"name": "carrier", "address": "127.0.0.1:5070", "transport": "udp",
           "has_password": True, "register": True, "numbers": ["+15550100"]}


def test_list_shows_the_servers_registration_state(
        api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listed = [{**CARRIER, "registration": {"state": "registered", "detail": "expires in 58 s"}}]
    api.answers[("GET", "/api/trunks")] = (200, listed)
    code, out, _ = run(capsys, write_config(tmp_path, api.port), "list")
    assert code == 0 and out == listed
    assert api.requests == [("GET", "/api/trunks", f"Bearer {TOKEN}", None)]


def test_add_and_remove_go_through_the_server(
        api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret\n")
    created = {**CARRIER, "registration": {"state": "registering", "detail": ""}}
    api.answers[("POST", "/api/trunks")] = (201, created)
    api.answers[("DELETE", "/api/trunks/carrier")] = (204, None)
    config = write_config(tmp_path, api.port)
    code, out, _ = run(capsys, config, "add", "carrier", "--address", "127.0.0.1:5070",
                       "--username", "sb", "--password-file", str(secret), "--register",
                       "--number", "555 0100", "--destination", "+1555")
    assert code == 0 and out == created
    method, path, auth, body = api.requests[-1]
    assert (method, path, auth) == ("POST", "/api/trunks", f"Bearer {TOKEN}")
    assert body["password"] == "hunter2-secret" and body["register"] is True
    assert body["numbers"] == ["555 0100"] and body["allowed_destinations"] == ["+1555"]
    code, out, _ = run(capsys, config, "remove", "carrier")
    assert code == 0 and out is None
    assert api.requests[-1][:2] == ("DELETE", "/api/trunks/carrier")
    # the store was not touched: the server owns it
    assert not (tmp_path / "data" / "switchboard.db").exists()


def test_a_refusal_of_the_server_is_an_error_not_a_fallback(
        api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api.answers[("POST", "/api/trunks")] = (409, {"error": "trunk 'carrier' exists"})
    api.answers[("DELETE", "/api/trunks/nope")] = (404, {"error": "trunk 'nope' not found"})
    api.answers[("GET", "/api/trunks")] = (401, {"error": "admin token required"})
    config = write_config(tmp_path, api.port)
    code, out, err = run(capsys, config, "add", "carrier", "--address", "127.0.0.1")
    assert (code, out) == (1, None) and "409" in err and "exists" in err
    code, out, err = run(capsys, config, "remove", "nope")
    assert (code, out) == (1, None) and "404" in err and "not found" in err
    code, out, err = run(capsys, config, "list")
    assert (code, out) == (1, None) and "401" in err
    assert not (tmp_path / "data" / "switchboard.db").exists()


@pytest.mark.parametrize("token", [TOKEN, None])
def test_without_a_server_the_store_is_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str | None) -> None:
    """Nothing listens at http.listen (or there is no token to ask with): the store, and
    the state is unknown."""
    config = write_config(tmp_path, free_port(), token)
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret\n")
    code, out, err = run(capsys, config, "add", "carrier", "--address", "127.0.0.1:5070",
                         "--username", "sb", "--password-file", str(secret), "--register",
                         "--number", "555 0100")
    assert code == 0 and out["numbers"] == ["+15550100"], (out, err)
    assert out["registration"] == {"state": "unknown", "detail": UNREACHABLE}
    assert "next start" in err and "hunter2" not in json.dumps(out) + err
    code, out, err = run(capsys, config, "list")
    assert code == 0 and [t["name"] for t in out] == ["carrier"]
    assert out[0]["registration"] == {"state": "unknown", "detail": UNREACHABLE}
    assert UNREACHABLE in err
    code, out, err = run(capsys, config, "remove", "carrier")
    assert code == 0 and "store only" in err
    assert run(capsys, config, "list")[1] == []
    code, out, err = run(capsys, config, "remove", "carrier")
    assert code == 1 and "carrier" in err


def test_password_from_standard_input_is_read_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin-pw\n"))
    config = write_config(tmp_path, free_port(), None)  # no server: the store
    code, out, _ = run(capsys, config, "add", "carrier", "--address", "127.0.0.1",
                       "--username", "sb", "--password-file", "-", "--register")
    assert code == 0 and out["has_password"] is True
    from switchboard.admin import open_store
    from switchboard.config import load_config

    with open_store(load_config(str(config))) as store:
        trunk = store.trunk("carrier")
        assert trunk is not None and trunk.password == "from-stdin-pw"
