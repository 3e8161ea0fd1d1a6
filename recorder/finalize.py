"""After a recording stops: metadata.json, the operator's finalize command, the signed webhook.

metadata.json (written when the recording starts, again on every join, leave, mute and
track change with "end" null, and when it stops; docs/recording.md gives every field):

    {"id", "room", "state", "reason", "start", "end" (ISO 8601, UTC), "duration" (s),
     "participants": [{"id", "kind", "name", "joined", "left" (ISO 8601 or null),
                       "muted": [{"from", "to" (ISO 8601 or null)}]}],
     "tracks": [{"track" (Matroska track number), "participant" (id or null), "name",
                 "start" (s on the recording's clock), "packets", "filled" (frames)}],
     "files": [{"name", "kind", "bytes"}]}

The finalize command (`recording.finalize_command`) runs with the recording's folder as its
last argument, without a shell, at most `FINALIZE_TIMEOUT` seconds. The webhook
(`recording.webhook_url`) is a POST of a JSON body {"event": "recording.done", "id", "room",
"state", "files", "metadata"}; with `recording.webhook_secret` set, the header
`X-Switchboard-Signature: sha256=<hex>` carries HMAC-SHA256 of the exact body bytes with the
secret. The receiver checks it in constant time before trusting the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchboard-Signature"
FINALIZE_TIMEOUT = 600.0
WEBHOOK_TIMEOUT = 10.0


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    return hmac.compare_digest(sign(body, secret), header)


def write_json_atomic(path: Path, data: Any, *, sync: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: a
    reader (or a crash, or kill -9) sees the old file or the new one, never half of one.
    ``sync=False`` skips the fsync (the running recording's updates: a killed process
    loses nothing the kernel holds; only a power cut could)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


async def run_finalize_command(command: str, folder: Path, recording_id: str) -> bool:
    """Run the operator's command on the folder; True when it exited 0."""
    argv = [*shlex.split(command), str(folder)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        log.error("recording %s: finalize command could not start: %s", recording_id, exc)
        return False
    try:
        _, err = await asyncio.wait_for(proc.communicate(), FINALIZE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("recording %s: finalize command still ran after %.0f s: killed",
                  recording_id, FINALIZE_TIMEOUT)
        return False
    if proc.returncode != 0:
        log.error("recording %s: finalize command exited %s: %s", recording_id,
                  proc.returncode, err.decode(errors="replace")[-500:].strip())
        return False
    log.info("recording %s: finalize command done", recording_id)
    return True


def webhook_body(metadata: dict[str, Any]) -> bytes:
    return json.dumps({
        "event": "recording.done", "id": metadata["id"], "room": metadata["room"],
        "state": metadata["state"], "files": metadata["files"], "metadata": metadata,
    }, separators=(",", ":")).encode()


async def post_webhook(url: str, secret: str, metadata: dict[str, Any]) -> bool:
    """POST the signed notice; True on a 2xx answer."""
    import aiohttp

    body = webhook_body(metadata)
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)) as session, \
                session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            ok = 200 <= resp.status < 300
            (log.info if ok else log.error)("recording %s: webhook answered %d",
                                            metadata["id"], resp.status)
            return ok
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.error("recording %s: webhook failed: %s", metadata["id"], exc)
        return False
