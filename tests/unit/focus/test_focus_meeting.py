"""Meetings against a fake bridge and fake connections: join, offers and answers,
renegotiation when sources change, chat, moderation, handover, kick, bridge events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from focus_fakes import FakeBridge, FakeConnection, FakeRooms, answer_for

from bridge.api import (
    DominantSpeakerChanged,
    EndpointFailed,
    EndpointStats,
    MediaSource,
)
from focus import Focus
from focus import protocol as p
from focus.meeting import Meetings
from focus.session import JoinRefused, MeetingSettings
from focus.turn import IceServers, rest_credentials

DELAY = 0.02  # renegotiation debounce in these tests


class World:
    def __init__(self, **settings: Any) -> None:
        self.focus = Focus()
        self.bridge = FakeBridge()
        self.rooms = FakeRooms()
        self.clock = 1_700_000_000.0
        self.meetings = Meetings(
            self.focus, self.bridge, self.rooms,
            MeetingSettings(renegotiate_delay=DELAY, **settings), clock=lambda: self.clock,
        )  # fmt: skip

    async def join(
        self, name: str, room: str = "standup", audio: bool = True
    ) -> tuple[str, FakeConnection]:
        conn = FakeConnection()
        pid = await self.meetings.join(conn, p.Join(room=room, name=name, audio=audio,
                                                    video=True))  # fmt: skip
        return pid, conn

    async def answer(
        self, pid: str, conn: FakeConnection, sending: dict[str, tuple[int, int | None]]
    ) -> None:
        offer = conn.last("offer")
        await self.meetings.handle(pid, p.Answer(sdp=answer_for(offer["sdp"], sending),
                                                 revision=offer["revision"]))  # fmt: skip

    async def send(self, pid: str, message: dict[str, Any]) -> None:
        await self.meetings.handle(pid, p.parse_message(p.encode(message)))


async def settle() -> None:
    await asyncio.sleep(DELAY * 4)


CAM = {"a0": (1000, None), "v0": (2000, 2001)}


# -- join, offer, answer -----------------------------------------------------------------------


async def test_join_sends_joined_then_the_first_offer() -> None:
    w = World()
    phone = w.focus.join("standup", "phone", "+1 555 ***0100")
    a, conn = await w.join("Ada")
    assert [m["type"] for m in conn.messages] == ["joined", "offer"]
    joined = conn.messages[0]
    assert joined["room"] == "standup" and joined["version"] == 1
    assert joined["self"]["id"] == a and joined["self"]["role"] == "moderator"
    assert [x["id"] for x in joined["participants"]] == [phone.id]
    assert joined["dial_in"]["pin"] == "12345678"
    assert joined["dial_in"]["numbers"][0]["formatted"] == "+1 555 0100"
    assert joined["chat"] == [] and joined["ice_servers"] == []
    offer = conn.messages[1]
    assert offer["revision"] == 1 and offer["tracks"] == {}
    assert "a=group:BUNDLE a0 v0 s0" in offer["sdp"]
    assert ("standup", a) in w.bridge.endpoints
    assert w.focus.get(a).kind == "browser"


async def test_answer_updates_the_bridge_and_renegotiates_the_others_once() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    c, cc = await w.join("C")
    await w.answer(c, cc, {})
    await w.answer(a, ca, CAM)
    await w.answer(b, cb, {"a0": (3000, None)})  # a burst: one offer each
    ((_, _ep, update),) = [u for u in w.bridge.updates if u[1] == a]
    assert update.transport is not None and update.transport.ice_ufrag == "brws"
    assert update.transport.candidates[0].port == 50000
    assert update.sources == (
        MediaSource(a, "audio", 1000, None, None, "", "track-a0"),
        MediaSource(a, "video", 2000, 2001, "camera", "", "track-v0"))  # fmt: skip
    await settle()
    assert [o["revision"] for o in cc.of("offer")] == [1, 2]
    assert cc.last("offer")["tracks"] == {
        "r1": {"participant": a, "kind": "audio", "video_type": None},
        "r2": {"participant": a, "kind": "video", "video_type": "camera"},
        "r3": {"participant": b, "kind": "audio", "video_type": None}}  # fmt: skip
    assert "a=ssrc:1002000 cname:" + a in cc.last("offer")["sdp"]  # the bridge's ssrc
    assert "a=ssrc-group:FID 1002000 1002001" in cc.last("offer")["sdp"]
    assert [o["revision"] for o in ca.of("offer")] == [1, 2]
    assert set(ca.last("offer")["tracks"]) == {"r1"}  # B's audio; never A's own
    assert [o["revision"] for o in cb.of("offer")] == [1, 2]
    assert {t["participant"] for t in cb.last("offer")["tracks"].values()} == {a}


async def test_a_new_offer_waits_for_the_pending_answer() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    await w.answer(b, cb, {"a0": (3000, None)})
    await settle()
    assert len(ca.of("offer")) == 1  # A still owes the answer to offer 1
    await w.answer(a, ca, {})
    await settle()
    assert [o["revision"] for o in ca.of("offer")] == [1, 2]
    assert ca.last("offer")["tracks"]["r1"]["participant"] == b


async def test_an_unchanged_answer_does_not_touch_the_bridge_or_others() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    await w.answer(a, ca, CAM)
    await w.answer(b, cb, {})
    await settle()
    await w.answer(b, cb, {})  # B's second offer
    count = len(w.bridge.updates)
    await w.send(a, {"type": "renegotiate"})
    await settle()
    assert ca.last("offer")["revision"] == 2
    await w.answer(a, ca, CAM)
    await settle()
    assert len(w.bridge.updates) == count and cb.last("offer")["revision"] == 2


async def test_stale_and_future_answers() -> None:
    w = World()
    a, ca = await w.join("A")
    await w.send(a, {"type": "renegotiate"})
    await settle()
    assert ca.last("offer")["revision"] == 2
    old = answer_for(ca.of("offer")[0]["sdp"], CAM)
    await w.meetings.handle(a, p.Answer(sdp=old, revision=1))  # ignored
    assert w.bridge.updates == []
    with pytest.raises(p.ProtocolError) as info:
        await w.meetings.handle(a, p.Answer(sdp=old, revision=9))
    assert info.value.code == "bad-message"
    with pytest.raises(p.ProtocolError) as info:
        await w.meetings.handle(a, p.Answer(sdp="v=0\r\nnonsense", revision=2))
    assert info.value.code == "bad-sdp"
    await w.answer(a, ca, CAM)
    assert len(w.bridge.updates) == 1


async def test_answer_must_match_the_offer_m_lines() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    await w.answer(a, ca, CAM)
    await settle()
    first = cb.of("offer")[0]
    await w.answer(b, cb, {})
    await settle()
    with pytest.raises(p.ProtocolError) as info:
        await w.meetings.handle(b, p.Answer(sdp=answer_for(first["sdp"], {}), revision=2))
    assert info.value.code == "bad-sdp"


# -- leaving -----------------------------------------------------------------------------------


async def test_leave_tells_the_others_and_turns_their_m_lines_inactive() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    await w.answer(a, ca, CAM)
    await w.answer(b, cb, {})
    await settle()
    await w.answer(b, cb, {})
    await w.send(a, {"type": "leave"})
    assert ca.closed == (1000, "left")
    assert cb.last("participant-left") == {"type": "participant-left", "id": a, "reason": "left"}
    await settle()
    assert ("standup", a) in w.bridge.expired
    offer = cb.last("offer")
    assert offer["revision"] == 3 and offer["tracks"] == {}
    assert offer["sdp"].count("a=inactive") == 2
    # someone new reuses B's inactive m-lines one offer later
    c, cc = await w.join("C")
    await w.answer(b, cb, {})
    await w.answer(c, cc, CAM)
    await settle()
    assert set(cb.last("offer")["tracks"]) == {"r1", "r2"}
    assert w.meetings.stats() == {"meeting_rooms": 1, "browsers": 2,
                                 "turn_credentials_issued": 0}


async def test_leave_is_idempotent_and_the_last_browser_ends_the_room_state() -> None:
    w = World()
    a, _ = await w.join("A")
    w.meetings.leave(a)
    w.meetings.leave(a)
    await settle()
    assert w.bridge.expired == [("standup", a)]
    assert w.meetings.stats() == {"meeting_rooms": 0, "browsers": 0,
                                 "turn_credentials_issued": 0}
    assert w.focus.stats()["participants"] == 0
    with pytest.raises(p.ProtocolError) as info:
        await w.send(a, {"type": "ping"})
    assert info.value.code == "not-joined"


async def test_leaving_while_the_bridge_allocates() -> None:
    w = World()
    gate = asyncio.Event()
    original = w.bridge.allocate

    async def slow(conference_id: str, endpoint_id: str) -> Any:
        await gate.wait()
        return await original(conference_id, endpoint_id)

    w.bridge.allocate = slow  # type: ignore[method-assign]
    conn = FakeConnection()
    task = asyncio.create_task(w.meetings.join(conn, p.Join("standup", "A", True, False)))
    await asyncio.sleep(0.01)
    (pid,) = [x.id for x in w.focus.participants("standup")]
    w.meetings.leave(pid)
    gate.set()
    assert await task == pid
    await settle()
    assert conn.of("offer") == [] and ("standup", pid) in w.bridge.expired


# -- rooms -------------------------------------------------------------------------------------


async def test_unknown_room_is_created_or_refused() -> None:
    w = World()
    _pid, conn = await w.join("A", room="newroom")
    assert w.rooms.created == ["newroom"] and conn.last("joined")["dial_in"]["pin"] == "87654321"
    strict = World(create_rooms=False)
    with pytest.raises(JoinRefused) as info:
        await strict.join("A", room="nowhere")
    assert (info.value.code, info.value.close_code) == ("room-not-found", 4004)
    assert strict.focus.stats()["participants"] == 0


async def test_full_room_is_refused() -> None:
    w = World(max_participants=2)
    w.focus.join("standup", "phone", "caller")
    await w.join("A")
    with pytest.raises(JoinRefused) as info:
        await w.join("B")
    assert (info.value.code, info.value.close_code) == ("room-full", 4003)
    await w.join("C", room="other")  # another room is not affected


async def test_bridge_failure_refuses_the_join_cleanly() -> None:
    w = World()
    a, ca = await w.join("A")
    w.bridge.fail_allocate = True
    conn = FakeConnection()
    with pytest.raises(JoinRefused) as info:
        await w.meetings.join(conn, p.Join("standup", "B", True, False))
    assert info.value.close_code == 4010
    assert [x.id for x in w.focus.participants("standup")] == [a]
    assert ca.last("participant-left")["reason"] == "timeout"


async def test_wrong_room_and_second_join() -> None:
    w = World()
    a, _ = await w.join("A")
    for message in ({"type": "chat", "text": "hi", "room": "other"},
                    {"type": "leave", "room": "Other"}):  # fmt: skip
        with pytest.raises(p.ProtocolError) as info:
            await w.send(a, message)
        assert info.value.code == "wrong-room"
    await w.send(a, {"type": "chat", "text": "hi", "room": "StandUp"})  # same room, any case
    with pytest.raises(p.ProtocolError) as info:
        await w.send(a, {"type": "join", "version": 1, "room": "standup", "name": "x",
                         "audio": True, "video": True})  # fmt: skip
    assert info.value.code == "already-joined"
    assert w.focus.get(a)


# -- chat, hands, names, media -----------------------------------------------------------------


async def test_chat_reaches_the_room_and_no_other() -> None:
    w = World(chat_history=2)
    a, ca = await w.join("A")
    _b, cb = await w.join("B")
    _x, cx = await w.join("X", room="other")
    for text in ("one", "two", "three"):
        w.clock += 1
        await w.send(a, {"type": "chat", "text": text})
    assert [m["text"] for m in cb.of("chat")] == ["one", "two", "three"]
    assert [m["text"] for m in ca.of("chat")] == ["one", "two", "three"]  # the sender too
    assert cb.last("chat") == {"type": "chat", "from": a, "name": "A", "text": "three",
                               "ts": 1_700_000_003.0}  # fmt: skip
    assert cx.of("chat") == []
    _c, cc = await w.join("C")
    assert [m["text"] for m in cc.last("joined")["chat"]] == ["two", "three"]  # bounded


async def test_hand_name_and_media_reach_everyone_as_updates() -> None:
    w = World()
    _a, ca = await w.join("A")
    b, cb = await w.join("B")
    await w.send(b, {"type": "hand", "raised": True})
    assert cb.last("participant-updated")["participant"]["hand"] is True
    assert ca.last("participant-updated")["participant"]["hand"] is True
    await w.send(b, {"type": "set-name", "name": "Bea"})
    assert ca.last("participant-updated")["participant"]["name"] == "Bea"
    await w.send(b, {"type": "media", "audio": False, "video": False, "screen": True})
    update = ca.last("participant-updated")["participant"]
    assert (update["muted"], update["audio"], update["screen"]) == (True, False, True)
    count = len(ca.of("participant-updated"))
    await w.send(b, {"type": "hand", "raised": True})  # no change, no message
    assert len(ca.of("participant-updated")) == count


async def test_phone_participants_appear_to_browsers() -> None:
    w = World()
    _a, ca = await w.join("A")
    phone = w.focus.join("standup", "phone", "+1 555 ***0100")
    assert ca.last("participant-joined")["participant"]["kind"] == "phone"
    w.focus.set_muted(phone.id, True)  # *6
    assert ca.last("participant-updated")["participant"]["muted"] is True
    w.focus.leave(phone.id, "hangup")
    assert ca.last("participant-left") == {"type": "participant-left", "id": phone.id,
                                           "reason": "hangup"}  # fmt: skip


# -- moderation --------------------------------------------------------------------------------


async def test_moderator_mute_until_the_participant_unmutes() -> None:
    w = World()
    mod, cm = await w.join("Mod")
    guest, cg = await w.join("Guest")
    await w.send(mod, {"type": "moderate", "action": "mute", "target": guest})
    assert cg.last("muted") == {"type": "muted", "by": mod, "kind": "audio"}
    assert cm.last("participant-updated")["participant"]["muted"] is True
    await settle()
    assert w.bridge.forced(guest) == [True]
    # turning the camera off while muted does not unmute
    await w.send(guest, {"type": "media", "audio": False, "video": False, "screen": False})
    await settle()
    assert w.bridge.forced(guest) == [True]
    # only the participant can unmute: the moderator cannot
    with pytest.raises(p.ProtocolError) as info:
        await w.send(mod, {"type": "moderate", "action": "unmute", "target": guest})
    assert info.value.code == "bad-message"
    await w.send(guest, {"type": "media", "audio": True, "video": False, "screen": False})
    await settle()
    assert w.bridge.forced(guest) == [True, False]
    assert cm.last("participant-updated")["participant"]["muted"] is False


async def test_guests_cannot_moderate_and_targets_must_be_in_the_room() -> None:
    w = World()
    mod, cm = await w.join("Mod")
    guest, _cg = await w.join("Guest")
    other, co = await w.join("Other", room="other")
    for message in ({"type": "moderate", "action": "mute", "target": mod},
                    {"type": "moderate", "action": "kick", "target": mod},
                    {"type": "moderate", "action": "mute-all"}):  # fmt: skip
        with pytest.raises(p.ProtocolError) as info:
            await w.send(guest, message)
        assert info.value.code == "forbidden"
    with pytest.raises(p.ProtocolError) as info:
        await w.send(mod, {"type": "moderate", "action": "kick", "target": other})
    assert info.value.code == "unknown-participant"
    assert cm.of("muted") == [] and co.closed is None and w.focus.get(other)


async def test_mute_all_spares_the_moderator() -> None:
    w = World()
    mod, cm = await w.join("Mod")
    guests = [await w.join(f"G{i}") for i in range(3)]
    phone = w.focus.join("standup", "phone", "caller")
    await w.send(mod, {"type": "moderate", "action": "mute-all"})
    assert all(c.last("muted")["by"] == mod for _, c in guests)
    assert cm.of("muted") == []
    assert w.focus.get(phone.id).muted and not w.focus.get(mod).muted
    await settle()
    assert [w.bridge.forced(g) for g, _ in guests] == [[True]] * 3
    assert w.bridge.forced(mod) == []


async def test_kick() -> None:
    w = World()
    mod, cm = await w.join("Mod")
    guest, cg = await w.join("Guest")
    await w.send(mod, {"type": "moderate", "action": "kick", "target": guest})
    assert cg.last("kicked") == {"type": "kicked", "by": mod}
    assert cg.closed == (4001, "kicked")
    assert cm.last("participant-left") == {"type": "participant-left", "id": guest,
                                           "reason": "kicked"}  # fmt: skip
    await settle()
    assert ("standup", guest) in w.bridge.expired
    with pytest.raises(p.ProtocolError):
        await w.send(guest, {"type": "chat", "text": "still here?"})


async def test_moderator_handover_is_announced() -> None:
    w = World()
    mod, _cm = await w.join("Mod")
    b, cb = await w.join("B")
    c, cc = await w.join("C")
    w.meetings.leave(mod)
    updated = cc.last("participant-updated")["participant"]
    assert (updated["id"], updated["role"]) == (b, "moderator")
    assert cb.last("participant-updated")["participant"]["role"] == "moderator"
    await w.send(b, {"type": "moderate", "action": "mute", "target": c})
    assert cc.last("muted")["by"] == b


# -- bridge events -----------------------------------------------------------------------------


async def test_endpoint_failure_removes_the_participant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The page then shows "a firewall may be blocking the media": the server says so at
    WARNING, with the participant id (issue 15)."""
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    with caplog.at_level(logging.INFO, logger="focus.meeting"):
        w.bridge.emit(EndpointFailed("standup", a, "not connected within 15 s"))
    [record] = [r for r in caplog.records if "media failed" in r.getMessage()]
    assert record.levelno == logging.WARNING and a in record.getMessage()
    assert "firewall" in record.getMessage()
    assert ca.closed == (4010, "media failed or timed out")
    assert cb.last("participant-left") == {"type": "participant-left", "id": a,
                                           "reason": "timeout"}  # fmt: skip
    w.bridge.emit(EndpointFailed("standup", "nobody", "x"))  # unknown: ignored
    w.bridge.emit(EndpointFailed("other", b, "x"))  # wrong conference: ignored
    assert cb.closed is None


