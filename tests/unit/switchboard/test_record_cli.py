"""`switchboard recordings start`: what it asks the running server's API for."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest

from switchboard import record_cli
from switchboard.config import Config


def start(monkeypatch: pytest.MonkeyPatch, stdin: str = "", **flags: Any) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(record_cli, "_call",
                        lambda config, method, path, body=None: calls.append((method, path,
                                                                              body)))
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = argparse.Namespace(action="start", room="standup", video=False,
                              stream_stdin=False, **{})
    for key, value in flags.items():
        setattr(args, key, value)
    record_cli.run(Config(), args)
    return calls


def test_audio_video_and_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    path = "/api/rooms/standup/recordings"
    assert start(monkeypatch) == [("POST", path, {"mode": "file"})]
    assert start(monkeypatch, video=True) == [("POST", path, {"mode": "file", "video": True})]
    assert start(monkeypatch, "rtmp://127.0.0.1/live/k\n", stream_stdin=True) == [
        ("POST", path, {"mode": "stream", "url": "rtmp://127.0.0.1/live/k"})]
    assert start(monkeypatch, "abcd-1234\n", stream_stdin=True) == [
        ("POST", path, {"mode": "stream", "youtube_key": "abcd-1234"})]
    with pytest.raises(record_cli.CliError):
        start(monkeypatch, "", stream_stdin=True)
