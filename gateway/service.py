"""The gateway service: SIP calls in, the PIN IVR, and phone legs mixed in rooms.

Jigasi's two legs, inside one process: the SIP side is the sans-I/O `UserAgent` driven by
`SipTransport`; the conference side is an ordinary participant of the focus. Everything that
happens per call runs on the event loop's thread without locks:

- SIP events are handled as they are drained from the user agent (`_GatewayNode`), right
  after the transport fed it bytes or fired its timer;
- media, prompts, IVR timers and DTMF are handled on the one media clock tick (20 ms).

Who gets in after the PIN (host PIN, password, the focus's lobby, the host's keys) is
gateway/call_policy.py's, a part of the gateway as gateway/call_media.py is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from dialplan.limits import Networks
from dialplan.routing import Prompt, Reject, Room, Router
from dialplan.store import Store, StoreError
from dialplan.throttle import PinThrottle
from focus import Focus
from focus.gate import Gate
from focus.lobby import Lobby
from gateway.call import CallState, PhoneCall
from gateway.call_media import CallMedia, call_codecs
from gateway.call_policy import CallPolicy, RecordingSwitch
from gateway.callerid import caller_name
from gateway.clock import Continuation, MediaClock
from gateway.conference_audio import OPUS_PT, ConferenceAudio, LinkFactory, MediaProvider
from gateway.dialout_calls import DialOutCalls
from gateway.handoff import HandOffCalls
from gateway.handoff_token import HEADER as HANDOFF_HEADER
from gateway.handoff_token import ClusterSeat
from gateway.ivr import PinIvr
from gateway.media.codecs import codec_by_name
from gateway.media.dtmf import parse_info_body
from gateway.media_address import MediaAddressResolver
from gateway.mixer import ConferenceMixer, EncodeFn
from gateway.phone_lobby import PhoneLobby
from gateway.phone_rooms import PhoneRooms
from gateway.prompts import PromptSet
from gateway.registrar import Registrar
from gateway.rtp_session import PortAllocator, RtpSession
from gateway.settings import CODECS, GatewaySettings, trunk_codecs
from gateway.shedding import SipShedder
from gateway.sip.events import (
    CallConfirmed,
    CallEnded,
    IncomingCall,
    InfoReceived,
    OfferReceived,
    RegisterReceived,
    RequestAnswered,
    RequestTimedOut,
)
from gateway.sip.peer import Peer
from gateway.sip.sdp import (
    SessionDescription,
    negotiate_audio,
)
from gateway.sip.timers import TimerSettings
from gateway.sip.useragent import UaSettings, UserAgent
from gateway.sip_tls import client_context, server_context
from gateway.sip_transport import SipTransport
from gateway.trunk_auth import Challenge, InboundTrunks, Refuse
from gateway.trunk_dns import TrunkResolver, dnspython_lookup
from gateway.trunk_registry import TrunkRegistry
from gateway.trunk_tls import TrunkTls
from native.sendbatch import SendBatch

log = logging.getLogger(__name__)

#: voice taps (an Opus encode each, for the bridge) run per loop callback after a tick's
#: sends: about a millisecond of the loop's time
TAP_SLICE = 16


class _GatewayNode:
    """The SansIoNode the transport drives: the user agent, with its events handled at once."""

    def __init__(self, gateway: Gateway, ua: UserAgent) -> None:
        self._gateway = gateway
        self._ua = ua

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        if not self._gateway.shedder.admit(data, source.host, now):
            return  # blocked, or over its rate: dropped before parsing, unanswered
        self._ua.receive_data(data, source, now)
        self._gateway.drain_sip_events(now)

    def handle_timer(self, now: float) -> None:
        self._ua.handle_timer(now)
        self._gateway.drain_sip_events(now)

    def get_timer(self) -> float | None:
        return self._ua.get_timer()

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self._ua.datagrams_to_send()


class Gateway(CallMedia, CallPolicy, DialOutCalls, HandOffCalls):
    def __init__(
        self,
        settings: GatewaySettings,
        focus: Focus,
        router: Router,
        store: Store,
        throttle: PinThrottle,
        media: MediaProvider | None = None,
        connect: LinkFactory | None = None,
        *,
        gate: Gate | None = None,
        lobby: Lobby | None = None,
        policy_changed: Callable[[str], None] | None = None,
        cluster: ClusterSeat | None = None,
    ) -> None:
        """``media`` and ``connect``: the focus's plain bridge endpoints and the packet
        links to them; without them phones hear only phones (no browsers). ``gate``,
        ``lobby`` and ``policy_changed`` (the meetings' own): the room policy for callers
        (gateway/call_policy.py); without them every room is open to callers. ``cluster``:
        this node's cluster, for calls to rooms other nodes host (gateway/handoff.py)."""
        self.settings = settings
        self.focus = focus
        self.router = router
        self.store = store
        self.throttle = throttle
        #: who may pick a room by header and is not limited per address in PIN entry
        self.trusted_peers = Networks(settings.trusted_peers)
        self.prompts = PromptSet.load(settings.prompts_dir)
        local: dict[str, tuple[str, int]] = {}
        for transport, host, port in settings.sip_listen:
            announce = settings.sip_announce if host in ("0.0.0.0", "::") else host
            local.setdefault(transport, (announce, port))
        self.ua = UserAgent(
            UaSettings(
                local=local,
                user_agent=settings.user_agent,
                session_expires=settings.session_expires,
                min_se=settings.min_se,
                timers=TimerSettings(),
                max_finished_transactions=settings.max_finished_transactions,
            )
        )
        self.shedder = SipShedder(settings.shedding, settings.trusted_peers)
        self.mixer = ConferenceMixer(_encoder_for)
        self.send_batch = SendBatch()  # every leg's packet of a tick, sent at its end
        self.audio: ConferenceAudio | None = None
        if media is not None and connect is not None:
            self.audio = ConferenceAudio(self.mixer, media, connect, self._time,
                                         settings.audio)
        self.calls: dict[str, PhoneCall] = {}
        self._ivr_calls: set[PhoneCall] = set()
        self._by_leg: dict[str, PhoneCall] = {}
        self.rooms = PhoneRooms(focus, self.mixer, self.prompts, self.audio,
                                max_participants=settings.max_participants)
        self.gate = gate
        self.lobby = lobby
        self.policy_changed = policy_changed
        self.recording_switch: RecordingSwitch | None = None  # set by the composition root
        self.phone_lobby = PhoneLobby(
            lobby, focus, self.mixer, self.prompts, max_wait=settings.lobby_max_wait,
            admitted=self._lobby_admitted,
        ) if lobby is not None else None  # fmt: skip
        self._leg_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: SipTransport | None = None
        self._clock: MediaClock | None = None
        self._skipped_seen = 0  # the clock's skipped ticks the mixer has been told of
        self._ports = PortAllocator(*settings.rtp_ports)
        self._media_trusted = Networks(settings.trusted_peers)
        self._media_hosts = MediaAddressResolver(":" in settings.media_address)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters = {"calls_total": 0, "calls_rejected": 0, "pin_failures": 0,
                         "pin_checks_refused": 0, "trunk_challenges": 0,
                         "trunk_auth_failures": 0, "password_failures": 0}
        # trunks: registrations (the API's TrunkControl) and inbound matching with digest
        self.trunk_tls = TrunkTls(store.trunk, settings.sip_tls_ca, settings.sip_tls_keylog)
        self.registry = TrunkRegistry(self.ua, self._flush, tls=self.trunk_tls,
                                      resolver=TrunkResolver(dnspython_lookup(
                                          *(settings.sip_dns_server or ("", 53)))))
        self.inbound = InboundTrunks(
            store, throttle, lambda: {**self.registry.sources(),
                                      **self.registrar.sources(self._time())},
            require_trunk=settings.require_trunk,
            realm=settings.digest_realm, nonce_lifetime=settings.nonce_lifetime,
            algorithms=settings.digest_algorithms, default_country=settings.default_country,
        )  # fmt: skip
        # PBXs registering to us (trunks with register_in): the same nonces and throttle
        self.registrar = Registrar(store.trunks, self.inbound.digest, throttle)
        self.ua.accept_register = self.registrar.enabled
        self.registry.inbound_state = self.registrar.state
        self._rtp_closed = {"rtp_rx_packets": 0, "rtp_tx_packets": 0, "rtp_rx_dropped": 0}
        self._init_dialout()  # calls out to phones (gateway/dialout_calls.py)
        self._init_handoff(cluster)  # calls for rooms on other nodes (gateway/handoff.py)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        transport = SipTransport(
            _GatewayNode(self, self.ua),
            list(self.settings.sip_listen),
            idle_timeout=self.settings.tcp_idle_timeout,
            max_connections=self.settings.max_tcp_connections,
            max_connections_per_source=self.settings.max_tcp_connections_per_source,
            admit_host=lambda host, now: not self.shedder.blocked(host, now),
            tls_server=server_context(self.settings.sip_tls_cert, self.settings.sip_tls_key,
                                      self.settings.sip_tls_keylog)
            if self.settings.sip_tls_cert and self.settings.sip_tls_key else None,
            tls_client=client_context(self.settings.sip_tls_ca, self.settings.sip_tls_keylog),
            tls_for=self.trunk_tls.for_peer,  # a trunk's tls_verify / tls_ca
            connect_failed=self._connect_failed,
        )
        await transport.start()
        self._transport = transport
        self._clock = MediaClock(self._loop, callback=self._tick)
        self._skipped_seen = 0
        self._clock.start()
        self.registry.start(self.store.trunks())
        if self.seat is not None:
            self._spawn(self._load_key())
        s = self.settings  # one line: where SIP listens, where RTP binds, what both announce
        log.info("gateway: SIP on %s (Via and Contact announce %s on 0.0.0.0 and ::); phone "
                 "media (RTP) binds UDP %s ports %d-%d; SDP announces %s", ", ".join(
                     f"{t}:{h}:{p}" for t, h, p in s.sip_listen), s.sip_announce,
                 s.media_address, *s.rtp_ports, s.media_announce)  # fmt: skip

    async def stop(self) -> None:
        await self.registry.stop()  # un-REGISTERs: sent with the BYEs below
        if self.phone_lobby is not None:
            self.phone_lobby.close()
        for call in list(self.calls.values()):
            if call.state is not CallState.ENDED:
                self.ua.hangup(call.call_id, now=self._time())
                self._cleanup(call, "server stopping")
        self._dialout_stop()
        self._handoff_stop()
        self._flush()
        if self.audio is not None:
            await self.audio.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._clock is not None:
            self._clock.stop()
            self._clock = None
        if self._transport is not None:
            await asyncio.sleep(0.05)  # let the BYEs leave
            await self._transport.stop()
            self._transport = None
        self._media_hosts.close()

    def healthy(self) -> bool:
        return self._transport is not None and self._clock is not None and self._clock.running

    def _count_rtp(self, session: RtpSession) -> None:
        c = session.counters
        self._rtp_closed["rtp_rx_packets"] += c.rx_packets
        self._rtp_closed["rtp_tx_packets"] += c.tx_packets
        self._rtp_closed["rtp_rx_dropped"] += c.rx_garbage + c.rx_unexpected_pt + c.rx_foreign

    def stats(self) -> dict[str, int]:
        rtp = dict(self._rtp_closed)
        for call in self.calls.values():
            if call.session is not None:
                c = call.session.counters
                rtp["rtp_rx_packets"] += c.rx_packets
                rtp["rtp_tx_packets"] += c.tx_packets
                rtp["rtp_rx_dropped"] += c.rx_garbage + c.rx_unexpected_pt + c.rx_foreign
        clock = self._clock.stats() if self._clock is not None else None
        counts = {
            "calls": self.ua.calls(),
            "legs": sum(1 for c in self.calls.values() if c.session is not None),
            "ivr": len(self._ivr_calls),
            "lobby_calls": len(self.phone_lobby) if self.phone_lobby is not None else 0,
            "mixer_rooms": len(self.rooms.calls),
            "rtp_ports_in_use": self._ports.in_use,
            "transactions": self.ua.stats()["transactions"],
            "mix_ticks": clock.ticks if clock else 0,
            "mix_ticks_late": clock.late_ticks if clock else 0,
            "mix_ticks_skipped": clock.skipped_ticks if clock else 0,
            # The longest the media tick (mixing and codec work) held the event loop at once.
            "mix_tick_max_us": round(clock.max_callback_seconds * 1e6) if clock else 0,
            "mix_tick_busy_us": round(clock.callback_seconds * 1e6) if clock else 0,
            # From a tick's deadline to its last slice (rooms mixed later hear later).
            "mix_tick_span_max_us": round(clock.max_span_seconds * 1e6) if clock else 0,
            "mix_slices": clock.slices if clock else 0,
            "mix_tick_overruns": clock.overruns if clock else 0,
        }
        counts.update(self.counters)
        counts.update(self.registry.stats())
        counts.update(self.dialout_stats())
        counts.update(self.handoff_stats())
        counts.update({f"mix_send_{k}": v for k, v in self.send_batch.stats().items()})
        counts.update(self.shedder.stats(self._time()))
        counts.update(self.ua.transaction_stats())
        counts["sip_tcp_refused"] = self._transport.refused if self._transport else 0
        counts.update(rtp)
        if self.audio is not None:
            counts.update(self.audio.stats())
        return counts

    # -- SIP events --------------------------------------------------------------------

    def drain_sip_events(self, now: float) -> None:
        while (event := self.ua.next_event()) is not None:
            try:
                self._on_sip_event(event, now)
            except StoreError as exc:  # the dialplan's database is unreachable (PostgreSQL)
                log.error("call %s: %s: %s", event.call_id, type(event).__name__, exc)
                call = self.calls.get(event.call_id)
                if call is not None:
                    self._end(call, "database unavailable")
                elif isinstance(event, IncomingCall):
                    self._reject(event.call_id, 503, "Service Unavailable",
                                 (("Retry-After", "30"),))
            except Exception:
                log.exception("call %s: failed handling %s", event.call_id, type(event).__name__)
                call = self.calls.get(event.call_id)
                if call is not None:
                    self._end(call, "internal error")

    def _on_sip_event(self, event: object, now: float) -> None:
        if isinstance(event, CallConfirmed | CallEnded):  # no longer in setup
            self.shedder.end_setup(event.call_id, getattr(event, "status", None), now)
        if isinstance(event, IncomingCall):
            self._incoming(event, now)
            return
        if self._handoff_event(event, now) or self._dialout_event(event, now):
            return
        if isinstance(event, RequestAnswered | RequestTimedOut):
            self.registry.on_event(event)
            return
        if isinstance(event, RegisterReceived):  # a PBX registering (gateway/registrar.py)
            status, reason, headers = self.registrar.on_register(event.request, event.source,
                                                                 now)
            self.ua.answer_register(event.key, status, reason, headers, now=now)
            return
        call = self.calls.get(getattr(event, "call_id", ""))
        if call is None:
            return
        if isinstance(event, CallConfirmed):
            self._confirmed(call, event, now)
        elif isinstance(event, OfferReceived):
            self._reoffer(call, event.offer)
        elif isinstance(event, InfoReceived):
            info = parse_info_body(event.content_type, event.body)
            if info is not None:
                self._on_digit(call, info.digit, now)
        elif isinstance(event, CallEnded):
            log.info("call %s: ended (%s)", call.call_id, event.reason)
            self._cleanup(call, event.reason)

    def _incoming(self, event: IncomingCall, now: float) -> None:
        request = event.request
        call_id = event.call_id
        self.counters["calls_total"] += 1
        if not self._admit(event, now):
            return
        handoff = request.headers.get(HANDOFF_HEADER)
        if handoff is not None:  # from another node of the cluster (gateway/handoff.py)
            handed = self._incoming_handoff(event, handoff)
            ok, offer = self._parse_offer(event, CODECS) if handed is not None \
                else (False, None)
            if handed is not None and ok:
                self._accept(handed, offer)
            return
        caller = request.from_addr.uri.user or "anonymous"
        if self.throttle.is_blocked(caller, event.source.host, now):
            log.warning("call %s: refused: %s from %s is blocked after wrong PINs",
                        call_id, caller, event.source.host)
            self._reject(call_id, 403, "Forbidden")
            return
        verdict = self.inbound.decide(call_id, request, event.source.host, caller, now)
        if isinstance(verdict, Challenge):
            self.counters["trunk_challenges"] += 1
            self._reject(call_id, 407, "Proxy Authentication Required", verdict.headers)
            return
        if isinstance(verdict, Refuse):
            if verdict.wrong_password:
                self.counters["trunk_auth_failures"] += 1
                self.shedder.call_failed(event.source.host, now)
            self._reject(call_id, verdict.status, verdict.reason)
            return
        dialled = verdict.dialled
        headers = {name: value for name, value in request.headers.items()}
        trusted = event.source.host in self.trusted_peers  # one decision: routing, throttle
        decision = self.router.route(dialled, caller, headers, call_id=call_id,
                                     trusted=trusted)
        if isinstance(decision, Reject):
            self._reject(call_id, decision.status, decision.reason)
            return
        # a trunk's call negotiates against the trunk's codecs (its offer and our answer)
        ok, offer = self._parse_offer(event, trunk_codecs(verdict.trunk))
        if not ok:
            return
        if isinstance(decision, Prompt):  # counted while in PIN entry (PinThrottle.finish)
            admission = self.throttle.admit(call_id, caller, event.source.host, now,
                                            trusted=trusted)
            if admission != "admitted":
                log.info("call %s: refused: PIN entry %s for this source", call_id, admission)
                # a failed call of its source for the scanner rule (486 alone is not one)
                self.shedder.call_failed(event.source.host, now)
                self._reject(call_id, *((403, "Forbidden") if admission == "blocked"
                                        else (486, "Busy Here")))
                return
        display = request.from_addr.display
        lobby_name = caller_name(None, caller, decision.display)  # the masked number
        call = PhoneCall(
            call_id=call_id,
            leg_id=f"leg{next(self._leg_ids)}",
            caller=caller,
            name=caller_name(display, caller, decision.display),
            source=event.source,
            route_room=decision.name if isinstance(decision, Room) else None,
        )
        assert isinstance(decision, Prompt | Room)
        call.extra["lobby_name"] = lobby_name
        call.extra["trunk"] = verdict.trunk  # its media_encryption (gateway/srtp_leg.py)
        self._accept(call, offer)

    def _parse_offer(self, event: IncomingCall,
                     codecs: list[str]) -> tuple[bool, SessionDescription | None]:
        """(False, None) when the INVITE's offer is refused (488 sent: unparseable, or no
        codec in common with `codecs`); else its offer."""
        if not event.offer:
            return True, None
        try:
            offer = SessionDescription.parse(event.offer)
        except Exception:
            log.warning("call %s: unparseable SDP offer: 488", event.call_id)
            self._reject(event.call_id, 488, "Not Acceptable Here")
            return False, None
        if negotiate_audio(offer, codecs) is None:
            log.warning("call %s: no common audio codec: 488", event.call_id)
            self._reject(event.call_id, 488, "Not Acceptable Here")
            return False, None
        return True, offer

    def _accept(self, call: PhoneCall, offer: SessionDescription | None) -> None:
        self.calls[call.call_id] = call
        self._by_leg[call.leg_id] = call
        self._spawn(self._answer(call, offer))

    def _admit(self, event: IncomingCall, now: float) -> bool:
        """Calls in setup (gateway/shedding.py: 503 with Retry-After over the limits); when
        the RTP ports run short, answered calls that never got their ACK make room."""
        refusal = self.shedder.begin_call(event.call_id, event.source.host, now)
        if refusal is not None:
            self.counters["calls_rejected"] += 1
            self.ua.reject(event.call_id, refusal.status, refusal.reason, now=now,
                           headers=[("Retry-After", str(refusal.retry_after))])
            return False
        if self._ports.available < self._ports.size * self.settings.reclaim_free_ports:
            ended = 0
            for call_id in self.shedder.stale_setups(now):
                call = self.calls.get(call_id)
                if call is not None and call.state is CallState.ANSWERED and \
                        self.ua.drop_unacknowledged(call_id, now=now):
                    self._cleanup(call, "no ACK while RTP ports are short")
                    ended += 1
            if ended:
                self.shedder.reclaimed(ended)
                log.warning("call %s: RTP ports short (%d free): ended %d unACKed call(s)",
                            event.call_id, self._ports.available, ended)
        return True

    def _reject(self, call_id: str, status: int, reason: str,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.counters["calls_rejected"] += 1
        self.ua.reject(call_id, status, reason, now=self._time(), headers=headers)

    def _confirmed(self, call: PhoneCall, event: CallConfirmed, now: float) -> None:
        if call.offered_in_200:
            negotiation = self._negotiate_answer(call.call_id, event.answer,
                                                   call_codecs(call))
            if negotiation is None:
                log.warning("call %s: the ACK had no usable SDP answer", call.call_id)
                self._end(call, "no SDP answer")
                return
            if not self._configure(call, negotiation):
                return
        if call.route_room is not None:
            call.room = call.route_room
            self._after_ivr(call, call.route_room, True if call.extra.get("password_ok")
                            else None, now)  # (the password, given on the node handing over)
            return
        call.ivr = PinIvr(call.call_id, self.settings.ivr)
        call.set_state(CallState.IVR)
        self._ivr_calls.add(call)
        call.ivr.start(now)
        self._run_ivr(call, now)

    # -- the IVR (its actions, digits and timers: gateway/call_policy.py) ---------------

    def _on_rtp_digit(self, call: PhoneCall, digit: str) -> None:
        assert self._loop is not None
        self._on_digit(call, digit, self._loop.time())
        self._flush()

    def _on_media_timeout(self, call: PhoneCall) -> None:
        log.warning("call %s: no RTP for %.0f s: hanging up", call.call_id,
                    self.settings.media_timeout)
        self._end(call, "media timeout")
        self._flush()

    # -- ending calls ------------------------------------------------------------------

    def _end(self, call: PhoneCall, reason: str) -> None:
        """We end the call: BYE (or a final response), then forget it."""
        if call.state is CallState.ENDED:
            return
        self.ua.hangup(call.call_id, now=self._time())
        self._cleanup(call, reason)

    def _cleanup(self, call: PhoneCall, reason: str) -> None:
        """Forget a call and release all it holds. Every step runs whatever failed before
        it: the port pair and the sockets are always released."""
        if call.state is CallState.ENDED:
            return
        call.set_state(CallState.ENDED)
        call.end_reason = reason
        self._ivr_calls.discard(call)
        call.ivr = None
        for step in (
            lambda: self.throttle.finish(call.call_id),
            lambda: self.phone_lobby.cancel(call) if self.phone_lobby is not None else None,
            lambda: self.rooms.leave(call, reason),
            lambda: self._dialout_cleanup(call, reason),
            lambda: self._handoff_cleanup(call, reason),
            lambda: self.mixer.remove_leg(call.leg_id) if call.leg_id in self.mixer else None,
            lambda: self._count_rtp(call.session) if call.session is not None else None,
            lambda: call.session.close() if call.session is not None else None,
        ):
            try:
                step()
            except Exception:
                log.exception("call %s: a cleanup step failed", call.call_id)
        self.calls.pop(call.call_id, None)
        self._by_leg.pop(call.leg_id, None)

    # -- the clock ---------------------------------------------------------------------

    def _tick(self, now: float) -> Continuation | None:
        """One mix tick. Every room is mixed in one go, the event loop waiting (a phone's
        packet must not leave later because packets arrived meanwhile): the sessions queue
        their packets in ``send_batch``, sent all at once as soon as the last room is mixed
        (every phone's packet of a tick leaves together, in the same order every tick, a
        steady time after the tick's start). Then the prompt events and IVR timers. The
        voice taps (callers' voices encoded to Opus for the bridge) run last, in slices of
        TAP_SLICE with the loop's I/O in between; the clock finishes any left before the
        next tick."""
        mixer = self.mixer
        if mixer.tick_pending or mixer.taps_pending:  # (not normally: the clock finishes ticks)
            mixer.run_slice(0)
            self.send_batch.flush()
            mixer.run_taps(0)
        skipped = self._clock.skipped_ticks if self._clock is not None else 0
        if skipped != self._skipped_seen:  # the loop woke too late for some ticks
            mixer.skip(skipped - self._skipped_seen, now)
            self._skipped_seen = skipped
        if self.audio is not None:
            self.audio.before_tick(now)
        mixer.begin_tick(now)
        mixer.run_slice(0)
        self.send_batch.flush()
        self._after_tick(now)
        return self._tap_slice if mixer.run_taps(TAP_SLICE) else None

    def _tap_slice(self) -> bool:
        return self.mixer.run_taps(TAP_SLICE)

    def _flush(self) -> None:
        if self._transport is not None:
            self._transport.flush()

    def _time(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _encoder_for(codec: str) -> EncodeFn:
    """A new encoder for the mixer (one per listener, one per room's shared mix)."""
    return codec_by_name(codec, OPUS_PT if codec == "OPUS" else None).encode