async def test_dtls_close_is_a_leave_not_a_lost_connection(monkeypatch: Any) -> None:
    """A browser that closes its peer connection (as it does when leaving) is shown as
    having left, whether its `leave` arrives in the grace period or not."""
    import focus.meeting

    monkeypatch.setattr(focus.meeting, "DTLS_CLOSE_GRACE", 0.05)
    w = World()
    a, ca = await w.join("A")
    _b, cb = await w.join("B")
    w.bridge.emit(EndpointFailed("standup", a, "DTLS closed"))
    assert ca.closed is None  # not yet: `leave` may still come
    await asyncio.sleep(0.15)
    assert ca.closed == (1000, "left")
    assert cb.last("participant-left") == {"type": "participant-left", "id": a,
                                           "reason": "left"}  # fmt: skip


async def test_dominant_speaker_and_quality() -> None:
    w = World()
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    _x, cx = await w.join("X", room="other")
    w.bridge.emit(DominantSpeakerChanged("standup", b))
    assert ca.last("dominant-speaker") == {"type": "dominant-speaker", "id": b}
    assert cb.last("dominant-speaker")["id"] == b and cx.of("dominant-speaker") == []
    w.bridge.emit(EndpointStats("standup", a, 20.0, 100_000, 50_000, 0.02))
    assert ca.last("quality") == {"type": "quality", "rtt_ms": 20.0, "receive_bitrate": 100_000,
                                  "send_bitrate": 50_000, "loss": 0.02}  # fmt: skip
    assert cb.of("quality") == []


