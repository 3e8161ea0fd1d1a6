"""Recordings a crash or kill -9 cut short, closed at the next start of the server.

A running recording keeps its metadata.json up to date with "state": "recording" and "end":
null, and holds its folder's lock file locked (flock; recorder/session.py). At start-up
`unfinished(root, skip)` lists the folders whose metadata.json still says so, and those with
media files and no metadata.json at all (cut before their first metadata, or by an older
version). `close_unfinished(folder)` takes the folder's lock first: a process that still
records there (another node sharing `recording.path`) holds it and the folder is left alone;
the kernel let go of a killed process's lock. It then completes metadata.json (temp file +
rename):

- "end": the last modification of the recording's files (they were written up to then);
- "duration": end - start, in seconds;
- everyone still there, and every mute still on, ends at "end";
- "state": "finalizing", "reason": "interrupted", "files": as on disk.

The media files are left as they are: written page, cluster and fragment at a time, they play
up to their last whole one. The service (recorder/service.py) then runs the finalize command
and the signed webhook ("state": "done") as for a recording that stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recorder.finalize import iso, write_json_atomic
from recorder.session import FILE_KINDS, LOCK_FILE, METADATA_FILE, list_files

log = logging.getLogger(__name__)

# <UTC start>-<room>-<8 hex digits>, as Recordings.start names them
FOLDER = re.compile(r"(\d{8}T\d{6}Z)-(.+)-[0-9a-f]{8}")
REASON = "interrupted"


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """metadata.json's content; None when there is none (or it does not parse)."""
    try:
        data = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _media(folder: Path) -> list[Path]:
    return [folder / name for name in FILE_KINDS if name != METADATA_FILE
            and (folder / name).is_file()]


def is_unfinished(folder: Path, meta: dict[str, Any] | None) -> bool:
    if meta is None:
        return bool(_media(folder))
    return meta.get("state") == "recording" and meta.get("end") is None


def unfinished(root: Path, skip: set[str]) -> list[Path]:
    """The folders under ``root`` that look cut short (``skip``: this process's own)."""
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        if folder.name in skip or not folder.is_dir() or not FOLDER.fullmatch(folder.name):
            continue
        if is_unfinished(folder, read_metadata(folder)):
            out.append(folder)
    return out


def _stub(folder: Path) -> dict[str, Any]:
    """The metadata of a folder that has none: what its name says."""
    match = FOLDER.fullmatch(folder.name)
    assert match is not None
    start = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=UTC).timestamp()
    return {"id": folder.name, "room": match.group(2), "state": "recording", "reason": "",
            "start": iso(start), "end": None, "duration": 0.0, "participants": [],
            "tracks": [], "mode": "file", "files": []}


def _seconds(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def close_unfinished(folder: Path) -> dict[str, Any] | None:
    """Complete a cut-short recording's metadata.json; its content, or None when it is not
    ours to close (another process holds its lock, or it was closed meanwhile)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.error("recording %s: cannot open its lock file: %s", folder.name, exc)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("recording %s: still recorded by another process", folder.name)
            return None
        meta = read_metadata(folder)
        if not is_unfinished(folder, meta):  # another process closed it meanwhile
            return None
        meta = meta if meta is not None else _stub(folder)
        files = [p for p in folder.iterdir() if p.is_file() and p.name != LOCK_FILE]
        end = max((p.stat().st_mtime for p in files), default=folder.stat().st_mtime)
        start = _seconds(meta.get("start"))
        meta["end"] = iso(end)
        if start is not None:
            meta["duration"] = round(max(0.0, end - start), 3)
        for p in meta.get("participants", []):
            if isinstance(p, dict):
                if p.get("left") is None:
                    p["left"] = meta["end"]
                for mute in p.get("muted", []):
                    if isinstance(mute, dict) and mute.get("to") is None:
                        mute["to"] = meta["end"]
        meta["state"] = "finalizing"
        meta["reason"] = REASON
        meta["files"] = list_files(folder)
        write_json_atomic(folder / METADATA_FILE, meta)
        meta["files"] = list_files(folder)  # metadata.json, when it was not there before
        log.info("recording %s: cut short by a crash, closed (end %s, %s s)", folder.name,
                 meta["end"], meta.get("duration"))
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK_FILE)
        return meta
    finally:
        os.close(fd)
