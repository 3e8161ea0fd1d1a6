"""Browsers through the gate (focus/gate.py, focus/meeting_lobby.py) against fake bridge,
rooms and connections: tokens, passwords, the lobby, hosts-only rooms, send-back, policy
changes, and who may create a room."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from focus_fakes import FakeBridge, FakeConnection, FakeRooms

from focus import Focus
from focus import protocol as p
from focus.gate import Gate
from focus.lobby import Lobby
from focus.meeting import Meetings
from focus.policy import RoomPolicy
from focus.session import JoinRefused, MeetingSettings, PolicyUpdate
from focus.tokens import TokenSettings, TokenVerifier

SECRET = "lobby-tests-secret-0123456789abcdef"
NOW = 1_800_000_000.0


def token(room: str = "standup", moderator: bool = True, **over: Any) -> str:
    claims: dict[str, Any] = {"room": room, "exp": NOW + 600, "iat": NOW,
                              "context": {"user": {"name": "Host Ada", "moderator": moderator}}}
    claims.update(over)
    return jwt.encode(claims, over.pop("secret", SECRET), algorithm="HS256")


@dataclass
class FakePolicies:
    policies: dict[str, RoomPolicy] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    def policy(self, room: str) -> RoomPolicy | None:
        return self.policies.get(room, RoomPolicy())

    def check_password(self, room: str, password: str) -> bool:
        return self.passwords.get(room) == password

    def set_policy(self, room: str, change: PolicyUpdate) -> RoomPolicy:
        old = self.policies.get(room, RoomPolicy())
        if change.password is not None:
            if change.password:
                self.passwords[room] = change.password
            else:
                self.passwords.pop(room, None)
        new = RoomPolicy(start=change.start or old.start,
                         lobby=old.lobby if change.lobby is None else change.lobby,
                         has_password=room in self.passwords,
                         guests=old.guests if change.guests is None else change.guests)
        self.policies[room] = new
        return new


class World:
    def __init__(self, policy: RoomPolicy | None = None, **settings: Any) -> None:
        self.focus = Focus()
        self.bridge = FakeBridge()
        self.rooms = FakeRooms()
        self.policies = FakePolicies({"standup": policy or RoomPolicy()})
        self.lobby = Lobby()
        tokens = TokenVerifier(TokenSettings(secret=SECRET), clock=lambda: NOW)
        self.meetings = Meetings(
            self.focus, self.bridge, self.rooms,
            MeetingSettings(renegotiate_delay=0.01, **settings),
            gate=Gate(self.focus, self.policies, tokens), lobby=self.lobby,
        )  # fmt: skip

    async def join(self, name: str, room: str = "standup", **extra: Any
                   ) -> tuple[str, FakeConnection]:  # fmt: skip
        conn = FakeConnection()
        pid = await self.meetings.join(conn, p.Join(room=room, name=name, audio=True,
                                                    video=False, **extra))  # fmt: skip
        return pid, conn

    async def refused(self, name: str, **extra: Any) -> JoinRefused:
        with pytest.raises(JoinRefused) as info:
            await self.join(name, **extra)
        return info.value

    async def send(self, pid: str, message: dict[str, Any]) -> None:
        await self.meetings.handle(pid, p.parse_message(p.encode(message)))


async def settle() -> None:
    await asyncio.sleep(0.05)


def types(conn: FakeConnection) -> list[str]:
    return [m["type"] for m in conn.messages]


async def test_a_guest_knocks_and_the_host_admits() -> None:
    w = World(RoomPolicy(lobby=True))
    guest, gconn = await w.join("Guest")
    assert types(gconn) == ["lobby"] and gconn.last("lobby")["waiting_for"] == "moderator"
    assert w.focus.participants("standup") == []  # not in the room, no endpoint
    assert w.bridge.endpoints == {}
    host, hconn = await w.join("ignored", token=token())
    info = w.focus.get(host)
    assert info.moderator and info.host and info.name == "Host Ada"  # the token's name
    assert hconn.last("lobby-list")["waiting"] == [{"id": guest, "kind": "browser",
                                                   "name": "Guest"}]  # fmt: skip
    assert w.lobby.get(guest) is not None  # a host arriving lets no stranger in
    with pytest.raises(p.ProtocolError) as refused:  # still waiting (the socket answers it)
        await w.send(guest, {"type": "chat", "text": "let me in"})
    assert refused.value.code == "in-lobby"
    await w.send(host, {"type": "lobby", "action": "admit", "target": guest})
    await settle()
    assert gconn.last("joined")["self"]["id"] == guest  # the id it waited under
    assert "offer" in types(gconn) and gconn.closed is None
    assert hconn.last("lobby-list")["waiting"] == []


async def test_a_guest_denied_is_told_and_closed() -> None:
    w = World(RoomPolicy(lobby=True))
    host, _ = await w.join("Host", token=token())
    guest, gconn = await w.join("Guest")
    await w.send(host, {"type": "lobby", "action": "deny", "target": guest})
    assert gconn.last("lobby")["state"] == "denied"
    assert gconn.last("error")["code"] == "denied" and gconn.closed == (4013, "denied")
    assert [x.id for x in w.focus.participants("standup")] == [host]


async def test_only_moderators_decide() -> None:
    w = World(RoomPolicy(lobby=True))
    member, _ = await w.join("Member", token=token(moderator=False))  # skips the lobby
    guest, _ = await w.join("Guest")
    with pytest.raises(p.ProtocolError) as info:
        await w.send(member, {"type": "lobby", "action": "admit", "target": guest})
    assert info.value.code == "forbidden" and w.lobby.get(guest) is not None
    with pytest.raises(p.ProtocolError):
        await w.send(member, {"type": "policy", "lobby": False})


async def test_the_password_skips_the_lobby_and_a_wrong_one_is_refused() -> None:
    w = World(RoomPolicy(lobby=True, has_password=True))
    w.policies.passwords["standup"] = "sesame42"
    refusal = await w.refused("Eve", password="guess")
    assert (refusal.code, refusal.close_code) == ("wrong-password", 4012)
    pid, conn = await w.join("Ada", password="sesame42")
    assert types(conn)[0] == "joined" and w.focus.get(pid).name == "Ada"
    w.policies.policies["standup"] = RoomPolicy(has_password=True)  # no lobby to knock at
    refusal = await w.refused("Bob")
    assert (refusal.code, refusal.close_code) == ("password-required", 4012)


@pytest.mark.parametrize(
    "bad",
    [token(exp=NOW - 3600), token(room="other"),
     token()[:-4] + "AAAA",  # tampered signature
     jwt.encode({"room": "standup", "exp": NOW + 60}, None, algorithm="none"),
     token(secret="another-secret-0123456789abcdefgh")],
)  # fmt: skip
async def test_bad_tokens_are_refused(bad: str) -> None:
    w = World(RoomPolicy(lobby=True))
    refusal = await w.refused("Mallory", token=bad)
    assert (refusal.code, refusal.close_code) == ("bad-token", 4011)
    assert w.focus.participants("standup") == [] and w.lobby.waiting("standup") == []


async def test_a_hosts_only_room_makes_guests_wait_until_a_host_arrives() -> None:
    w = World(RoomPolicy(start="hosts"))
    guest, gconn = await w.join("Guest")
    assert gconn.last("lobby")["waiting_for"] == "host"
    host, _ = await w.join("Host", token=token())
    await settle()
    assert gconn.last("joined")["self"]["id"] == guest
    assert {x.id for x in w.focus.participants("standup")} == {guest, host}
    assert not w.focus.get(guest).moderator  # a policy room: guests do not moderate


async def test_the_last_moderator_leaving_hands_over_to_another_host() -> None:
    w = World(RoomPolicy(lobby=True))
    first, _ = await w.join("Host 1", token=token())
    member, _ = await w.join("Member", token=token(moderator=False))
    second, sconn = await w.join("Host 2", token=token())
    w.meetings.leave(first)
    assert w.focus.get(second).moderator and not w.focus.get(member).moderator
    guest, _ = await w.join("Guest")
    assert sconn.last("lobby-list")["knock"] is True  # the page rings
    w.meetings.leave(second)
    # no host left: nobody moderates, the guest keeps waiting; a host can always get in
    assert not w.focus.get(member).moderator and w.lobby.get(guest) is not None
    back, _ = await w.join("Host 1 again", token=token())
    assert w.focus.get(back).moderator


async def test_only_moderators_are_shown_the_host_pin() -> None:
    w = World(RoomPolicy(lobby=True))
    w.rooms.host_pins["standup"] = "59372014"
    host, hconn = await w.join("Host", token=token())
    assert hconn.last("joined")["dial_in"]["host_pin"] == "59372014"
    _member, mconn = await w.join("Member", token=token(moderator=False))
    guest, gconn = await w.join("Guest")
    await w.send(host, {"type": "lobby", "action": "admit", "target": guest})
    await settle()
    for conn in (mconn, gconn):
        dial_in = conn.last("joined")["dial_in"]
        assert dial_in["pin"] == "12345678" and "host_pin" not in dial_in
        assert "59372014" not in p.encode({"all": conn.messages})


async def test_a_participant_made_moderator_is_sent_the_host_pin() -> None:
    w = World(RoomPolicy())  # an open room: the first browser moderates, then the next
    w.rooms.host_pins["standup"] = "59372014"
    first, _ = await w.join("First")
    second, sconn = await w.join("Second")
    assert "host_pin" not in sconn.last("joined")["dial_in"] and not sconn.of("dial-in")
    w.meetings.leave(first)
    assert w.focus.get(second).moderator
    assert sconn.last("dial-in")["dial_in"]["host_pin"] == "59372014"
    w.rooms.host_pins.clear()  # a room without a host PIN: nothing new to tell
    third, tconn = await w.join("Third")
    w.meetings.leave(second)
    assert w.focus.get(third).moderator and not tconn.of("dial-in")


async def test_send_back_to_the_lobby_and_admit_again() -> None:
    w = World(RoomPolicy(lobby=True))
    host, _ = await w.join("Host", token=token())
    guest, gconn = await w.join("Guest")
    await w.send(host, {"type": "lobby", "action": "admit", "target": guest})
    await settle()
    await w.send(host, {"type": "lobby", "action": "send-back", "target": guest})
    await settle()
    assert gconn.closed is None and gconn.last("lobby")["state"] == "waiting"
    assert guest not in {x.id for x in w.focus.participants("standup")}
    assert ("standup", guest) in w.bridge.expired
    with pytest.raises(p.ProtocolError):  # a host cannot be sent back
        await w.send(host, {"type": "lobby", "action": "send-back", "target": host})
    await w.send(host, {"type": "lobby", "action": "admit-all"})
    await settle()
    assert len(gconn.of("joined")) == 2 and w.focus.get(guest).name == "Guest"


async def test_the_token_avatar_reaches_the_roster_and_survives_the_lobby() -> None:
    w = World(RoomPolicy(lobby=True))
    url = "https://img.example.org/ada.png?s=64"

    def pictured(moderator: bool, avatar: str, name: str) -> str:
        user = {"name": name, "moderator": moderator, "avatar": avatar}
        return token(moderator=moderator, context={"user": user})

    host, hconn = await w.join("Host", token=pictured(True, url, "Host Ada"))
    assert hconn.last("joined")["self"]["avatar"] == url
    member, mconn = await w.join("Bob", token=pictured(False, url + "&b", "Bob"))
    assert mconn.last("joined")["self"]["avatar"] == url + "&b"
    assert [x.get("avatar") for x in mconn.last("joined")["participants"]] == [url]
    assert hconn.last("participant-joined")["participant"]["avatar"] == url + "&b"
    eve, econn = await w.join("Eve", token=pictured(False, "javascript:alert(1)", "Eve"))
    assert "avatar" not in econn.last("joined")["self"]  # not an https: URL: dropped
    guest, gconn = await w.join("Guest")
    await w.send(host, {"type": "lobby", "action": "admit", "target": guest})
    await settle()
    assert {x["id"]: x.get("avatar") for x in gconn.last("joined")["participants"]} == {
        host: url, member: url + "&b", eve: None}
    # a member sent back to the lobby and admitted again keeps the picture
    await w.send(host, {"type": "lobby", "action": "send-back", "target": member})
    await settle()
    assert member not in {x.id for x in w.focus.participants("standup")}
    await w.send(host, {"type": "lobby", "action": "admit", "target": member})
    await settle()
    assert w.focus.get(member).avatar == url + "&b"
    assert gconn.last("participant-joined")["participant"]["avatar"] == url + "&b"


async def test_a_phone_caller_is_sent_back_through_the_gateway() -> None:
    w = World(RoomPolicy(lobby=False))
    host, _ = await w.join("Host", token=token())
    caller = w.focus.join("standup", "phone", "+1 555 ***0100").id
    asked: list[tuple[str, str]] = []
    with pytest.raises(p.ProtocolError) as info:  # no gateway here: refused, said why
        await w.send(host, {"type": "lobby", "action": "send-back", "target": caller})
    assert info.value.code == "forbidden"
    w.meetings.phone_send_back = lambda pid, by: asked.append((pid, by)) is None
    await w.send(host, {"type": "lobby", "action": "send-back", "target": caller})
    assert asked == [(caller, host)]
    w.meetings.phone_send_back = lambda pid, by: False  # the gateway has no such caller
    with pytest.raises(p.ProtocolError):
        await w.send(host, {"type": "lobby", "action": "send-back", "target": caller})


async def test_leaving_the_lobby_and_the_api_deciding() -> None:
    w = World(RoomPolicy(lobby=True))
    _host, hconn = await w.join("Host", token=token())
    guest, gconn = await w.join("Guest")
    await w.send(guest, {"type": "leave"})
    assert gconn.closed is not None and w.lobby.waiting("standup") == []
    assert hconn.last("lobby-list")["waiting"] == []
    other, oconn = await w.join("Other")
    w.lobby.admit("standup", other, "api")  # what POST /api/rooms/standup/lobby/{id} does
    await settle()
    assert oconn.last("joined")["self"]["id"] == other


async def test_a_moderator_changes_the_policy() -> None:
    w = World(RoomPolicy(start="hosts", lobby=False))
    host, _hconn = await w.join("Host", token=token())
    _guest, gconn = await w.join("Guest")  # a host is in: straight in
    assert gconn.last("joined")["policy"] == {"start": "hosts", "lobby": False,
                                              "has_password": False, "guests": True}
    await w.send(host, {"type": "policy", "lobby": True, "password": "sesame42"})
    assert w.policies.policies["standup"].lobby and w.policies.passwords["standup"] == "sesame42"
    assert gconn.last("policy")["policy"]["has_password"] is True
    assert "password" not in gconn.last("policy")["policy"]
    _late, lconn = await w.join("Late")
    assert lconn.last("lobby")["waiting_for"] == "moderator"
    with pytest.raises(p.ProtocolError):
        await w.send(host, {"type": "policy", "start": "everyone"})


async def test_guests_not_allowed() -> None:
    w = World(RoomPolicy(guests=False))
    refusal = await w.refused("Guest")
    assert (refusal.code, refusal.close_code) == ("guests-not-allowed", 4014)
    pid, _ = await w.join("Member", token=token(moderator=False))
    assert not w.focus.get(pid).moderator


@pytest.mark.parametrize("who", ["hosts", "nobody"])
async def test_who_creates_rooms(who: str) -> None:
    w = World(create_rooms=who)
    refusal = await w.refused("Guest", room="newroom")
    assert (refusal.code, refusal.close_code) == ("room-not-found", 4004)
    if who == "hosts":
        pid, _ = await w.join("Host", room="newroom", token=token(room="newroom"))
        assert w.rooms.created == ["newroom"] and w.focus.get(pid).moderator
    else:
        with pytest.raises(JoinRefused):
            await w.join("Host", room="newroom", token=token(room="newroom"))
        assert w.rooms.created == []


async def test_tokens_are_refused_when_none_are_configured() -> None:
    w = World()
    w.meetings.gate.tokens = None
    refusal = await w.refused("Ada", token=token())
    assert refusal.code == "bad-token"


async def test_the_gate_takes_a_host_without_a_token() -> None:
    """What a phone caller with the host PIN will get: in at once, as a host."""
    w = World(RoomPolicy(start="hosts", lobby=True, has_password=True))
    entry = await w.meetings.gate.decide("standup", None, None, "192.0.2.1", host=True)
    assert entry.host and entry.verdict.value == "join"
    guest = await w.meetings.gate.decide("standup", None, None, "192.0.2.1")
    assert not guest.host and guest.verdict.value == "moderator"


async def test_one_address_cannot_fill_the_lobby() -> None:
    w = World(RoomPolicy(lobby=True))
    conns = []
    for n in range(5):
        conn = FakeConnection()
        await w.meetings.join(conn, p.Join(room="standup", name=f"Bot {n}", audio=False,
                                           video=False), source="198.51.100.7")  # fmt: skip
        conns.append(conn)
    with pytest.raises(JoinRefused) as info:
        await w.meetings.join(FakeConnection(), p.Join(room="standup", name="Bot 5",
                                                       audio=False, video=False),
                              source="198.51.100.7")  # fmt: skip
    assert (info.value.code, info.value.close_code) == ("too-many-waiting", 4029)
    other = FakeConnection()  # another address still knocks
    await w.meetings.join(other, p.Join(room="standup", name="Genuine", audio=False,
                                        video=False), source="192.0.2.10")  # fmt: skip
    assert other.last("lobby")["state"] == "waiting"
    first = w.lobby.waiting("standup")[0].id
    w.meetings.leave(first)  # one bot gives up: its place is free again
    await w.meetings.join(FakeConnection(), p.Join(room="standup", name="Bot 6", audio=False,
                                                   video=False), source="198.51.100.7")
    assert len(w.lobby.waiting("standup")) == 6


async def test_a_guest_who_leaves_as_it_is_admitted_leaves_nothing_behind() -> None:
    w = World(RoomPolicy(lobby=True))
    host, _ = await w.join("Host", token=token())
    guest, gconn = await w.join("Guest")
    w.lobby.admit("standup", guest, host)
    w.meetings.leave(guest)  # the socket closed before the join ran
    await settle()
    assert [x.id for x in w.focus.participants("standup")] == [host]
    assert w.meetings.session(guest) is None and ("standup", guest) not in w.bridge.endpoints
    assert "joined" not in types(gconn)
