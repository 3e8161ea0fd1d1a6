"""The only module that touches aiortc's and aioice's internals (aiortc==1.16.0, aioice 0.13.0).

aiortc is a WebRTC endpoint, not a forwarder: it parses every RTP packet, routes it to an
RTCRtpReceiver and decodes. The bridge keeps aiortc's transport layer (aioice's ICE agent,
the DTLS handshake, the SRTP keys) and replaces its media path:

- Candidates: aioice enumerates interfaces, skips 127.0.0.1 and binds a socket per
  endpoint. We bind nothing per endpoint: every endpoint shares the bridge's one UDP port
  (and its ICE-TCP port), bridge/mediaport.py. `attach()` hands aioice a protocol object per
  shared port whose transport is a PortLink, as an already gathered host candidate
  (`Connection._protocols`, `_local_candidates`, `_local_candidates_start/_end`,
  `_local_username`: set to a 12-character ufrag, unique on the ports, by which their
  demultiplexer knows the endpoint; `aioice.utils.random_string`).
- Receiving: aioice's `StunProtocol.datagram_received` tries a STUN parse on every datagram
  and queues the rest for `RTCDtlsTransport`'s receive task (one await chain per packet).
  `_MediaProtocol` sorts by the first byte (RFC 7983): STUN goes to aioice as before, DTLS to
  the queue the DTLS transport reads, and SRTP/SRTCP is unprotected right here with the
  DTLS transport's `_rx_srtp` and handed to a plain callback: no task, no await, no parse.
- Sending: `send()` protects with `_tx_srtp` and queues the datagram for the nominated
  pair (`Connection._nominated`) in the bridge's Egress, sent once per event-loop turn,
  instead of awaiting `RTCDtlsTransport._send_rtp` -> `Connection.send` per packet. Both
  directions call libsrtp from C on the DTLS transport's own pylibsrtp contexts
  (native/srtp.py); the way out is the transport's `sink` (native/_egress.c), which the
  forwarder also calls directly for every forwarded RTP packet (`Sink.forward`).
- `_BridgeDtlsTransport` overrides `_handle_rtp_data` / `_handle_rtcp_data`, so a packet
  that still takes aiortc's own path never reaches aiortc's RtpPacket parser or router.

Roles (documented in docs for the focus): the bridge writes the SDP offer and runs full
ICE, so it is ICE-controlling (RFC 8445 section 6.1.1) and nominates; the browser answers
`a=setup:active` to our `actpass`, so the bridge is the DTLS server. No STUN or TURN server
is contacted by the bridge: STUN and TURN servers are for browsers (aiortc's default
would be Google's STUN server).

tests/unit/bridge/test_aiortc_adapter.py checks every internal named here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import CandidatePair, Connection, StunProtocol
from aioice.utils import random_string
from aiortc import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport

from bridge.api import DtlsFingerprint, IceCandidate, TransportDescription
from bridge.mediaport import PortLink, TcpMediaPort, UdpMediaPort
from native._egress import Egress, Sink
from native.srtp import Srtp, SrtpError, srtp

log = logging.getLogger(__name__)

RtpHandler = Callable[[bytes, float], None]  # (plain RTP or RTCP, now)
UFRAG_LENGTH = 12  # ICE ufrag characters (RFC 8445: 4 to 256 ice-chars)


class TransportFailed(Exception):
    """ICE or DTLS could not be set up; `reason` is short and goes into EndpointFailed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class TransportCounters:
    datagrams_received: int = 0
    rtp_received: int = 0
    rtcp_received: int = 0
    packets_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    unprotect_errors: int = 0  # SRTP authentication or replay failures
    protect_errors: int = 0
    dropped: int = 0  # media before SRTP keys, unknown first byte, or not connected

    def add(self, other: dict[str, int]) -> TransportCounters:
        """A copy with `other`'s counts (the sink's) added."""
        out = replace(self)
        for name, value in other.items():
            setattr(out, name, getattr(out, name) + value)
        return out


