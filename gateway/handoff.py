"""Phone calls handed between the nodes of a cluster, on the event loop.

``HandOffCalls`` is a part of ``gateway.service.Gateway`` (a mixin, as ``DialOutCalls`` is).
The header and its checks are gateway/handoff_token.py's; the cluster's answers come through
a ``ClusterSeat`` (None: one process, nothing here runs).

At the node where the phone call arrived (its leg stays here, whatever happens):

1. When the IVR is done (the room is known, from the PIN, the number or a header),
   ``_hand_off_if_elsewhere`` asks the cluster where the room lives (``place_call``: the room
   is claimed for this node when nobody hosts it, and then the call joins here as always).
2. Elsewhere: a call of our own (the "relay") goes to the owner's SIP address with the signed
   header, the caller's name in From, and an offer with the phone's own codec first (so
   nothing is resampled), plain RTP. Answered, the phone's leg and the relay's share a mixer
   room of two (``handoff:CALL-ID``): each hears the other, DTMF the phone sends in the room
   is sent on to the owner as RFC 4733 (its '*' keys act there), and everything the caller
   hears (prompts, lobby music, the room) is the owner's.
3. A room this node hosted and no longer does (a forced drain moved it, or it was taken over
   while this node was cut off from Redis: ``room_moved``) takes its callers here along the
   same way: they leave the conference here and are handed to the new owner.
4. Every second the handed calls are checked against the cluster's view: when the owner dies
   or no longer hosts the room (re-homed after a kill, moved by a drain), the relay is hung
   up and the call placed again: it joins the new owner (or this node, if this node took the
   room), the caller hearing a gap. A relay the owner hangs up while it still hosts the room
   (removed by a moderator, the room full, refused by the lobby) ends the phone call too; one
   that fails before it was answered is retried for ``RETRY_FOR`` seconds.

At the owner, an INVITE with the header (``_incoming_handoff``) is checked (signature, age,
Call-ID seen once, this node's own hand-off key) and taken as a phone caller routed to the
room by header, the host and password flags as the first node found them; a bad header is
answered 403 and logged. Such a call is never handed on again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialplan.routing import DEFAULT_DISPLAY
from gateway.call import CallState, PhoneCall
from gateway.callerid import caller_name
from gateway.handoff_token import (
    HEADER,
    ClusterSeat,
    HandOffTarget,
    OwnerSilent,
    ReplayGuard,
    sign,
    verify,
)
from gateway.phone_rooms import PhoneRooms
from gateway.rtp_session import PortAllocator, PortsExhausted, RtpSession
from gateway.settings import CODECS, GatewaySettings
from gateway.sip.events import CallAnswered, CallProgress, IncomingCall
from gateway.sip.peer import Peer
from gateway.sip.sdp import SessionDescription, build_offer
from gateway.sip.useragent import UserAgent
from native.sendbatch import SendBatch

log = logging.getLogger(__name__)

WATCH_EVERY = 1.0  # seconds between checks of the handed calls' owners
RETRY_FOR = 20.0  # seconds a call is placed again after failed hand-offs, then ended
RETRY_AFTER = 1.0
ROOM_PREFIX = "handoff:"  # the mixer room of a phone leg and its relay


@dataclass(eq=False)
class _Handed:
    phone: str  # the phone's call id
    room: str
    host: bool
    password: bool
    target: HandOffTarget | None = None
    relay: str | None = None  # the relay's call id
    answered: bool = False
    closing: bool = False  # we hang the relay up ourselves (re-homing)
    failing_since: float | None = None


def _offer_codecs(phone_codec: str | None) -> list[str]:
    """CODECS with the phone's own codec first (G.711 phones: no resampling between nodes)."""
    if phone_codec is None:
        return list(CODECS)
    first = [c for c in CODECS if c.split("/", 1)[0].upper() == phone_codec.upper()]
    return first + [c for c in CODECS if c not in first]


