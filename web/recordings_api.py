"""The recordings API (docs/recording.md; issue 18's interface, kept exactly):

- POST /api/rooms/{name}/recordings {"mode": "file"} starts recording the room: 201
  {"id": "..."}. Admin token, or a token that makes its holder a moderator of that room.
  With "video": true, video.mp4 too (H.264 and AAC). {"mode": "stream", "url":
  "rtmp://..."} or {"mode": "stream", "youtube_key": "..."} streams the room live instead:
  400 for a malformed target, 403 for a host `recording.rtmp_allow` does not allow.
  404: no such room; 409: nobody in the room, or it is already being recorded
  (the body says which, and names the running recording's id); 507: too little free disk;
  503: the bridge gave no endpoint.
- DELETE /api/rooms/{name}/recordings/{id} stops it: 200 {"id", "state"} (admin or the
  room's moderator); 404 when that recording of that room is not running.
- GET /api/rooms/{name}/recordings: the room's recordings (admin or the room's moderator).
- GET /api/recordings (admin): every recording on disk, newest last.
- GET /api/recordings/{id} (admin): {"id", "room", "state": "recording" | "finalizing" |
  "done" | "failed", "start", "end", "files": [{"name", "kind": "mix" | "tracks" |
  "video" | "metadata", "bytes"}]}.
- GET /api/rooms/{name}/recordings/{id}/files/{file} (admin or the room's moderator): the
  same for a recording of that room only (how the page gives a room's hosts their files).
- GET /api/recordings/{id}/files/{name} (admin): one listed file, as it is on disk (a file
  still being written is served as far as it goes). Nothing but a listed file's name is
  accepted: no path reaches the file system from the request.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from web.api import BadRequest, _field, _read_object
from web.app import CONTEXT, json_error

__all__ = ["RECORDINGS", "RecordingControl", "add_recording_routes"]

log = logging.getLogger(__name__)

REFUSED_STATUS = {"empty": 409, "busy": 409, "disk": 507, "unavailable": 503, "invalid": 400,
                  "forbidden": 403}
CONTENT_TYPES = {".opus": "audio/ogg", ".mkv": "audio/x-matroska", ".json": "application/json",
                 ".mp4": "video/mp4", ".m4a": "audio/mp4"}


class RecordingControl(Protocol):
    """What the API needs of the recorder (recorder.service.Recordings)."""

    async def start(self, room: str, by: str, *, video: bool = False, stream: bool = False,
                    url: str | None = None, youtube_key: str | None = None) -> Any: ...

    def stop(self, room: str, reason: str) -> Any: ...

    def recording_of(self, room: str) -> Any: ...

    def describe(self, rid: str) -> dict[str, Any] | None: ...

    def listing(self, room: str | None = None) -> list[dict[str, Any]]: ...

    def file_path(self, rid: str, name: str) -> Path | None: ...


RECORDINGS = web.AppKey("switchboard_recordings", RecordingControl)


def _control(request: web.Request) -> RecordingControl | None:
    return request.app.get(RECORDINGS)


async def start_recording(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    control = _control(request)
    room = context.store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    try:
        data = await _read_object(request, ("mode", "video", "url", "youtube_key"))
        mode = _field(data, "mode", str, required=True)
        video = _field(data, "video", bool)
        url = _field(data, "url", str)
        youtube_key = _field(data, "youtube_key", str)
    except BadRequest as exc:
        return json_error(400, str(exc))
    if mode not in ("file", "stream"):
        return json_error(400, 'mode: expected "file" or "stream"')
    if mode == "file" and (url is not None or youtube_key is not None):
        return json_error(400, '"url" and "youtube_key" go with "mode": "stream"')
    if control is None:
        return json_error(503, "recording is not available on this server")
    try:
        recording = await control.start(room.name, "api", video=bool(video),
                                        stream=mode == "stream", url=url,
                                        youtube_key=youtube_key)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code not in REFUSED_STATUS:
            raise
        body: dict[str, object] = {"error": getattr(exc, "message", str(exc)), "code": code}
        running = control.recording_of(room.name)
        if code == "busy" and running is not None:
            body["id"] = running.id
        return web.json_response(body, status=REFUSED_STATUS[code])
    return web.json_response({"id": recording.id}, status=201)


async def stop_recording(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    control = _control(request)
    room = context.store.room(request.match_info["name"])
    rid = request.match_info["id"]
    running = control.recording_of(room.name) if control is not None and room else None
    if room is None or running is None or running.id != rid:
        return json_error(404, f"no recording {rid!r} is running in this room")
    assert control is not None
    recording = control.stop(room.name, "stopped over the API")
    return web.json_response({"id": rid, "state": recording.state})


async def room_recordings(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    room = context.store.room(request.match_info["name"])
    if room is None:
        return json_error(404, f"room {request.match_info['name']!r} not found")
    control = _control(request)
    return web.json_response(control.listing(room.name) if control is not None else [])


async def list_recordings(request: web.Request) -> web.Response:
    control = _control(request)
    return web.json_response(control.listing() if control is not None else [])


async def get_recording(request: web.Request) -> web.Response:
    control = _control(request)
    rid = request.match_info["id"]
    item = control.describe(rid) if control is not None else None
    if item is None:
        return json_error(404, f"no recording {rid!r}")
    return web.json_response(item)


async def get_file(request: web.Request) -> web.StreamResponse:
    control = _control(request)
    rid, name = request.match_info["id"], request.match_info["file"]
    room = request.match_info.get("name")
    if room is not None:  # a room's own path: its moderators may fetch its recordings only
        item = control.describe(rid) if control is not None else None
        if item is None or item.get("room") != room.lower():
            return json_error(404, f"no recording {rid!r} in this room")
    path = control.file_path(rid, name) if control is not None else None
    if path is None:
        return json_error(404, f"no file {name!r} in recording {rid!r}")
    headers = {"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
               "Content-Disposition": f'attachment; filename="{rid}-{name}"'}
    return web.FileResponse(path, headers=headers)


def add_recording_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{name}/recordings", start_recording)
    app.router.add_get("/api/rooms/{name}/recordings", room_recordings)
    app.router.add_delete("/api/rooms/{name}/recordings/{id}", stop_recording)
    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{id}", get_recording)
    app.router.add_get("/api/recordings/{id}/files/{file}", get_file)
    app.router.add_get("/api/rooms/{name}/recordings/{id}/files/{file}", get_file)