def new_certificate() -> RTCCertificate:
    """The bridge's DTLS certificate (one per process: its fingerprint goes into every
    endpoint's TransportDescription)."""
    return RTCCertificate.generateCertificate()


def certificate_fingerprints(certificate: RTCCertificate) -> tuple[DtlsFingerprint, ...]:
    return tuple(
        DtlsFingerprint(algorithm=f.algorithm, value=f.value)
        for f in certificate.getFingerprints()
        if f.algorithm == "sha-256"
    )


class _MediaProtocol(StunProtocol):
    """aioice's datagram protocol with a media fast path, demultiplexing on the first byte
    as RFC 7983 section 7 does: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP."""

    def __init__(self, receiver: Connection, owner: EndpointTransport) -> None:
        super().__init__(receiver)
        self._owner = owner

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        owner = self._owner
        if not isinstance(data, bytes) or not data:
            return
        owner.counters.datagrams_received += 1
        owner.counters.bytes_received += len(data)
        owner.last_receive = now = owner.time()
        first = data[0]
        if 127 < first < 192:
            owner.media_received(data, now)
        elif first < 4:
            try:
                super().datagram_received(data, addr)
            except Exception:  # aioice's STUN parser can raise more than ValueError
                owner.counters.dropped += 1
        elif 19 < first < 64:
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            owner.counters.dropped += 1


class _BridgeDtlsTransport(RTCDtlsTransport):
    """RTCDtlsTransport whose decrypted packets go to the bridge, never to aiortc's parser."""

    def __init__(self, transport: RTCIceTransport, certificate: RTCCertificate,
                 owner: EndpointTransport) -> None:
        super().__init__(transport, [certificate])
        self._owner = owner

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self._owner.counters.rtp_received += 1
        self._owner.on_rtp(data, self._owner.time())

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self._owner.counters.rtcp_received += 1
        self._owner.on_rtcp(data, self._owner.time())


