"""A phone call's media in the gateway: open the leg and answer, apply re-offers, refuse.

``CallMedia`` is a part of ``gateway.service.Gateway`` (a mixin: the methods run on the
gateway and use its user agent, mixer and rooms). The rules it applies:

- the remote's c= address is a numeric IP of the leg's family or hold (0.0.0.0), used as it
  is, or a host name resolved once when the offer comes (``gateway/media_address.py``);
  anything else is answered 488: the INVITE ends there, a re-INVITE leaves the call as it
  was. An answer in an ACK cannot be refused: the call is ended instead;
- the leg's ``RtpSession`` knows the SIP source host and whether the peer is trusted
  (``sip.trusted_peers``): strict RTP and no reflection (``gateway/rtp_session.py``);
- whatever fails while a call is answered, the call is refused (or ended) and ``_cleanup``
  releases all it holds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from dialplan.limits import Networks
from dialplan.trunks import TrunkRecord
from gateway.call import CallState, PhoneCall, PhoneLeg
from gateway.media.codecs import codec_by_name, opus_fmtp_options
from gateway.media_address import MediaAddressResolver
from gateway.mixer import ConferenceMixer
from gateway.phone_rooms import PhoneRooms
from gateway.rtp_session import PortAllocator, PortsExhausted, RtpSession
from gateway.settings import GatewaySettings, trunk_codecs
from gateway.sip.sdp import (
    AudioNegotiation,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate_audio,
    parse_fmtp,
)
from gateway.sip.useragent import UserAgent
from gateway.srtp_leg import (
    Encryption,
    LegSrtp,
    add_crypto,
    decide_inbound,
    encryption_for,
    rekey,
)
from native.sendbatch import SendBatch

log = logging.getLogger(__name__)


def call_codecs(call: PhoneCall) -> list[str]:
    """The codecs of a call's SDP: its trunk's (``trunk_codecs``), in both directions."""
    trunk = call.extra.get("trunk")
    return trunk_codecs(trunk if isinstance(trunk, TrunkRecord) else None)


class CallMedia:
    """The media half of the gateway's call handling (see the module)."""

    settings: GatewaySettings
    ua: UserAgent
    mixer: ConferenceMixer
    send_batch: SendBatch
    rooms: PhoneRooms
    _ports: PortAllocator
    _media_trusted: Networks
    _media_hosts: MediaAddressResolver

    if TYPE_CHECKING:  # the gateway's own methods
        def _end(self, call: PhoneCall, reason: str) -> None: ...
        def _cleanup(self, call: PhoneCall, reason: str) -> None: ...
        def _reject(self, call_id: str, status: int, reason: str) -> None: ...
        def _flush(self) -> None: ...
        def _time(self) -> float: raise NotImplementedError
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        def _on_rtp_digit(self, call: PhoneCall, digit: str) -> None: ...
        def _on_media_timeout(self, call: PhoneCall) -> None: ...

    async def _answer(self, call: PhoneCall, offer: SessionDescription | None) -> None:
        """Open the leg's media and answer; whatever fails, the call is refused or ended and
        everything it holds is released (``_cleanup``)."""
        try:
            await self._open_and_answer(call, offer)
        except Exception:
            log.exception("call %s: answering failed", call.call_id)
            self._refuse(call, 500, "Server Internal Error")

    async def _open_and_answer(self, call: PhoneCall, offer: SessionDescription | None) -> None:
        negotiation: AudioNegotiation | None = None
        if offer is not None:
            negotiation = await self._resolved(call, negotiate_audio(offer, call_codecs(call)))
            if negotiation is None:
                self._refuse(call, 488, "Not Acceptable Here")
                return
            if call.state is CallState.ENDED:  # cancelled while resolving
                return
        accepted, srtp = self._inbound_srtp(call, offer, negotiation)
        if not accepted:  # refused: 488
            return
        session = self._new_session(call.call_id, call.source.host)
        call.session = session
        try:
            await session.open()
        except (PortsExhausted, OSError) as exc:
            log.warning("call %s: no RTP port: %s", call.call_id, exc)
            self._refuse(call, 503, "Service Unavailable")
            return
        port = session.local_port
        if call.state is CallState.ENDED:  # cancelled while the socket opened
            session.close()
            return
        session.on_dtmf = lambda digit: self._on_rtp_digit(call, digit)
        session.on_timeout = lambda: self._on_media_timeout(call)
        host = self.settings.media_announce
        if offer is not None and negotiation is not None:
            built = build_answer(offer, host, port, call_codecs(call), session_id=str(port))
            assert built is not None  # negotiated before
            sdp = built[0]
            if srtp is not None:
                add_crypto(sdp, [srtp.ours])
                session.set_srtp(*srtp.sessions())
                call.extra["srtp"] = srtp
                log.info("call %s: SRTP (%s)", call.call_id, srtp.suite)
            if not self._configure(call, negotiation):
                return
        else:
            sdp = build_offer(host, port, call_codecs(call), session_id=str(port))
            call.offered_in_200 = True
        call.local_sdp = sdp.serialize()
        self.ua.answer(call.call_id, call.local_sdp, now=self._time())
        call.set_state(CallState.ANSWERED)
        self._flush()

    @staticmethod
    def _negotiate_answer(call_id: str, answer: bytes | None,
                          codecs: list[str]) -> AudioNegotiation | None:
        """The audio of an SDP answer (an ACK's, a relay's 200 OK), or None when there is
        none we can use (absent, unparseable, no common codec)."""
        if not answer:
            return None
        try:
            return negotiate_audio(SessionDescription.parse(answer), codecs)
        except Exception:
            log.info("call %s: unparseable SDP answer", call_id)
            return None

    def _new_session(self, name: str, sip_host: str, *, trusted: bool | None = None) -> RtpSession:
        """A leg's RTP session (not open yet) with the gateway's media settings, its packets
        sent with the tick's others (`send_batch`); `trusted` defaults to whether the
        signalling peer is in sip.trusted_peers."""
        session = RtpSession(
            name, self._ports, self.settings.media_address, sip_host=sip_host,
            trusted=sip_host in self._media_trusted if trusted is None else trusted,
            media_timeout=self.settings.media_timeout,
            relatch_after=self.settings.media_relatch_after,
            relatch_packets=self.settings.media_relatch_packets,
        )  # fmt: skip
        session.batch = self.send_batch  # the tick's packets leave together
        return session

    def _inbound_srtp(self, call: PhoneCall, offer: SessionDescription | None,
                      negotiation: AudioNegotiation | None) -> tuple[bool, LegSrtp | None]:
        """SDES-SRTP for an incoming call by its trunk's policy (gateway/srtp_leg.py):
        (True, its keys or None for plain RTP), or (False, None): refused with 488, the
        offer cannot be answered under the policy."""
        policy = encryption_for(call.extra.get("trunk"))  # type: ignore[arg-type]
        secure = call.source.transport.lower() == "tls"
        if offer is None or negotiation is None:
            if policy is Encryption.REQUIRED:
                log.info("call %s: no offer to answer with SRTP (required)", call.call_id)
                self._refuse(call, 488, "Not Acceptable Here")
                return False, None
            return True, None
        decision = decide_inbound(offer, negotiation.media_index, policy, secure)
        if decision.reject is not None:
            log.info("call %s: refused: %s", call.call_id, decision.reason)
            self._refuse(call, decision.reject, "Not Acceptable Here")
            return False, None
        if decision.ours is None or decision.theirs is None:
            return True, None
        return True, LegSrtp(decision.ours, decision.theirs)

    async def _resolved(self, call: PhoneCall,
                        negotiation: AudioNegotiation | None) -> AudioNegotiation | None:
        """The negotiation with its c= host as a usable numeric IP (a host name resolved
        once), or None: answer 488."""
        if negotiation is None:
            return None
        host = await self._media_hosts.resolve(negotiation.remote_host, call.call_id)
        if host is None:
            log.info("call %s: unusable media address in the SDP", call.call_id)
            return None
        return dataclasses.replace(negotiation, remote_host=host)

    def _refuse(self, call: PhoneCall, status: int, reason: str) -> None:
        """Refuse a call not answered yet (``status``), or end an answered one; either way
        release what it holds."""
        if call.state is CallState.ENDED:
            return
        try:
            if call.state is CallState.SETUP:
                self._cleanup(call, reason)
                self._reject(call.call_id, status, reason)
            else:
                self._end(call, reason)
        except Exception:
            log.exception("call %s: refusing failed", call.call_id)
            self._cleanup(call, reason)
        self._flush()

    def _configure(self, call: PhoneCall, negotiation: AudioNegotiation) -> bool:
        """Apply a negotiation to the leg. False (and the call is ended) when its c= host is
        not a usable numeric IP (an answer in an ACK cannot be refused with 488)."""
        assert call.session is not None
        remote = self._media_hosts.usable_now(negotiation.remote_host)
        if remote is None:
            log.info("call %s: unusable media address in the SDP answer", call.call_id)
            self._end(call, "unusable media address")
            return False
        codec = negotiation.codec.name.upper()
        options = opus_fmtp_options(parse_fmtp(negotiation.fmtp)) if codec == "OPUS" else {}
        call.session.set_remote(
            remote, negotiation.remote_port,
            codec_by_name(codec, negotiation.payload_type, **options),
            negotiation.dtmf_payload_type,
        )  # fmt: skip
        call.session.set_remote_direction(negotiation.direction)
        leg = call.leg
        if leg is None:
            call.leg = PhoneLeg(call.leg_id, call.session, codec, negotiation.payload_type,
                                options)
            self.mixer.add_leg(None, call.leg)
        elif (leg.codec_name, leg.payload_type, leg.codec_options) != (
                codec, negotiation.payload_type, options):
            log.info("call %s: codec now %s %s", call.call_id, codec, options or "")
            leg.codec_name, leg.payload_type, leg.codec_options = (
                codec, negotiation.payload_type, options)
            self.mixer.codec_changed(call.leg_id)
            self.rooms.connect_voice(call, joined=False)
        return True

    def _reoffer(self, call: PhoneCall, offer_bytes: bytes) -> None:
        """A re-INVITE or UPDATE offer: answered at once, or after its c= host name is
        resolved; 488 (the call goes on as it was) when it is not acceptable."""
        try:
            offer = SessionDescription.parse(offer_bytes)
            negotiation = negotiate_audio(offer, call_codecs(call))
        except Exception:
            offer, negotiation = None, None
        if offer is None or negotiation is None or call.session is None:
            self._refuse_offer(call)
            return
        if self._media_hosts.usable_now(negotiation.remote_host) is not None:
            self._answer_offer(call, offer, negotiation)
        elif self._media_hosts.needs_lookup(negotiation.remote_host):
            self._spawn(self._resolve_reoffer(call, offer, negotiation))
        else:
            self._refuse_offer(call)

    async def _resolve_reoffer(self, call: PhoneCall, offer: SessionDescription,
                               negotiation: AudioNegotiation) -> None:
        resolved = await self._resolved(call, negotiation)
        if call.state is CallState.ENDED:
            return
        try:
            if resolved is None:
                self._refuse_offer(call)
            else:
                self._answer_offer(call, offer, resolved)
        except Exception:
            log.exception("call %s: answering the re-offer failed", call.call_id)
        self._flush()

    def _refuse_offer(self, call: PhoneCall) -> None:
        log.info("call %s: re-offer not acceptable", call.call_id)
        self.ua.reject(call.call_id, 488, now=self._time())

    def _answer_offer(self, call: PhoneCall, offer: SessionDescription,
                      negotiation: AudioNegotiation) -> None:
        assert call.session is not None
        port = call.session.local_port
        built = build_answer(offer, self.settings.media_announce, port, call_codecs(call),
                             session_id=str(port), session_version=call.sdp_version + 1)
        if built is None:
            self._refuse_offer(call)
            return
        current = call.extra.get("srtp")
        media = offer.media[negotiation.media_index]
        if isinstance(current, LegSrtp):  # an SRTP leg stays one (our key is kept)
            srtp = rekey(current, offer, negotiation.media_index,
                         encryption_for(call.extra.get("trunk")),  # type: ignore[arg-type]
                         call.source.transport.lower() == "tls")
            if srtp is None:
                self._refuse_offer(call)
                return
            add_crypto(built[0], [srtp.ours])
            if srtp.theirs.key_salt != current.theirs.key_salt:
                call.session.set_srtp(call.session.srtp_tx, srtp.sessions()[1])
            call.extra["srtp"] = srtp
        elif media.proto.upper() == "RTP/SAVP":  # a plain leg does not turn to SRTP
            self._refuse_offer(call)
            return
        call.sdp_version += 1
        if not self._configure(call, negotiation):
            return
        call.local_sdp = built[0].serialize()
        self.ua.answer_offer(call.call_id, call.local_sdp, now=self._time())
