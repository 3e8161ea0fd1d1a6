"""`switchboard dial` and `switchboard calls`: dial-out through the running server's API.

Dialling needs the live gateway, so these commands do not touch the store: they call
`POST /api/rooms/{room}/dial`, `GET` and `DELETE /api/calls/{id}` on the server named by
the configuration's http.listen (a wildcard address becomes 127.0.0.1), with the admin
token (admin.token, or the one saved in the data directory). `--url` names another server.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from switchboard.config import Config

__all__ = ["add_dial_parsers", "run_dial_command"]


def add_dial_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction
    dial = sub.add_parser("dial", help="call a phone into a room (through the running server)")
    dial.add_argument("room")
    dial.add_argument("number", help="E.164 (+15550199) or national with "
                                     "dialplan.default_country")
    dial.add_argument("--trunk", help="the trunk (optional when exactly one allows the number)")
    dial.add_argument("--ringing-timeout", type=float, metavar="SECONDS")
    dial.add_argument("--dtmf", help="digits sent after the answer (',' pauses 1 s)")
    dial.add_argument("--wait", action="store_true",
                      help="follow the call until it is connected or ended")
    calls = sub.add_parser("calls", help="a dial-out call's state, or hang it up")
    csub = calls.add_subparsers(dest="action", required=True)
    show = csub.add_parser("show", help="the call's state (GET /api/calls/ID)")
    hangup = csub.add_parser("hangup", help="cancel or hang up (DELETE /api/calls/ID)")
    for action in (show, hangup):
        action.add_argument("id")
    for p, nested in ((dial, False), (calls, False), (show, True), (hangup, True)):
        # on the actions too (`calls show ID --config F`), without overwriting a value
        # given before the action
        default = argparse.SUPPRESS if nested else None
        p.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file",
                       default=default)
        p.add_argument("--url", default=default,
                       help="the server's base URL (default: from http.listen)")
        p.add_argument("--insecure", action="store_true",
                       default=argparse.SUPPRESS if nested else False,
                       help="do not verify the server's HTTPS certificate (loopback tests)")


def _base_url(config: Config, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    host, port = config.http.host_port
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.http.tls else 'http'}://{host}:{port}"


def _request(args: argparse.Namespace, config: Config, method: str, path: str,
             body: dict[str, object] | None = None) -> tuple[int, Any]:
    from switchboard.app import admin_token

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        _base_url(config, args.url) + path, data=data, method=method,
        headers={"Authorization": f"Bearer {admin_token(config)}",
                 "Content-Type": "application/json"})  # fmt: skip
    context = ssl._create_unverified_context() if args.insecure else None
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location", "") if exc.code == 307 else ""
        moved = urllib.parse.urlsplit(location)
        if moved.scheme in ("http", "https") and moved.netloc and moved.path == path and \
                not getattr(args, "followed", False):  # fmt: skip
            # a cluster: the room lives on another node, which places the call; the rest
            # (--wait) asks that node too
            args.url, args.followed = f"{moved.scheme}://{moved.netloc}", True
            return _request(args, config, method, path, body)
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"error": raw.decode(errors="replace")[:200]}


def run_dial_command(config: Config, args: argparse.Namespace) -> int:
    """0 when the server accepted the request (and, with --wait, the call connected)."""
    try:
        if args.command == "dial":
            body: dict[str, object] = {"number": args.number}
            if args.trunk:
                body["trunk"] = args.trunk
            if args.ringing_timeout is not None:
                body["ringing_timeout"] = args.ringing_timeout
            if args.dtmf:
                body["dtmf"] = args.dtmf
            status, result = _request(args, config, "POST", f"/api/rooms/{args.room}/dial",
                                      body)
            if status == 202 and args.wait:
                call_id = result["id"]
                deadline = time.monotonic() + 330
                while time.monotonic() < deadline:
                    status, result = _request(args, config, "GET", f"/api/calls/{call_id}")
                    if status != 200 or result.get("state") in ("connected", "ended"):
                        break
                    time.sleep(0.5)
                ok = status == 200 and result.get("state") == "connected"
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
                return 0 if ok else 1
        elif args.action == "show":
            status, result = _request(args, config, "GET", f"/api/calls/{args.id}")
        else:
            status, result = _request(args, config, "DELETE", f"/api/calls/{args.id}")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"switchboard: cannot reach the server: {exc}\n")
        return 1
    if result is not None:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if status >= 400:
        sys.stderr.write(f"switchboard: HTTP {status}\n")
        return 1
    return 0
