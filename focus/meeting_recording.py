"""Recording on the meeting page: moderators start and stop it, everyone is told.

Part of `Meetings` (focus/meeting.py), as the lobby's actions are (focus/meeting_lobby.py):

- a moderator's `{"type": "recording", "action": "start" | "stop"}` (a start may add
  `"video": true`, or `"mode": "stream"` with `"url"` or `"youtube_key"`) goes to the recorder the
  composition root set as `recording_control` (recorder/service.py's `Recordings`,
  structurally); anyone else gets `forbidden`, a refusal (room busy, disk low, bridge) gets
  `recording-refused` with the reason;
- `recording_changed(room, active)` (the recorder's `on_change`, whoever started or stopped
  it: the page, the API, an auto-stop) sends `{"type": "recording", "active"}` to every
  browser of the room; a browser joining a room being recorded gets it right after `joined`.

Deciding who may record is the focus's job (the moderator role); the recorder only records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from focus import protocol as p
from focus.conference import Focus
from focus.session import BrowserSession

log = logging.getLogger(__name__)


class RecordingControl(Protocol):
    async def start(self, room: str, by: str, *, video: bool = False, stream: bool = False,
                    url: str | None = None, youtube_key: str | None = None) -> Any: ...

    def stop(self, room: str, reason: str) -> Any: ...


class RecordingActions:
    """The recording half of `Meetings` (which provides the attributes below)."""

    focus: Focus
    recording_control: RecordingControl | None

    def _send(self, session: BrowserSession, message: Mapping[str, object]) -> None:
        raise NotImplementedError

    def _room_sessions(self, room: str) -> list[BrowserSession]:
        raise NotImplementedError

    async def _recording_action(self, session: BrowserSession, msg: p.RecordingAction) -> None:
        pid = session.participant_id
        if not self.focus.get(pid).moderator:
            raise p.ProtocolError("forbidden", "only moderators start and stop recording",
                                  msg.TYPE)
        control = self.recording_control
        if control is None:
            raise p.ProtocolError("recording-refused", "recording is not available", msg.TYPE)
        if msg.action == "stop":
            control.stop(session.room, f"stopped by {pid}")
            return
        try:
            await control.start(session.room, pid, video=msg.video, stream=msg.stream,
                                url=msg.url, youtube_key=msg.youtube_key)
        except Exception as exc:
            message = getattr(exc, "message", None)
            if message is None:
                log.exception("participant %s: starting a recording failed", pid)
                message = "the recording could not start"
            raise p.ProtocolError("recording-refused", str(message), msg.TYPE) from None

    def recording_changed(self, room: str, active: bool) -> None:
        """The room's recording started or stopped: every browser of the room is told."""
        message = p.recording(active)
        for session in self._room_sessions(room):
            self._send(session, message)

    def _tell_recording(self, session: BrowserSession) -> None:
        """A browser that has just joined a room being recorded hears it at once."""
        if self.focus.recorded(session.room):
            self._send(session, p.recording(True))