class HandOffCalls:
    if TYPE_CHECKING:  # the Gateway's, used here
        settings: GatewaySettings
        ua: UserAgent
        calls: dict[str, PhoneCall]
        _by_leg: dict[str, PhoneCall]
        _ports: PortAllocator
        _leg_ids: itertools.count[int]
        send_batch: SendBatch
        _loop: asyncio.AbstractEventLoop | None
        counters: dict[str, int]
        mixer: Any
        rooms: PhoneRooms

        def _end(self, call: PhoneCall, reason: str) -> None: ...
        def _reject(self, call_id: str, status: int, reason: str,
                    headers: tuple[tuple[str, str], ...] = ()) -> None: ...
        def _flush(self) -> None: ...
        def _time(self) -> float: raise NotImplementedError
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        def _configure(self, call: PhoneCall, negotiation: Any) -> bool: ...
        def _negotiate_answer(self, call_id: str, answer: bytes | None,
                              codecs: list[str]) -> Any: ...
        def _new_session(self, name: str, sip_host: str, *,
                         trusted: bool | None = None) -> RtpSession: ...
        def _on_media_timeout(self, call: PhoneCall) -> None: ...
        def _join_here(self, call: PhoneCall, room: str, password: bool | None,
                       now: float) -> None: ...
        async def _answer(self, call: PhoneCall, offer: SessionDescription | None) -> None: ...

    def _init_handoff(self, seat: ClusterSeat | None) -> None:
        self.seat = seat
        self._handoff_key: bytes | None = None
        self._replays = ReplayGuard()
        self._handed: dict[str, _Handed] = {}  # phone call id -> its hand-off
        self._relays: dict[str, str] = {}  # relay call id -> phone call id
        self._watch: asyncio.TimerHandle | None = None

    def handoff_stats(self) -> dict[str, int]:
        return {"handoff_calls": len(self._handed), "handoff_relays": len(self._relays)}

    # -- the first node ----------------------------------------------------------------------

    def _hand_off_if_elsewhere(self, call: PhoneCall, room: str, password: bool | None) -> bool:
        """The IVR is done: True when the cluster decides where the call goes (it joins here
        later if this node hosts the room); False: no cluster, or a call handed to us."""
        if self.seat is None or call.extra.get("handed_in"):
            return False
        handed = _Handed(call.call_id, room, bool(call.extra.get("host")), bool(password))
        self._handed[call.call_id] = handed
        call.extra["handoff"] = handed
        self._spawn(self._place(call, handed))
        return True

    async def _place(self, call: PhoneCall, handed: _Handed) -> None:
        assert self.seat is not None
        try:
            target = await self.seat.place_call(handed.room)
        except OwnerSilent as exc:  # dying, or about to be declared dead: again shortly
            log.info("call %s: %s: placed again shortly", call.call_id, exc)
            if not self._gone(call, handed):
                self._retry_later(call, handed)
            return
        except ConnectionError as exc:  # no Redis: this node keeps the call (split room)
            log.error("call %s: the cluster cannot say where room %s lives (%s): joined here",
                      call.call_id, handed.room, exc)
            target = None
        if self._gone(call, handed):
            return
        if target is None:
            self._join_locally(call, handed)
            return
        key = await self.seat.key()
        if self._gone(call, handed):
            return
        if key is None:
            log.error("call %s: no hand-off key (Redis unreachable): joined here", call.call_id)
            self._join_locally(call, handed)
            return
        await self._send_relay(call, handed, target, key)
        self._flush()

    def _gone(self, call: PhoneCall, handed: _Handed) -> bool:
        """The call ended, or this hand-off is no longer its own (awaited meanwhile)."""
        return call.state is CallState.ENDED or self._handed.get(call.call_id) is not handed

    def _join_locally(self, call: PhoneCall, handed: _Handed) -> None:
        self._handed.pop(call.call_id, None)
        call.extra.pop("handoff", None)
        if call.leg_id in self.mixer and self.mixer.room_of(call.leg_id) is not None:
            self.mixer.move_leg(call.leg_id, None)
        self._join_here(call, handed.room, True if handed.password else None, self._time())
        self._flush()

    async def _send_relay(self, call: PhoneCall, handed: _Handed, target: HandOffTarget,
                          key: bytes) -> None:
        assert self.seat is not None
        session = self._new_session("relay-" + call.call_id, target.host, trusted=True)
        try:
            await session.open()
        except (PortsExhausted, OSError) as exc:
            log.warning("call %s: no RTP port for the hand-off: %s", call.call_id, exc)
            session.close()
            self._retry_later(call, handed)
            return
        if self._gone(call, handed):
            session.close()
            return
        codec = call.leg.codec_name if call.leg is not None else None
        port = session.local_port
        offer = build_offer(self.settings.media_announce, port, _offer_codecs(codec),
                            session_id=str(port)).serialize()
        relay_id = secrets.token_hex(16)
        header = sign(key, self.seat.node_id, handed.room, relay_id, time.time(),
                      host=handed.host, password=handed.password)
        peer = Peer(target.transport, target.host, target.port)
        user = call.caller if call.caller.replace("+", "").isalnum() else "anonymous"
        name = call.name.replace('"', "").replace("\\", "")
        try:
            self.ua.call(peer, f"sip:handoff@{target.host}:{target.port}",
                         f'"{name}" <sip:{user}@{self.seat.node_id}.switchboard.invalid>',
                         offer, {HEADER: header}, now=self._time(), call_id=relay_id)
        except Exception:
            log.exception("call %s: the hand-off INVITE could not be sent", call.call_id)
            session.close()
            self._retry_later(call, handed)
            return
        relay = PhoneCall(call_id=relay_id, leg_id=f"leg{next(self._leg_ids)}",
                          caller=call.caller, name=call.name, source=peer, route_room=None,
                          session=session)
        relay.local_sdp = offer
        relay.extra["relay_of"] = call.call_id
        session.call_id = relay_id
        session.on_dtmf = lambda digit: None  # the owner sends no keys to the caller
        session.on_timeout = lambda: self._on_media_timeout(relay)
        self.calls[relay_id] = relay
        self._by_leg[relay.leg_id] = relay
        self._relays[relay_id] = call.call_id
        handed.target, handed.relay, handed.answered, handed.closing = target, relay_id, \
            False, False  # fmt: skip
        log.info("call %s: room %s lives on node %s: handed over as call %s", call.call_id,
                 handed.room, target.node, relay_id)
        self._arm_watch()

    def room_moved(self, room: str) -> int:
        """This node no longer hosts `room` (a forced drain moved it, or it was taken over
        while this node was cut off from Redis): its callers in it here leave the conference
        here and are handed to the room's new owner, as calls that arrived here for it are
        (a gap, no prompt). Returns how many."""
        if self.seat is None:
            return 0
        calls = [c for c in self.rooms.calls.get(room, ()) if c.state is CallState.ROOM]
        for call in calls:
            log.info("call %s: room %s moved to another node: the caller follows it",
                     call.call_id, room)
            self.rooms.leave(call, "moved")
            call.set_state(CallState.JOINING)
            self._hand_off_if_elsewhere(call, room, True)
        return len(calls)

    def _handoff_event(self, event: object, now: float) -> bool:
        """True when the event was a relay's and is handled (its end goes the usual way:
        the gateway's `_cleanup`, then `_handoff_cleanup`)."""
        if not isinstance(event, CallProgress | CallAnswered):
            return False
        phone_id = self._relays.get(event.call_id)
        if phone_id is None:
            return False
        if isinstance(event, CallAnswered):
            self._relay_answered(event, phone_id)
        return True

    def _relay_answered(self, event: CallAnswered, phone_id: str) -> None:
        relay = self.calls.get(event.call_id)
        phone = self.calls.get(phone_id)
        handed = self._handed.get(phone_id)
        if relay is None or phone is None or handed is None:
            return
        negotiation = self._negotiate_answer(relay.call_id, event.answer, list(CODECS))
        if negotiation is None:
            log.warning("call %s: the owner's answer to the hand-off is not usable", phone_id)
            self._end(relay, "no usable SDP answer")
            return
        if not self._configure(relay, negotiation):  # (ends the relay when not usable)
            return
        relay.set_state(CallState.ROOM)
        handed.answered, handed.failing_since = True, None
        mix = ROOM_PREFIX + phone_id
        self.mixer.move_leg(relay.leg_id, mix)
        if phone.leg is not None:
            self.mixer.move_leg(phone.leg_id, mix)
        phone.set_state(CallState.ROOM)
        log.info("call %s: in room %s on node %s (relay %s, %s)", phone_id, handed.room,
                 handed.target.node if handed.target else "?", relay.call_id,
                 negotiation.codec.name)

    def _handoff_digit(self, call: PhoneCall, digit: str) -> bool:
        """A digit from a handed phone: sent on to the owner (True), never logged."""
        handed = self._handed.get(call.call_id)
        if handed is None or handed.relay is None or not handed.answered:
            return handed is not None
        relay = self.calls.get(handed.relay)
        if relay is not None and relay.session is not None:
            relay.session.send_dtmf(digit)
        return True

    # -- watching the owners -----------------------------------------------------------------

    def _arm_watch(self) -> None:
        if self._watch is None and self._handed and self._loop is not None:
            self._watch = self._loop.call_later(WATCH_EVERY, self._watch_owners)

    def _watch_owners(self) -> None:
        self._watch = None
        if self.seat is None:
            return
        try:
            for handed in list(self._handed.values()):
                if handed.target is None or handed.relay is None or not handed.answered:
                    continue
                if self.seat.still_hosts(handed.room, handed.target.node) is False:
                    phone = self.calls.get(handed.phone)
                    if phone is not None:
                        self._rehome(phone, handed, "the owner is gone or moved the room")
        except Exception:
            log.exception("hand-off: checking the owners failed")
        self._flush()
        self._arm_watch()

    def _rehome(self, phone: PhoneCall, handed: _Handed, why: str) -> None:
        log.warning("call %s: room %s: node %s no longer hosts it (%s): placed again",
                    phone.call_id, handed.room,
                    handed.target.node if handed.target else "?", why)
        relay = self.calls.get(handed.relay or "")
        handed.closing = True
        if relay is not None:
            self._end(relay, "re-homing")
        handed.target, handed.relay, handed.answered, handed.closing = None, None, False, False
        self._spawn(self._place(phone, handed))

    def _retry_later(self, call: PhoneCall, handed: _Handed) -> None:
        now = self._time()
        if handed.failing_since is None:
            handed.failing_since = now
        if now - handed.failing_since > RETRY_FOR:
            log.error("call %s: room %s could not be reached for %.0f s: hanging up",
                      call.call_id, handed.room, RETRY_FOR)
            self._end(call, "the room's node is unreachable")
            return
        handed.target, handed.relay, handed.answered = None, None, False

        async def again() -> None:
            await asyncio.sleep(RETRY_AFTER)
            if not self._gone(call, handed):
                await self._place(call, handed)

        self._spawn(again())

    # -- the end -----------------------------------------------------------------------------

    def _handoff_cleanup(self, call: PhoneCall, reason: str) -> None:
        """A step of the gateway's `_cleanup`: a phone that ends takes its relay along; a
        relay that ends is placed again, or ends its phone (see the module)."""
        handed = self._handed.pop(call.call_id, None)
        if handed is not None:  # the phone ended
            relay = self.calls.get(handed.relay or "")
            handed.closing = True
            if relay is not None:
                self._end(relay, "the caller hung up")
            return
        phone_id = self._relays.pop(call.call_id, None)
        if phone_id is None:
            return
        handed = self._handed.get(phone_id)
        phone = self.calls.get(phone_id)
        if handed is None or phone is None or handed.closing or handed.relay != call.call_id:
            return
        if phone.leg_id in self.mixer and self.mixer.room_of(phone.leg_id) is not None:
            self.mixer.move_leg(phone.leg_id, None)  # alone: silence until placed again
        node = handed.target.node if handed.target else ""
        still = self.seat.still_hosts(handed.room, node) if self.seat is not None else None
        if handed.answered and still:
            log.info("call %s: node %s ended the call (%s)", phone.call_id, node, reason)
            self._end(phone, f"ended by node {node}")
        elif handed.answered:
            self._rehome(phone, handed, reason)
        elif still:  # refused by the owner at once: it does not want the call
            log.warning("call %s: node %s refused the hand-off (%s)", phone.call_id, node,
                        reason)
            self._end(phone, f"refused by node {node}")
        else:
            self._retry_later(phone, handed)

    def _handoff_stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # -- the owner ---------------------------------------------------------------------------

    def _incoming_handoff(self, event: IncomingCall, value: str) -> PhoneCall | None:
        """An INVITE with the hand-off header: the call to answer (routed to its room), or
        None when it was refused here (403, logged)."""
        call_id = event.call_id
        now = time.time()  # the header's time is the nodes' wall clock
        key = self._handoff_key
        handed = verify(key, value, call_id, now) if key is not None else None
        if handed is None or not self._replays.first_time(call_id, now):
            log.warning("call %s: refused: a hand-off header from %s that does not check out "
                        "(%s)", call_id, event.source.host,
                        "no cluster key here" if key is None else "signature, age or replay")
            if key is None and self.seat is not None:
                self._spawn(self._load_key())
            self._reject(call_id, 403, "Forbidden")
            return None
        request = event.request
        caller = request.from_addr.uri.user or "anonymous"
        call = PhoneCall(call_id=call_id, leg_id=f"leg{next(self._leg_ids)}", caller=caller,
                         name=caller_name(request.from_addr.display, caller, DEFAULT_DISPLAY),
                         source=event.source, route_room=handed.room)
        call.extra.update(handed_in=handed.node, host=handed.host,
                          password_ok=handed.password,
                          lobby_name=caller_name(None, caller, DEFAULT_DISPLAY), trunk=None)
        log.info("call %s: handed over by node %s for room %s%s", call_id, handed.node,
                 handed.room, " (host)" if handed.host else "")
        return call

    async def _load_key(self) -> None:
        if self.seat is not None:
            self._handoff_key = await self.seat.key()