class EndpointTransport:
    """ICE + DTLS-SRTP for one endpoint (BUNDLE and rtcp-mux: one component, the shared ports).

    Lifecycle: `attach(udp_port, tcp_port)`, `local_description()` into the offer,
    `await connect(remote)` with the answer's transport, `send()` while connected,
    `await close()`. Decrypted media goes to `on_rtp(data, now)` / `on_rtcp(data, now)`;
    `on_closed(reason)` is called once if the remote side closes or the transport fails
    after it was connected (not after our own close()).
    """

    def __init__(
        self,
        certificate: RTCCertificate,
        on_rtp: RtpHandler,
        on_rtcp: RtpHandler,
        on_closed: Callable[[str], None] | None = None,
        *,
        label: str = "",
        egress: Egress | None = None,
    ) -> None:
        """`egress`: the bridge's, shared by its endpoints (what they send in one event-loop
        turn leaves in one call); without one, every packet is sent at once."""
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp
        self.on_closed = on_closed
        self.label = label
        self.counters = TransportCounters()
        self.last_receive = 0.0
        self.time: Callable[[], float] = asyncio.get_running_loop().time
        self._certificate = certificate
        # iceServers=[]: never aiortc's default (Google's STUN server); we gather ourselves.
        self._gatherer = RTCIceGatherer(iceServers=[])
        self._connection: Connection = self._gatherer._connection
        self._connection.ice_controlling = True
        # aioice fills and clears this dict in place; send() looks the pair up per packet.
        self._nominated: dict[int, CandidatePair] = self._connection._nominated
        self._ice = RTCIceTransport(self._gatherer)
        self._dtls = _BridgeDtlsTransport(self._ice, certificate, self)
        self._dtls.on("statechange", self._dtls_state_changed)
        self._candidates: list[IceCandidate] = []
        self._port = 0
        self._rx: Srtp | None = None
        self._pair: CandidatePair | None = None
        #: the way out: protects, follows the nominated pair (`_select_pair` when it
        #: changes), queues into the egress
        self.sink = Sink(egress if egress is not None else Egress(), self._nominated,
                         self._select_pair)
        self._state = "new"  # new -> gathered -> connecting -> connected -> closed | failed

    # --- setup -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def local_port(self) -> int:
        return self._port

    def attach(self, udp: UdpMediaPort, tcp: TcpMediaPort | None = None, *,
               announce: str = "") -> None:
        """Join the bridge's shared UDP port (and its ICE-TCP port) as this endpoint's
        host candidates (announced as `announce` when set): aioice gets one protocol object
        per port whose transport is a PortLink (bridge/mediaport.py), registered there under
        our ICE ufrag. Nothing is bound here."""
        if self._state != "new":
            raise RuntimeError(f"attach() in state {self._state}")
        connection = self._connection
        # The ufrag is the endpoint's name on the shared ports: longer than aioice's 4
        # characters (thousands of endpoints would collide), and unique on both ports.
        ufrag = random_string(UFRAG_LENGTH)
        while udp.demux.taken(ufrag) or (tcp is not None and tcp.demux.taken(ufrag)):
            ufrag = random_string(UFRAG_LENGTH)
        connection._local_username = ufrag  # the property has no setter
        candidates: list[Candidate] = []
        for port, preference in ((udp, 65535), (tcp, 0)):
            if port is None:
                continue
            protocol = _MediaProtocol(connection, self)
            host, number = port.local_addr
            kind = port.transport_name
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", kind, host), component=1,
                transport=kind, priority=candidate_priority(1, "host", preference),
                host=host, port=number, type="host",
                tcptype="passive" if kind == "tcp" else None,
            )  # fmt: skip
            protocol.connection_made(PortLink(port, protocol, ufrag, self.time))  # type: ignore[arg-type]
            connection._protocols.append(protocol)
            connection._local_candidates.append(protocol.local_candidate)
            candidates.append(protocol.local_candidate)
            if kind == "udp":
                self._port = number
        connection._local_candidates_start = True
        connection._local_candidates_end = True
        self._candidates = [_to_api_candidate(c, announce) for c in candidates]
        self.last_receive = self.time()
        self._state = "gathered"
        log.debug("endpoint %s: candidates %s", self.label, self._candidates)

    def local_description(self) -> TransportDescription:
        """Our side for the offer: full ICE, DTLS actpass (the browser answers active)."""
        params = self._gatherer.getLocalParameters()
        return TransportDescription(
            ice_ufrag=params.usernameFragment or "",
            ice_pwd=params.password or "",
            fingerprints=certificate_fingerprints(self._certificate),
            setup="actpass",
            candidates=tuple(self._candidates),
            ice_lite=False,
        )

    async def connect(self, remote: TransportDescription) -> None:
        """Run ICE connectivity checks (controlling, regular nomination) and then the DTLS
        handshake. Returns once SRTP keys are in place; raises TransportFailed otherwise."""
        if self._state != "gathered":
            raise RuntimeError(f"connect() in state {self._state}")
        self._state = "connecting"
        for candidate in remote.candidates:
            if candidate.protocol.lower() != "udp" or candidate.host.endswith(".local"):
                # mDNS names are not resolved (no multicast from the bridge): the browser's
                # checks reach us anyway and teach us its peer-reflexive address.
                continue
            await self._ice.addRemoteCandidate(_to_aiortc_candidate(candidate))
        # No end-of-candidates: aioice would then fail at once on an empty check list (an
        # answer without candidates, or only mDNS ones), although the browser's own checks
        # are about to arrive and make peer-reflexive pairs. Failure is the endpoint's
        # "not connected within endpoint_timeout" instead.
        await self._ice.start(
            RTCIceParameters(
                usernameFragment=remote.ice_ufrag, password=remote.ice_pwd,
                iceLite=remote.ice_lite,
            )
        )
        if self._ice.state != "completed" or self._state != "connecting":
            self._state = "failed"
            raise TransportFailed("ICE failed")
        # Answer "active" (or an offer's "actpass"): the remote side is the DTLS client.
        role = "client" if remote.setup == "passive" else "server"
        self._dtls._set_role(role)
        await self._dtls.start(
            RTCDtlsParameters(
                fingerprints=[RTCDtlsFingerprint(f.algorithm, f.value)
                              for f in remote.fingerprints],
                role=role,
            )
        )
        if self._dtls.state != "connected" or self._state != "connecting":
            self._state = "failed"
            raise TransportFailed("DTLS failed")
        self._rx = srtp(self._dtls._rx_srtp)
        self.sink.set_tx(srtp(self._dtls._tx_srtp))
        self._select_pair()
        self._state = "connected"
        log.info("endpoint %s: connected via %s", self.label, self._pair)

    # --- media -------------------------------------------------------------------------

    def media_received(self, data: bytes, now: float) -> None:
        rx = self._rx
        if rx is None:
            self.counters.dropped += 1
            return
        rtcp = len(data) > 1 and 191 < data[1] < 224  # RTCP packet types 192-223 (RFC 5761)
        try:
            plain = rx.unprotect_rtcp(data) if rtcp else rx.unprotect(data)
        except (SrtpError, ValueError):  # authentication or replay check failed, too long
            self.counters.unprotect_errors += 1
            return
        if rtcp:
            self.counters.rtcp_received += 1
            self.on_rtcp(plain, now)
        else:
            self.counters.rtp_received += 1
            self.on_rtp(plain, now)

    def send(self, data: bytes) -> bool:
        """Protect plain RTP or RTCP and queue it for the nominated pair, without awaiting.
        False if it was not sent (not connected, no pair, or SRTP refused it: counted)."""
        return self.sink.send(data)

    def totals(self) -> TransportCounters:
        """The receiving side's counters with the sink's (what was sent, and dropped)."""
        return self.counters.add(self.sink.counters())

    def _select_pair(self) -> None:
        """Point the sink at aioice's nominated pair (the sink calls this when the pair it
        has is no longer the nominated one): the shared UDP socket's descriptor for a pair
        on it, otherwise the pair's own transport (ICE-TCP)."""
        pair = self._nominated.get(1)
        self._pair = pair
        if pair is None:
            self.sink.set_pair(None)
            return
        try:
            transport = pair.protocol.transport
            sock = transport.get_extra_info("socket") \
                if isinstance(pair.protocol, _MediaProtocol) else None
            self.sink.set_pair(pair, pair.remote_addr,
                               sock.fileno() if sock is not None else -1, transport.sendto)
        except Exception:  # never into the forwarder's fan-out: this endpoint sends nothing
            log.exception("endpoint %s: unusable ICE pair %s", self.label, pair)
            self.sink.set_pair(None)

    # --- teardown ----------------------------------------------------------------------

    def _dtls_state_changed(self) -> None:
        state = self._dtls.state
        if state in ("closed", "failed") and self._state == "connected":
            self._state = "failed"
            self._rx = None
            self.sink.set_tx(None)
            log.info("endpoint %s: DTLS %s by the remote side", self.label, state)
            if self.on_closed is not None:
                self.on_closed(f"DTLS {state}")

    async def close(self) -> None:
        """Close DTLS (close_notify if it was up), then ICE (its attachments and tasks)."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._rx = None
        self._pair = None
        self.sink.close()
        try:
            await self._dtls.stop()
        finally:
            await self._ice.stop()
            self._dtls.remove_all_listeners()
        log.debug("endpoint %s: transport closed", self.label)

    def open_sockets(self) -> int:
        """Attachments to the shared ports still held by the ICE agent (0 after close();
        for leak checks)."""
        return len(self._connection._protocols)


def _to_api_candidate(c: Candidate, announce: str = "") -> IceCandidate:
    return IceCandidate(
        foundation=c.foundation, component=c.component, protocol=c.transport.lower(),
        priority=c.priority, host=announce or c.host, port=c.port, type=c.type,
        related_address=c.related_address, related_port=c.related_port, tcptype=c.tcptype,
    )


def _to_aiortc_candidate(c: IceCandidate) -> RTCIceCandidate:
    return RTCIceCandidate(
        component=c.component, foundation=c.foundation, ip=c.host, port=c.port,
        priority=c.priority, protocol=c.protocol, type=c.type,
        relatedAddress=c.related_address, relatedPort=c.related_port,
    )
