"""Dial-out on the event loop: the gateway's side of `POST /api/rooms/{room}/dial`.

``DialOutCalls`` is a part of ``gateway.service.Gateway`` (a mixin, as ``CallMedia`` is).
The decisions are gateway/dialout.py's (`pick_trunk`, `DialOut`); here they meet the user
agent, the leg's media and the focus:

1. `dial()`: the trunk and the E.164 number (the toll-fraud guard: refused before anything
   is sent), a free seat in the room, the trunk's address (resolved for each dial-out:
   SRV or A/AAAA, gateway/trunk_dns.py), the
   leg's RTP ports; then the callee joins the roster at once as a "phone" participant in
   state "calling", and the INVITE leaves with the offer (the trunk's codecs), the caller
   ID one of the trunk's numbers and the trunk's credentials for a 401/407.
2. A 180/183 (`CallProgress`): "ringing". A 183's SDP is ignored: the leg's remote is not
   set before the answer, so early media never reaches the room (nor the leg's jitter
   buffer: strict RTP drops what comes from nowhere we expect).
3. The 200 OK (`CallAnswered`): the answer's codec and address configure the leg, and the
   callee enters the room under the participant id it had since the dial, as a dial-in
   caller does after the PIN (mixer, roster, mute, *6, removal). The DTMF string follows
   (RFC 4733 on the leg).
4. The end: the ringing timeout or a withdrawal (`hang_up`) cancels (CANCEL, or nothing
   until a provisional came: the user agent sends it then); a final non-2xx ends it with its
   outcome ("busy", "no-answer", "failed" with a reason). A callee that never answered
   stays in the roster with that state for `LINGER` seconds, so the moderator sees why.
   Every path ends in the gateway's `_cleanup`, which releases the port pair.

Records of calls stay for `GET /api/calls/{id}` (the newest `KEEP_RECORDS`). No number is
logged unmasked; no password, no DTMF digit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from dialplan.limits import Networks
from dialplan.store import Store
from dialplan.trunks import TrunkRecord
from focus import Focus, FocusEvent, ParticipantLeft
from gateway.call import CallState, PhoneCall
from gateway.call_media import call_codecs
from gateway.callerid import caller_name, mask_number
from gateway.dialout import (
    MAX_RINGING,
    MAX_RINGING_PER_ROOM,
    MIN_RINGING,
    DialOut,
    DialRefused,
    parse_dtmf,
    pick_trunk,
)
from gateway.media.sdes import SdesError
from gateway.phone_rooms import PhoneRooms
from gateway.registrar import Registrar
from gateway.rtp_session import PortAllocator, PortsExhausted, RtpSession
from gateway.settings import GatewaySettings, trunk_codecs
from gateway.sip.events import CallAnswered, CallEnded, CallProgress, OfferRetried
from gateway.sip.peer import Peer
from gateway.sip.sdp import SessionDescription, build_offer, negotiate_audio
from gateway.sip.useragent import UserAgent
from gateway.srtp_leg import add_crypto, answer_keys, encryption_for, offer_for, plain_fallback
from gateway.trunk_dns import DnsError
from gateway.trunk_registry import TrunkRegistry
from gateway.trunk_tls import TrunkTls
from native.sendbatch import SendBatch

log = logging.getLogger(__name__)


class CalleeMemory(Protocol):
    """Where answered callees with `redial` are kept for the room's next node (a cluster's
    Redis: cluster/room_state.py)."""

    def remember_callee(self, room: str, key: str, entry: dict[str, object]) -> None: ...

    def forget_callee(self, room: str, key: str) -> None: ...

    async def callees(self, room: str) -> dict[str, dict[str, object]]: ...


LINGER = 8.0  # seconds an unanswered callee stays in the roster with its outcome
KEEP_RECORDS = 500


class DialOutCalls:
    """The dial-out half of the gateway's call handling (see the module)."""

    settings: GatewaySettings
    ua: UserAgent
    focus: Focus
    store: Store
    rooms: PhoneRooms
    send_batch: SendBatch
    calls: dict[str, PhoneCall]
    _by_leg: dict[str, PhoneCall]
    _leg_ids: itertools.count[int]
    _ports: PortAllocator
    _media_trusted: Networks
    _loop: asyncio.AbstractEventLoop | None
    trunk_tls: TrunkTls
    registry: TrunkRegistry
    registrar: Registrar

    if TYPE_CHECKING:  # the gateway's own methods
        def _end(self, call: PhoneCall, reason: str) -> None: ...
        def _cleanup(self, call: PhoneCall, reason: str) -> None: ...
        def _flush(self) -> None: ...
        def _time(self) -> float: raise NotImplementedError
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        def _on_rtp_digit(self, call: PhoneCall, digit: str) -> None: ...
        def _on_media_timeout(self, call: PhoneCall) -> None: ...
        def _configure(self, call: PhoneCall, negotiation: Any) -> bool: ...
        def _new_session(self, name: str, sip_host: str, *,
                         trusted: bool | None = None) -> RtpSession: ...

    def _init_dialout(self) -> None:
        self.callee_memory: CalleeMemory | None = None  # a cluster's (composition root)
        self.dialouts: OrderedDict[str, DialOut] = OrderedDict()
        self._dial_by_call: dict[str, tuple[DialOut, str]] = {}  # call id -> (dial, pid)
        self._dial_calls: dict[str, str] = {}  # dial id -> SIP call id while live
        self._dial_timers: dict[str, asyncio.TimerHandle] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}  # pid -> its removal
        self._dial_watch: dict[str, Callable[[], None]] = {}  # dial id -> unsubscribe

    # -- the API (web/dial_api.py's DialControl) --------------------------------------------

    async def dial(self, room: str, number: str, trunk: str | None = None,
                   ringing_timeout: float | None = None, dtmf: str = "",
                   redial: bool = False) -> DialOut:
        """Call `number` into `room`; DialRefused when it may not (see the module)."""
        if self._loop is None:
            raise DialRefused(503, "the gateway is not running")
        record = self.store.room(room)
        if record is None:
            raise DialRefused(404, f"room {room!r} not found")
        room = record.name
        try:
            dtmf = parse_dtmf(dtmf)
        except ValueError as exc:
            raise DialRefused(400, str(exc)) from None
        timeout = self.settings.dialout_ringing_timeout if ringing_timeout is None \
            else float(ringing_timeout)
        if not MIN_RINGING <= timeout <= MAX_RINGING:
            raise DialRefused(400, f"ringing_timeout: expected {MIN_RINGING:.0f} to "
                                   f"{MAX_RINGING:.0f} seconds")
        chosen, e164 = pick_trunk(self.store.trunks(), number, trunk,
                                  self.settings.default_country)
        if self.rooms.full(room):
            raise DialRefused(409, f"room {room} is full")
        ringing = sum(1 for d in self.dialouts.values()
                      if d.room == room and d.state in ("dialing", "ringing"))
        if ringing >= MAX_RINGING_PER_ROOM:
            raise DialRefused(429, f"room {room} already has {ringing} calls ringing")
        try:
            cryptos = offer_for(chosen)  # SDES-SRTP by the trunk's policy, over TLS only
        except SdesError as exc:
            raise DialRefused(400, str(exc)) from None
        peer, domain, request_uri = await self._trunk_peer(chosen)
        host = peer.host
        self.trunk_tls.bind(chosen, peer)  # its TLS verification (gateway/trunk_tls.py)
        dial = DialOut(id="c" + secrets.token_hex(8), room=room, number=e164,
                       trunk=chosen.name, started=self._time(), ringing_timeout=timeout,
                       dtmf=dtmf, redial=redial and self.callee_memory is not None)
        session = self._new_session(dial.id, host)
        try:
            await session.open()
        except (PortsExhausted, OSError) as exc:
            log.warning("dial-out %s: no RTP port: %s", dial.id, exc)
            session.close()
            raise DialRefused(503, "no media port free") from None
        name = caller_name(None, e164, self.settings.dialout_display)
        pid = self.focus.new_id("phone")
        try:
            port = session.local_port
            description = build_offer(self.settings.media_announce, port,
                                      trunk_codecs(chosen), session_id=str(port))
            fallback = None
            if cryptos:
                if plain_fallback(chosen, cryptos):  # "optional": plain RTP after a 488/415
                    fallback = description.serialize()
                    dial.plain_fallback = True
                add_crypto(description, cryptos, "RTP/SAVP")
            offer = description.serialize()
            caller_id = chosen.numbers[0] if chosen.numbers else (chosen.username or "switchboard")
            credentials = (chosen.username, chosen.password) \
                if chosen.username and chosen.password else None  # fmt: skip
            self.focus.join(room, "phone", name, mixed_by=self.rooms.group,
                            participant_id=pid, state="calling")
            to_uri = f"sip:{e164}@{domain}"  # (a registered PBX: the Request-URI is its Contact)
            call_id = self.ua.call(peer, request_uri or to_uri, f"<sip:{caller_id}@{domain}>",
                                   offer, now=self._time(), credentials=credentials,
                                   fallback_sdp=fallback, to_uri=to_uri)
        except Exception:
            log.exception("dial-out %s: could not send the INVITE", dial.id)
            session.close()
            self.focus.leave(pid, "hangup")
            raise DialRefused(500, "the call could not be started") from None
        call = PhoneCall(call_id=call_id, leg_id=f"leg{next(self._leg_ids)}", caller=e164,
                         name=name, source=peer, route_room=None, session=session)
        call.local_sdp = offer
        call.extra["dialout"] = dial.id
        call.extra["trunk"] = chosen
        call.extra["srtp_offer"] = cryptos
        session.call_id = call_id
        session.on_dtmf = lambda digit: self._on_rtp_digit(call, digit)
        session.on_timeout = lambda: self._on_media_timeout(call)
        self.calls[call_id] = call
        self._by_leg[call.leg_id] = call
        self._dial_by_call[call_id] = (dial, pid)
        self._dial_calls[dial.id] = call_id
        dial.participant_id = pid
        self._remember(dial)
        log.info("dial-out %s: call %s to %s through trunk %s into room %s as %s", dial.id,
                 call_id, mask_number(e164), chosen.name, room, pid)
        self._flush()
        self._arm_dial(dial)
        self._dial_watch[dial.id] = self.focus.subscribe(
            room, lambda event: self._dial_focus_event(dial.id, pid, event))
        return dial

    async def redial(self, room: str) -> int:
        """This node has just taken `room` over from a dead node: the callees that node had
        called with `redial` (and that were still in the room) are called again from here.
        Returns how many calls were placed."""
        memory = self.callee_memory
        if memory is None:
            return 0
        try:
            entries = await memory.callees(room)
        except Exception as exc:  # Redis away: nothing to call again
            log.warning("room %s: the callees to call again could not be read (%s)", room, exc)
            return 0
        placed = 0
        for key, entry in entries.items():
            memory.forget_callee(room, key)  # the new call is remembered once answered
            number, trunk, dtmf = entry.get("number"), entry.get("trunk"), entry.get("dtmf", "")
            timeout = entry.get("ringing_timeout")
            if not isinstance(number, str) or not isinstance(trunk, str | None) or \
                    not isinstance(dtmf, str) or not isinstance(timeout, int | float | None):
                continue  # fmt: skip
            try:
                dial = await self.dial(room, number, trunk, timeout, dtmf, redial=True)
            except DialRefused as exc:
                log.warning("room %s: calling %s again refused (%d %s)", room,
                            mask_number(number), exc.status, exc.reason)
                continue
            placed += 1
            log.info("room %s: calling %s again (dial-out %s, was %s on the room's last "
                     "node)", room, mask_number(number), dial.id, key)
        return placed

    def call_status(self, dial_id: str) -> DialOut | None:
        return self.dialouts.get(dial_id)

    # web/dial_api.py's DialControl: plain values only (web imports nothing of the gateway)

    async def api_dial(self, room: str, number: str, trunk: str | None,
                       ringing_timeout: float | None, dtmf: str,
                       redial: bool = False) -> tuple[int, dict[str, object]]:
        """(202, {"id", "participant_id"}) or (HTTP status, {"error": reason})."""
        try:
            dial = await self.dial(room, number, trunk, ringing_timeout, dtmf, redial)
        except DialRefused as exc:
            masked = re.sub(r"\+?\d{5,15}", lambda m: mask_number(m.group()), exc.reason)
            log.info("dial-out to room %s refused (%d): %s", room, exc.status, masked)
            return exc.status, {"error": exc.reason}
        return 202, {"id": dial.id, "participant_id": dial.participant_id}

    def api_call(self, dial_id: str) -> dict[str, object] | None:
        dial = self.dialouts.get(dial_id)
        return dial.as_json() if dial is not None else None

    def api_hang_up(self, dial_id: str) -> bool:
        return self.hang_up(dial_id)

    def call_room(self, dial_id: str) -> str | None:
        dial = self.dialouts.get(dial_id)
        return dial.room if dial is not None else None

    def hang_up(self, dial_id: str) -> bool:
        """Cancel a call still ringing, or hang up an answered one; False: unknown id."""
        dial = self.dialouts.get(dial_id)
        if dial is None:
            return False
        call = self.calls.get(self._dial_calls.get(dial_id, ""))
        if call is None or dial.state == "ended":
            return True
        log.info("dial-out %s: hung up through the API", dial.id)
        dial.withdraw(self._time())
        self._end(call, "cancelled" if dial.state != "connected" else "hangup")
        self._flush()
        return True

    def _dial_focus_event(self, dial_id: str, pid: str, event: FocusEvent) -> None:
        """A moderator removed the callee while it still rings: the call is cancelled."""
        if not isinstance(event, ParticipantLeft) or event.participant.id != pid:
            return
        dial = self.dialouts.get(dial_id)
        if dial is not None and dial.state in ("dialing", "ringing"):
            log.info("dial-out %s: removed from the roster while ringing: cancelling", dial_id)
            self.hang_up(dial_id)

    # -- SIP events (from the gateway's _on_sip_event) --------------------------------------

    def _dialout_event(self, event: object, now: float) -> bool:
        """True when the event was a dial-out's and is handled."""
        if not isinstance(event, CallProgress | CallAnswered | CallEnded | OfferRetried):
            return False
        entry = self._dial_by_call.get(event.call_id)
        call = self.calls.get(event.call_id)
        if entry is None or call is None:
            return isinstance(event, CallProgress | CallAnswered | OfferRetried)
        dial, pid = entry
        if isinstance(event, OfferRetried):  # our SRTP offer refused: plain RTP now
            if not dial.on_offer_retried(event.status, now):
                log.warning("dial-out %s: a plain retry it did not expect", dial.id)
            call.local_sdp = event.offer  # what went: its answer is checked as plain RTP
            call.extra["srtp_offer"] = None
            return True
        if isinstance(event, CallProgress):
            if dial.on_provisional(event.status, now):
                self._set_state(pid, "ringing")
            return True
        if isinstance(event, CallEnded):
            dial.on_ended(event.status, now, event.reason)
            return False  # the gateway's own path: _cleanup
        self._answered(call, dial, pid, event, now)
        return True

    def _answered(self, call: PhoneCall, dial: DialOut, pid: str, event: CallAnswered,
                  now: float) -> None:
        negotiation = None
        srtp = None
        why = "no usable SDP answer"
        if event.answer:
            try:
                answer = SessionDescription.parse(event.answer)
                negotiation = negotiate_audio(answer, call_codecs(call))
                offered = call.extra.get("srtp_offer")
                srtp = answer_keys(answer, offered if isinstance(offered, list) else None,
                                   encryption_for(call.extra.get("trunk")))  # type: ignore[arg-type]
            except SdesError as exc:
                negotiation, why = None, f"SRTP: {exc}"
            except Exception:
                negotiation = None
        if negotiation is None or call.session is None:
            log.warning("dial-out %s: the 200 OK's answer is not usable (%s)", dial.id, why)
            dial.on_ended(None, now, why)
            dial.participant_state, dial.reason = "failed", why
            self._end(call, why)
            return
        if srtp is not None:
            call.session.set_srtp(*srtp.sessions())
            call.extra["srtp"] = srtp
            log.info("dial-out %s: SRTP (%s)", dial.id, srtp.suite)
        dial.on_answered(now)
        if not self._configure(call, negotiation):  # (ends the call when not usable)
            return
        call.set_state(CallState.ANSWERED)
        if not self.rooms.join(call, dial.room, participant_id=pid, called_out=True):
            return
        log.info("dial-out %s: answered; %s is in room %s", dial.id, pid, dial.room)
        if dial.redial and self.callee_memory is not None:  # for the room's next node
            self.callee_memory.remember_callee(dial.room, dial.id, dial.redial_entry())
        self._arm_dial(dial)

    def _connect_failed(self, dest: Peer, reason: str) -> None:
        """A connection we opened to `dest` failed (SipTransport.connect_failed: a TLS
        certificate that does not verify, a refused TCP connection): the registrations and
        the unanswered dial-outs waiting on it fail now, saying why (not a "no answer" after
        the transaction's timeout)."""
        self.registry.transport_failed(dest, reason)
        now = self._time()
        for dial_id, call_id in list(self._dial_calls.items()):
            call = self.calls.get(call_id)
            dial = self.dialouts.get(dial_id)
            if call is None or dial is None or call.source != dest:
                continue
            if dial.on_transport_failed(reason, now):
                log.info("dial-out %s: %s", dial.id, reason)
                self._end(call, reason)
        self._flush()

    # -- timers ------------------------------------------------------------------------------

    def _arm_dial(self, dial: DialOut) -> None:
        handle = self._dial_timers.pop(dial.id, None)
        if handle is not None:
            handle.cancel()
        at = dial.get_timer()
        if at is not None and self._loop is not None:
            self._dial_timers[dial.id] = self._loop.call_at(at, self._dial_timer, dial.id)

    def _dial_timer(self, dial_id: str) -> None:
        self._dial_timers.pop(dial_id, None)
        dial = self.dialouts.get(dial_id)
        call = self.calls.get(self._dial_calls.get(dial_id, ""))
        if dial is None or call is None:
            return
        now = self._time()
        try:
            if dial.cancel_due(now):
                self._end(call, "no answer")
            else:
                digits = dial.digits_due(now)
                if digits and call.session is not None:
                    log.info("dial-out %s: sending %d DTMF digit(s)", dial.id, len(digits))
                    for digit in digits:
                        call.session.send_dtmf(digit)
                self._arm_dial(dial)
        except Exception:
            log.exception("dial-out %s: timer failed", dial_id)
        self._flush()

    # -- the end -----------------------------------------------------------------------------

    def _dialout_cleanup(self, call: PhoneCall, reason: str) -> None:
        """A step of the gateway's `_cleanup`: the record's outcome, and an unanswered
        callee's roster entry (with its outcome, for LINGER seconds)."""
        entry = self._dial_by_call.pop(call.call_id, None)
        if entry is None:
            return
        dial, pid = entry
        self._dial_calls.pop(dial.id, None)
        if dial.redial and self.callee_memory is not None:  # ended here: not called again
            self.callee_memory.forget_callee(dial.room, dial.id)
        unsubscribe = self._dial_watch.pop(dial.id, None)
        if unsubscribe is not None:
            unsubscribe()
        handle = self._dial_timers.pop(dial.id, None)
        if handle is not None:
            handle.cancel()
        dial.on_ended(None, self._time(), reason)
        # failed (no such number, refused, no usable answer...): WARNING; busy, no answer,
        # hung up after being in the meeting: routine, INFO
        log.log(logging.WARNING if dial.participant_state == "failed" else logging.INFO,
                "dial-out %s: ended: %s (%s)", dial.id, dial.participant_state, dial.reason)
        try:
            self.focus.get(pid)
        except KeyError:
            return  # it was in the room: rooms.leave has told the focus
        if self._loop is None:
            self.focus.leave(pid, "hangup")
            return
        self._set_state(pid, dial.participant_state, dial.reason)
        self._lingering[pid] = self._loop.call_later(LINGER, self._linger_done, pid)

    def _linger_done(self, pid: str) -> None:
        self._lingering.pop(pid, None)
        self.focus.leave(pid, "hangup")

    def _dialout_stop(self) -> None:
        for pid, handle in list(self._lingering.items()):
            handle.cancel()
            self._linger_done(pid)
        for handle in self._dial_timers.values():
            handle.cancel()
        self._dial_timers.clear()

    def dialout_stats(self) -> dict[str, int]:
        return {"dialout_calls": len(self._dial_calls),
                "dialout_records": len(self.dialouts)}

    # -- helpers -----------------------------------------------------------------------------

    def _set_state(self, pid: str, state: str, reason: str | None = None) -> None:
        with contextlib.suppress(KeyError):  # removed meanwhile (a moderator's kick)
            self.focus.set_state(pid, state, reason)

    def _remember(self, dial: DialOut) -> None:
        self.dialouts[dial.id] = dial
        while len(self.dialouts) > KEEP_RECORDS:
            oldest = next(iter(self.dialouts))
            if oldest in self._dial_calls:  # live: keep it, drop nothing this time
                break
            del self.dialouts[oldest]

    async def _trunk_peer(self, trunk: TrunkRecord) -> tuple[Peer, str, str | None]:
        """Where the INVITE goes, the domain of its To (and From), and its Request-URI when
        not sip:<number>@<domain>: for a trunk whose PBX registers to us, the address its
        REGISTER came from, its Contact's host and the Contact itself (RFC 3261 10: calls
        for a registered AOR go to its Contact; the number is in To; 503 while it is not
        registered); else the trunk's first address, resolved per dial-out
        (RFC 3263: SRV for a host name without a port, else A/AAAA; gateway/trunk_dns.py,
        cached briefly; 502 when it does not resolve) and the trunk's configured address."""
        if trunk.register_in:
            bound = self.registrar.binding(trunk.name, self._time())
            if bound is None:
                raise DialRefused(503, f"trunk {trunk.name}: its PBX is not registered")
            contact = bound.contact
            domain = contact.host if contact.port is None else f"{contact.host}:{contact.port}"
            return bound.source, domain, str(contact)
        try:
            resolved = await self.registry.resolver.resolve_trunk(trunk)
        except DnsError as exc:
            log.warning("dial-out: trunk %s: its address does not resolve: %s", trunk.name,
                        exc)
            raise DialRefused(502, f"trunk {trunk.name}: its address does not resolve") \
                from None
        host, port = resolved.addresses[0]
        return Peer(trunk.transport, host, port), str(trunk.address), None
