"""`switchboard trunks list|add|remove`: through the running server when it is up, else the
store.

A trunk's registration lives in the running server, so these commands ask it first, over
its HTTP API (GET/POST /api/trunks, DELETE /api/trunks/{name}), on the address of
`http.listen` (the loopback address when it listens on every address), with the admin
token (`admin.token`, or the one the server saved in the data directory):

- `list` shows each trunk with its "registration" ({"state", "detail"}) as the server
  sees it; when the server does not answer, the trunks come from the store with the state
  "unknown" and the detail "state unknown (server not reachable)".
- `add` through the server registers the new trunk at once; `remove` un-REGISTERs it
  (Expires: 0) before it is forgotten. When the server does not answer, both work on the
  store alone (the server registers the trunk at its next start).

A server that answers with an error (a bad field, a name already used, a wrong token) is
not worked around: its answer is printed and the command fails. The password goes from
--password-file into the request's body, never into a URL or a log line.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from dialplan.models import DialplanError
from switchboard.config import Config

__all__ = ["UNREACHABLE", "run_trunks"]

TIMEOUT = 5.0
UNREACHABLE = "state unknown (server not reachable)"


class Unreachable(Exception):
    """The server did not answer (not running, or no admin token to ask it with)."""


class ServerError(Exception):
    """The server answered with an HTTP error: (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _token(config: Config) -> str:
    if config.admin.token:
        return config.admin.token
    try:
        return (Path(config.store.path) / "admin-token").read_text().strip()
    except OSError:
        raise Unreachable("no admin.token and no saved token (has the server started?)") \
            from None


def _base_url(config: Config) -> str:
    host, port = config.http.host_port
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.http.tls else 'http'}://{host}:{port}"


def call(config: Config, method: str, path: str, body: object = None) -> Any:
    """The server's JSON answer; Unreachable when it does not answer, ServerError when it
    answers with an error."""
    context = None
    if config.http.tls:  # our own server, by address: its name is not what it listens on
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        _base_url(config) + path, data=data, method=method,
        headers={"Authorization": f"Bearer {_token(config)}",
                 "Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=TIMEOUT) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            message = str(json.loads(exc.read()).get("error", exc.reason))
        except (ValueError, AttributeError):
            message = str(exc.reason)
        raise ServerError(exc.code, message) from None
    except (OSError, ValueError) as exc:  # URLError is an OSError
        raise Unreachable(str(getattr(exc, "reason", exc))) from None
    return json.loads(raw) if raw else None


def _unknown(trunk: dict[str, Any]) -> dict[str, Any]:
    return {**trunk, "registration": {"state": "unknown", "detail": UNREACHABLE}}


def _from_store(config: Config, args: argparse.Namespace, data: dict[str, object],
                why: str) -> object:
    from dialplan.trunks import parse_trunk
    from switchboard.admin import open_store

    with open_store(config) as store:
        if args.action == "list":
            sys.stderr.write(f"switchboard: {UNREACHABLE}: {why}; the trunks of the store\n")
            return [_unknown(t.as_json()) for t in store.trunks()]
        if args.action == "add":
            trunk = store.add_trunk(parse_trunk(data, config.dialplan.default_country))
            sys.stderr.write(f"switchboard: the server did not answer ({why}): saved in "
                             "the store; it registers at the server's next start\n")
            return _unknown(trunk.as_json())
        store.delete_trunk(args.name)
        sys.stderr.write(f"switchboard: the server did not answer ({why}): removed from "
                         "the store only\n")
        return None


def _through_server(config: Config, args: argparse.Namespace,
                    data: dict[str, object]) -> object:
    if args.action == "list":
        return call(config, "GET", "/api/trunks")
    if args.action == "add":
        return call(config, "POST", "/api/trunks", data)
    name = urllib.parse.quote(args.name, safe="")
    return call(config, "DELETE", f"/api/trunks/{name}")


def run_trunks(config: Config, args: argparse.Namespace) -> int:
    """Carry out `trunks ACTION`; prints the JSON answer; 0 when it was done."""
    try:
        data: dict[str, object] = {}
        if args.action == "add":
            from switchboard.admin import trunk_data

            data = trunk_data(args)  # --password-file read once, whichever way it goes
        try:
            result = _through_server(config, args, data)
        except Unreachable as exc:
            result = _from_store(config, args, data, str(exc))
    except ServerError as exc:
        sys.stderr.write(f"switchboard: the server refused: {exc}\n")
        return 1
    except DialplanError as exc:
        sys.stderr.write(f"switchboard: {exc}\n")
        return 1
    if result is not None:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0
