"""`switchboard recordings start|stop|list`: the running server's recordings API, from a shell.

Recordings live in the running server (the bridge's packets), so unlike the rooms and numbers
commands these talk to it over its HTTP API (docs/recording.md), on the address of
`http.listen` (the loopback address when it listens on every address), with the admin token
(`admin.token`, or the one the server saved in the data directory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from switchboard.config import Config
from switchboard.trunks_cli import ServerError, Unreachable
from switchboard.trunks_cli import call as api_call


class CliError(Exception):
    """What to tell the operator (the server's answer, or why there is none)."""


def add_parser(sub: Any, config_arg: Any) -> None:
    rec = sub.add_parser("recordings", help="start, stop and list recordings (running server)")
    config_arg(rec)
    rsub = rec.add_subparsers(dest="action", required=True)
    for action, text in (("start", "start recording a room"), ("stop", "stop it")):
        p = rsub.add_parser(action, help=text)
        config_arg(p, nested=True)
        p.add_argument("room")
        if action == "start":
            p.add_argument("--video", action="store_true", help="video.mp4 too")
            p.add_argument("--stream-stdin", action="store_true",
                           help="stream live instead: read an rtmp:// address or a YouTube "
                                "stream key from standard input (never from the command "
                                "line, where ps and the shell's history would show it)")
    plist = rsub.add_parser("list", help="the recordings on disk")
    config_arg(plist, nested=True)
    plist.add_argument("--room", help="only this room's")


def _token(config: Config) -> str:
    if config.admin.token:
        return config.admin.token
    path = Path(config.store.path) / "admin-token"
    try:
        return path.read_text().strip()
    except OSError:
        raise CliError(f"no admin.token and no {path}: has the server ever started?") from None


def _call(config: Config, method: str, path: str, body: object = None) -> Any:
    """The running server's JSON answer (switchboard/trunks_cli.py's client: the admin
    token, no proxy, our own certificate not checked by name); a CliError otherwise."""
    _token(config)  # its own message when there is no token at all
    try:
        return api_call(config, method, path, body)
    except ServerError as exc:
        raise CliError(f"{method} {path}: {exc}") from None
    except Unreachable as exc:
        host, port = config.http.host_port
        raise CliError(f"the server at {host}:{port} did not answer: {exc}") from None


def run(config: Config, args: argparse.Namespace) -> Any:
    room = getattr(args, "room", None)
    if args.action == "start":
        body: dict[str, object] = {"mode": "file"}
        if args.stream_stdin:
            target = sys.stdin.readline().strip()
            if not target:
                raise CliError("--stream-stdin: nothing on standard input")
            body = {"mode": "stream"}
            body["url" if target.lower().startswith(("rtmp://", "rtmps://"))
                 else "youtube_key"] = target
        elif args.video:
            body["video"] = True
        return _call(config, "POST", f"/api/rooms/{room}/recordings", body)
    if args.action == "stop":
        items = _call(config, "GET", f"/api/rooms/{room}/recordings")
        running = [r for r in items if r.get("state") == "recording"]
        if not running:
            raise CliError(f"room {room} is not being recorded")
        return _call(config, "DELETE", f"/api/rooms/{room}/recordings/{running[0]['id']}")
    if room:
        return _call(config, "GET", f"/api/rooms/{room}/recordings")
    return _call(config, "GET", "/api/recordings")