async def test_each_browser_gets_its_own_turn_credentials() -> None:
    """TURN REST credentials per participant, expiring turn_ttl after the join (wall
    clock), after any fixed ICE servers; the secret itself never goes out."""
    w = World(ice=IceServers(turn_urls=("turns:turn.example.org:5349?transport=tcp",),
                             secret="shared-secret", ttl=3600))  # fmt: skip
    a, ca = await w.join("A")
    b, cb = await w.join("B")
    [turn_a] = ca.last("joined")["ice_servers"]
    [turn_b] = cb.last("joined")["ice_servers"]
    expiry = int(w.clock) + 3600
    assert turn_a["username"] == f"{expiry}:{a}" and turn_b["username"] == f"{expiry}:{b}"
    assert turn_a["credential"] == rest_credentials("shared-secret", a, w.clock, 3600)[1]
    assert turn_a["credential"] != turn_b["credential"]
    assert turn_a["urls"] == ["turns:turn.example.org:5349?transport=tcp"]
    assert "shared-secret" not in repr(ca.messages) + repr(cb.messages)
    assert w.meetings.stats()["turn_credentials_issued"] == 2  # /metrics counts them


async def test_ping_stats_and_close() -> None:
    w = World(ice_servers=({"urls": ["stun:127.0.0.1:3478"]},))
    a, ca = await w.join("A")
    assert ca.last("joined")["ice_servers"] == [{"urls": ["stun:127.0.0.1:3478"]}]
    await w.send(a, {"type": "ping", "id": 5})
    assert ca.last("pong") == {"type": "pong", "id": 5}
    await w.send(a, {"type": "stats", "rtt_ms": 3})
    b, cb = await w.join("B", room="other")
    await w.meetings.close()
    assert ca.closed == (1001, "server stopping") and cb.closed == (1001, "server stopping")
    assert sorted(w.bridge.expired) == [("other", b), ("standup", a)]
    assert w.bridge.listeners == [] and w.focus.stats()["participants"] == 0
    await w.meetings.close()  # twice is harmless
    with pytest.raises(JoinRefused):
        await w.join("late")
