"""The gateway's policy half (gateway/call_policy.py) without sockets: a real store, focus,
gate, lobby and PIN throttle; fakes for the mixer and the phone rooms. The time is a number
we pass (the IVR's `now`); the password check runs in a thread as in the gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, cast

import pytest

from dialplan.store import Store
from dialplan.throttle import PinThrottle
from focus import Focus
from focus.gate import Gate
from focus.lobby import Lobby
from focus.rooms import StoreRooms
from gateway.call import CallState, PhoneCall, PhoneLeg
from gateway.call_policy import CallPolicy
from gateway.ivr import CheckPassword, CheckPin, IvrAction, IvrState, Join, PinIvr, PlayPrompt
from gateway.mixer import ConferenceMixer
from gateway.phone_lobby import PhoneLobby
from gateway.phone_rooms import PhoneRooms
from gateway.prompts import PromptPlayer, PromptSet
from gateway.sip.peer import Peer

PIN = "48213077"
HOST_PIN = "59372014"
PASSWORD = "73910482"
PROMPTS = PromptSet.load()


class FakeMixer:
    def __init__(self) -> None:
        self.prompts: dict[str, list[str | None]] = {}
        self.overlays: dict[str, list[str | None]] = {}
        self.muted: set[str] = set()

    def __contains__(self, leg_id: object) -> bool:
        return True

    def set_prompt(self, leg_id: str, player: PromptPlayer | None) -> None:
        self.prompts.setdefault(leg_id, []).append(player.name if player else None)

    def play_to_leg(self, leg_id: str, player: PromptPlayer | None) -> None:
        self.overlays.setdefault(leg_id, []).append(player.name if player else None)

    def is_muted(self, leg_id: str) -> bool:
        return leg_id in self.muted


class FakeRooms:
    """PhoneRooms' join as the policy uses it: the focus roster, and what was asked."""

    def __init__(self, focus: Focus) -> None:
        self.focus = focus
        self.joins: list[dict[str, Any]] = []
        self.by_participant: dict[str, PhoneCall] = {}
        self.left: list[tuple[str, str, str | None]] = []

    def leave(self, call: PhoneCall, reason: str, by: str | None = None) -> None:
        assert call.participant_id is not None
        self.by_participant.pop(call.participant_id, None)
        self.focus.leave(call.participant_id, reason, by=by)
        self.left.append((call.call_id, reason, by))
        call.participant_id = None

    def join(self, call: PhoneCall, room: str, *, participant_id: str | None = None,
             host: bool = False, open_room: bool | None = None,
             greeting: str | None = None) -> bool:  # fmt: skip
        info = self.focus.join(room, "phone", call.name, participant_id=participant_id,
                               host=host, open_room=open_room)  # fmt: skip
        call.participant_id, call.room = info.id, room
        self.by_participant[info.id] = call
        call.set_state(CallState.ROOM)
        self.joins.append({"call": call.call_id, "id": info.id, "host": host,
                           "greeting": greeting})  # fmt: skip
        return True


