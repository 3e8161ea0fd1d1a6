"""Recording from the meeting page (focus/meeting_recording.py): moderators start and stop
it, guests may not, everyone hears about it, late joiners too; and a recorded room counts
one more audio receiver for the gateway."""

from __future__ import annotations

from typing import Any

import pytest
from focus_fakes import FakeBridge, FakeConnection, FakeRooms

from focus import Focus
from focus import protocol as p
from focus.meeting import Meetings
from focus.session import MeetingSettings


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FakeRecorder:
    """recorder.service.Recordings as the meetings see it, telling back like it does."""

    def __init__(self, focus: Focus, meetings: Meetings) -> None:
        self.focus, self.meetings = focus, meetings
        self.calls: list[tuple[str, str, str]] = []
        self.options: list[dict[str, Any]] = []
        self.refuse: str | None = None

    async def start(self, room: str, by: str, **options: Any) -> Any:
        self.calls.append(("start", room, by))
        self.options.append(options)
        if self.refuse:
            raise Refused(self.refuse)
        self.focus.set_recorded(room, True)
        self.meetings.recording_changed(room, True)

    def stop(self, room: str, reason: str) -> Any:
        self.calls.append(("stop", room, reason))
        self.focus.set_recorded(room, False)
        self.meetings.recording_changed(room, False)


async def world() -> tuple[Focus, Meetings, FakeRecorder]:
    focus = Focus()
    meetings = Meetings(focus, FakeBridge(), FakeRooms(), MeetingSettings(renegotiate_delay=0.01))
    recorder = FakeRecorder(focus, meetings)
    meetings.recording_control = recorder
    return focus, meetings, recorder


async def join(meetings: Meetings, name: str) -> tuple[str, FakeConnection]:
    conn = FakeConnection()
    pid = await meetings.join(conn, p.Join(room="standup", name=name, audio=True, video=False))
    return pid, conn


async def send(meetings: Meetings, pid: str, message: dict[str, Any]) -> None:
    await meetings.handle(pid, p.parse_message(p.encode(message)))


async def test_moderator_starts_everyone_is_told_guest_may_not_stop() -> None:
    focus, meetings, recorder = await world()
    ada, ada_conn = await join(meetings, "Ada")  # the first browser of an open room
    bob, bob_conn = await join(meetings, "Bob")
    assert focus.audio_receivers("standup", "gateway") == 2
    with pytest.raises(p.ProtocolError) as info:
        await send(meetings, bob, {"type": "recording", "action": "start"})
    assert info.value.code == "forbidden" and recorder.calls == []
    await send(meetings, ada, {"type": "recording", "action": "start"})
    assert recorder.calls == [("start", "standup", ada)]
    assert recorder.options == [{"video": False, "stream": False, "url": None,
                                 "youtube_key": None}]
    assert ada_conn.last("recording") == bob_conn.last("recording") == {
        "type": "recording", "active": True}
    assert focus.audio_receivers("standup", "gateway") == 3  # the recording hears the room
    _, cy_conn = await join(meetings, "Cy")  # joins a recorded room: told at once
    assert [m["type"] for m in cy_conn.messages][:2] == ["joined", "recording"]
    with pytest.raises(p.ProtocolError):
        await send(meetings, bob, {"type": "recording", "action": "stop"})
    await send(meetings, ada, {"type": "recording", "action": "stop"})
    assert recorder.calls[-1] == ("stop", "standup", f"stopped by {ada}")
    assert cy_conn.last("recording")["active"] is False
    assert focus.audio_receivers("standup", "gateway") == 3  # Ada, Bob, Cy


async def test_refused_start_is_an_error_with_the_reason() -> None:
    _, meetings, recorder = await world()
    ada, conn = await join(meetings, "Ada")
    recorder.refuse = "not enough free disk space to record"
    with pytest.raises(p.ProtocolError) as info:
        await send(meetings, ada, {"type": "recording", "action": "start"})
    assert info.value.code == "recording-refused"
    assert "disk" in info.value.message and not conn.of("recording")


def test_bad_recording_messages() -> None:
    for bad in ({"type": "recording"}, {"type": "recording", "action": "pause"},
                {"type": "recording", "action": "start", "mode": "tape"},
                {"type": "recording", "action": "start", "video": "yes"},
                {"type": "recording", "action": "start", "url": 5},
                {"type": "recording", "action": "start", "youtube_key": "k" * 200},
                {"type": "recording", "action": "start", "speed": 2}):
        with pytest.raises(p.ProtocolError) as info:
            p.parse_message(p.encode(bad))
        assert info.value.code == "bad-message"
    msg = p.parse_message('{"type": "recording", "action": "stop", "room": "StandUp"}')
    assert msg == p.RecordingAction(action="stop", room="standup")
    msg = p.parse_message('{"type": "recording", "action": "start", "video": true}')
    assert msg == p.RecordingAction(action="start", video=True)
    msg = p.parse_message('{"type": "recording", "action": "start", "mode": "stream", '
                          '"youtube_key": "ab-12"}')
    assert msg == p.RecordingAction(action="start", stream=True, youtube_key="ab-12")