class Policy(CallPolicy):
    def __init__(self, store: Store) -> None:
        self.focus = Focus()
        self.store = store
        self.throttle = PinThrottle(10, 600.0, 900.0)
        self.fake_mixer = FakeMixer()
        self.mixer = cast(ConferenceMixer, self.fake_mixer)
        self.prompts = PROMPTS
        self.fake_rooms = FakeRooms(self.focus)
        self.rooms = cast(PhoneRooms, self.fake_rooms)
        self.lobby = Lobby()
        self.gate = Gate(self.focus, StoreRooms(store))
        self.changed: list[str] = []
        self.policy_changed = self.changed.append
        self.recording_switch = None
        self.counters = {"pin_failures": 0, "password_failures": 0}
        self.phone_lobby = PhoneLobby(self.lobby, self.focus, self.mixer, PROMPTS,
                                      max_wait=1800.0, admitted=self._lobby_admitted)
        self.tasks: list[asyncio.Task[None]] = []
        self.now = 100.0
        self.ended: list[tuple[str, str]] = []

    def _time(self) -> float:
        return self.now

    def _flush(self) -> None:
        pass

    def _end(self, call: PhoneCall, reason: str) -> None:
        self.ended.append((call.call_id, reason))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    def _hand_off_if_elsewhere(self, call: PhoneCall, room: str, password: bool | None) -> bool:
        return False  # one process: every room is here (gateway/handoff.py)

    def _run_ivr(self, call: PhoneCall, now: float) -> None:
        """The gateway's loop, for the actions this module answers."""
        ivr = call.ivr
        assert ivr is not None
        while (action := ivr.next_action()) is not None:
            call.extra.setdefault("actions", [])
            cast(list[IvrAction], call.extra["actions"]).append(action)
            if isinstance(action, CheckPin):
                assert self.throttle.request_check(call.call_id, now) == "check"
                self._check_pin(call, ivr, action.pin, now)
            elif isinstance(action, CheckPassword):
                assert self.throttle.request_check(call.call_id, now) == "check"
                self._check_password(call, ivr, action.password)
            elif isinstance(action, Join):
                call.ivr = None
                self.throttle.finish(call.call_id)
                assert call.room is not None
                self._after_ivr(call, call.room, True if ivr.stage == "password" else None,
                                now)  # fmt: skip
                return

    # -- the test's own ---------------------------------------------------------------------

    def call(self, n: int) -> PhoneCall:
        call = PhoneCall(call_id=f"call-{n}", leg_id=f"leg{n}", caller=f"1555700{n}",
                         name=f"Caller {n}", source=Peer("udp", "127.0.0.2", 5060),
                         route_room=None)  # fmt: skip
        call.leg = cast(PhoneLeg, object())
        call.extra["lobby_name"] = f"155***0{n}"
        assert self.throttle.admit(call.call_id, call.caller, "127.0.0.2", self.now) == \
            "admitted"  # fmt: skip
        call.ivr = PinIvr(call.call_id)
        call.set_state(CallState.IVR)
        call.ivr.start(self.now)
        return call

    def key(self, call: PhoneCall, digits: str) -> None:
        for digit in digits:
            self.now += 0.3
            if call.ivr is not None:
                call.ivr.on_digit(digit, self.now)
                self._run_ivr(call, self.now)
            else:
                self._room_key(call, digit, self.now)

    def prompt_ends(self, call: PhoneCall) -> None:
        self.now += 2.0
        assert call.ivr is not None
        call.ivr.on_prompt_finished(self.now)
        self._run_ivr(call, self.now)

    async def settle(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as s:
        yield s


def lobby_on(store: Store) -> bool:
    room = store.room("standup")
    assert room is not None
    return room.lobby


def test_host_pin_at_the_pin_prompt_joins_as_host_and_lets_in_early_callers(
        store: Store) -> None:  # fmt: skip
    store.create_room("standup", PIN, host_pin=HOST_PIN, start="hosts")
    policy = Policy(store)
    early = policy.call(1)
    policy.key(early, PIN + "#")
    assert early.ivr is None and early.state is CallState.JOINING  # no "joining": it waits
    (entry,) = policy.lobby.waiting("standup")
    assert (entry.kind, entry.name, entry.reason) == ("phone", "155***01", "host")
    host = policy.call(2)
    policy.key(host, HOST_PIN + "#")
    assert cast(list[IvrAction], host.extra["actions"])[-1] == PlayPrompt("joining")
    policy.prompt_ends(host)
    joins = policy.fake_rooms.joins
    assert [(j["call"], j["host"], j["greeting"]) for j in joins] == [
        ("call-2", True, "host_joined"), ("call-1", False, "admitted")]
    assert joins[1]["id"] == entry.id  # the id it waited under
    assert policy.focus.get(host.participant_id or "").moderator
    assert policy.lobby.waiting("standup") == []


def test_a_wrong_host_pin_counts_like_a_wrong_pin(store: Store) -> None:
    store.create_room("standup", PIN, host_pin=HOST_PIN)
    policy = Policy(store)
    call = policy.call(1)
    policy.key(call, "59372015#")
    assert policy.counters["pin_failures"] == 1
    assert call.ivr is not None and call.ivr.failures == 1


async def test_password_wrong_then_right_skips_the_lobby(store: Store) -> None:
    store.create_room("standup", PIN, lobby=True, password=PASSWORD)
    policy = Policy(store)
    call = policy.call(1)
    policy.key(call, PIN + "#")
    assert call.ivr is not None and call.ivr.stage == "password"
    policy.key(call, "11112222#")
    await policy.settle()
    assert policy.counters["password_failures"] == 1
    assert call.ivr is not None and call.ivr.prompt == "invalid_password"
    assert policy.throttle.in_entry(address="127.0.0.2") == 1
    policy.key(call, PASSWORD + "#")
    await policy.settle()
    assert call.ivr is not None and call.ivr.state is IvrState.JOINING
    policy.prompt_ends(call)
    assert [j["call"] for j in policy.fake_rooms.joins] == ["call-1"]
    assert policy.lobby.waiting("standup") == []


def test_a_password_with_letters_is_not_asked_for_the_caller_knocks(
        store: Store) -> None:  # fmt: skip
    store.create_room("standup", PIN, password="open sesame")
    policy = Policy(store)
    call = policy.call(1)
    policy.key(call, PIN + "#")
    assert call.ivr is None
    (entry,) = policy.lobby.waiting("standup")
    assert entry.reason == "moderator"
    assert policy.fake_mixer.prompts["leg1"][-1] == "password_not_typable"


def test_guests_not_allowed_hear_so_and_the_call_ends(store: Store) -> None:
    store.create_room("standup", PIN, guests=False)
    policy = Policy(store)
    call = policy.call(1)
    policy.key(call, PIN + "#")
    assert call.state is CallState.ENDING
    assert policy.fake_mixer.prompts["leg1"][-1] == "not_allowed"


async def test_host_keys_admit_everyone_and_lock(store: Store) -> None:
    store.create_room("standup", PIN, host_pin=HOST_PIN, lobby=True)
    policy = Policy(store)
    host = policy.call(1)
    policy.key(host, HOST_PIN + "#")
    policy.prompt_ends(host)
    guests = [policy.call(n) for n in (2, 3)]
    for guest in guests:
        policy.key(guest, PIN + "#")
    assert len(policy.lobby.waiting("standup")) == 2
    policy.key(host, "*1")
    assert policy.lobby.waiting("standup") == []
    assert len(policy.focus.participants("standup")) == 3
    assert policy.fake_mixer.overlays["leg1"][-1] == "admitted_all"
    policy.key(host, "*2")  # unlock: the lobby off
    await policy.settle()
    assert lobby_on(store) is False
    assert policy.changed == ["standup"]
    assert policy.fake_mixer.overlays["leg1"][-1] == "room_unlocked"
    policy.key(host, "*2")
    await policy.settle()
    assert lobby_on(store) is True
    assert policy.fake_mixer.overlays["leg1"][-1] == "room_locked"


async def test_a_moderator_sends_a_caller_back_to_the_lobby_and_lets_it_in_again(
        store: Store) -> None:
    store.create_room("standup", PIN, host_pin=HOST_PIN, lobby=False)
    policy = Policy(store)
    host, guest = policy.call(1), policy.call(2)
    policy.key(host, HOST_PIN + "#")
    policy.prompt_ends(host)
    policy.key(guest, PIN + "#")
    policy.prompt_ends(guest)
    pid, host_pid = guest.participant_id, host.participant_id
    assert pid is not None and host_pid is not None
    assert not policy.send_back_to_lobby("p-nobody", host_pid)
    assert policy.send_back_to_lobby(pid, host_pid)
    assert policy.fake_rooms.left == [("call-2", "lobby", host_pid)]
    assert [p.id for p in policy.focus.participants("standup")] == [host_pid]
    (waiting,) = policy.lobby.waiting("standup")
    assert waiting.kind == "phone" and guest.state is CallState.JOINING
    assert policy.fake_mixer.prompts["leg2"][-1] == "moved_to_lobby"
    assert not policy.send_back_to_lobby(pid, host_pid)  # not in the room any more
    policy.lobby.admit("standup", waiting.id, host_pid)
    assert guest.state is CallState.ROOM and guest.participant_id == waiting.id
    assert policy.fake_rooms.joins[-1]["greeting"] == "admitted"


class FakeRecorder:
    """recorder.service.Recordings as the gateway sees it (the focus is told as it does)."""

    def __init__(self, focus: Focus) -> None:
        self.focus = focus
        self.calls: list[tuple[str, str, str]] = []
        self.refuse = False

    async def start(self, room: str, by: str) -> None:
        self.calls.append(("start", room, by))
        if self.refuse:
            raise RuntimeError("disk")
        self.focus.set_recorded(room, True)

    def stop(self, room: str, reason: str) -> None:
        self.calls.append(("stop", room, reason))
        self.focus.set_recorded(room, False)


async def test_a_host_starts_and_stops_recording_with_star_3(store: Store) -> None:
    store.create_room("standup", PIN, host_pin=HOST_PIN, lobby=False)
    policy = Policy(store)
    recorder = FakeRecorder(policy.focus)
    policy.recording_switch = recorder
    host, guest = policy.call(1), policy.call(2)
    policy.key(host, HOST_PIN + "#")
    policy.prompt_ends(host)
    policy.key(guest, PIN + "#")
    policy.prompt_ends(guest)
    policy.key(guest, "*3")  # a guest may not
    await policy.settle()
    assert recorder.calls == []
    policy.key(host, "*3")
    await policy.settle()
    pid = host.participant_id
    assert recorder.calls == [("start", "standup", pid)] and policy.focus.recorded("standup")
    policy.key(host, "*3")
    await policy.settle()
    assert recorder.calls[-1] == ("stop", "standup", f"stopped by {pid}")
    recorder.refuse = True  # a refused start is said to the host alone
    policy.key(host, "*3")
    await policy.settle()
    assert policy.fake_mixer.overlays["leg1"][-1] == "recording_failed"
    assert policy.fake_mixer.overlays.get("leg2", [None])[-1] != "recording_failed"


async def test_a_guest_cannot_use_the_host_keys_but_mutes(store: Store) -> None:
    store.create_room("standup", PIN, lobby=False)
    policy = Policy(store)
    guest = policy.call(1)
    policy.key(guest, PIN + "#")
    policy.prompt_ends(guest)
    policy.key(guest, "*2")
    await policy.settle()
    assert lobby_on(store) is False
    policy.key(guest, "*6")
    assert policy.focus.get(guest.participant_id or "").muted


def test_nothing_secret_is_logged(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store.create_room("standup", PIN, host_pin=HOST_PIN, lobby=True)
    policy = Policy(store)
    guest, host = policy.call(1), policy.call(2)
    policy.key(guest, PIN + "#")
    policy.key(host, HOST_PIN + "#")
    policy.prompt_ends(host)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "host PIN for room standup" in text
    assert PIN not in text and HOST_PIN not in text

