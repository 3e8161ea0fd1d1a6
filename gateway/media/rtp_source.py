"""Strict RTP: where a phone leg takes media from and sends media to (sans-I/O).

``SourcePolicy`` decides for one leg; the time comes in as ``now``. The rules, in the order
a packet meets them:

1. Allowed hosts. A trusted peer (its SIP source is in ``sip.trusted_peers``: a PBX with
   separate media servers) may send from anywhere. Anyone else only from the host of the
   SDP ``c=`` address or from the host the SIP request came from (a caller behind NAT: its
   port may differ from the SDP's). A packet from any other host is foreign: the session
   counts it (``rx_foreign``) and drops it before the jitter buffer and DTMF see it.
2. Latch. The first valid RTP packet (the session has checked version and payload type)
   from an allowed host latches the leg to that packet's source, host and port. Packets
   from the latched source are accepted.
3. Relatch (NAT rebinding, a media server moving). A packet from another allowed source is
   dropped unless the latched source has been quiet for ``relatch_after`` seconds; then
   ``relatch_packets`` consecutive in-sequence packets of ONE SSRC from that ONE new source
   move the latch to it (the last of them is the first one accepted). Any break (another
   source, another SSRC, a sequence gap, the old source speaking again) starts the count
   over.
4. Where we send (no reflection): RTP, RTCP and DTMF events go to the latched source. Before
   anything latched, to the SDP address only when its host is the SIP source host or the
   peer is trusted; otherwise nothing is sent until the SDP or the NAT address has sent
   valid RTP. A new SDP address (a re-INVITE) drops the latch; the rules start again.
5. RTCP. Accepted from a source it has latched to, or from a new source when the RTCP
   source has been quiet for ``relatch_after`` seconds and its host has proved itself
   (it is the RTP-latched host or the SIP source host, or the peer is trusted); anything
   else is foreign. Our reports go to the RTCP source, else to the RTP-latched host's next
   port, else (as for RTP) to the SDP's RTCP address when that may be sent to at once.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Any

__all__ = ["SourcePolicy", "Verdict", "same_host"]

Addr = tuple[Any, ...]          # what asyncio gives: (host, port) or (host, port, flow, scope)


class Verdict(enum.Enum):
    ACCEPT = "accept"           # from the latched source
    LATCHED = "latched"         # the first acceptable packet: latched now, accepted
    RELATCHED = "relatched"     # the source moved (rule 3), accepted
    FOREIGN = "foreign"         # dropped


def _norm(host: str) -> str:
    """A host in one spelling: "::ffff:10.0.0.1" -> "10.0.0.1", "2001:DB8::1" -> "2001:db8::1"."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def same_host(a: str, b: str) -> bool:
    return a == b or _norm(a) == _norm(b)


class SourcePolicy:
    """The allowed sources, the latch and the destination of one leg (see the module)."""

    __slots__ = (
        "_candidate", "_last_rtcp_rx", "_last_rx", "_rtcp_source", "_sdp_host", "_sdp_norm",
        "_sdp_rtcp", "_sdp_rtp", "_sip_norm", "latched", "relatch_after", "relatch_packets",
        "sip_host", "trusted",
    )

    def __init__(self, sip_host: str, *, trusted: bool = False, relatch_after: float = 3.0,
                 relatch_packets: int = 5) -> None:
        if relatch_after < 0 or relatch_packets < 1:
            raise ValueError("expected relatch_after >= 0 and relatch_packets >= 1")
        self.sip_host = sip_host
        self.trusted = trusted
        self.relatch_after = relatch_after
        self.relatch_packets = relatch_packets
        self._sip_norm = _norm(sip_host)
        self._sdp_host: str | None = None
        self._sdp_norm: str | None = None
        self._sdp_rtp: Addr | None = None
        self._sdp_rtcp: Addr | None = None
        self.latched: Addr | None = None
        self._last_rx = 0.0
        # (source, ssrc, last sequence number, packets so far) of a would-be new source
        self._candidate: tuple[Addr, int, int, int] | None = None
        self._rtcp_source: Addr | None = None
        self._last_rtcp_rx = 0.0

    # --- the SDP ----------------------------------------------------------------------

    def set_sdp(self, host: str, port: int, rtcp_port: int | None = None) -> bool:
        """The remote's SDP address (a numeric IP; port 0: none). True when it changed: the
        latch is dropped then."""
        rtp: Addr | None = (host, port) if port else None
        rtcp: Addr | None = (host, rtcp_port or port + 1) if port else None
        changed = (host, rtp) != (self._sdp_host, self._sdp_rtp)
        self._sdp_host = host
        self._sdp_norm = _norm(host)
        self._sdp_rtp = rtp
        self._sdp_rtcp = rtcp
        if changed:
            self.latched = None
            self._candidate = None
            self._rtcp_source = None
        return changed

    @property
    def sdp_address(self) -> Addr | None:
        return self._sdp_rtp

    def allowed(self, host: str) -> bool:
        """Rule 1: may media come from this host at all?"""
        if self.trusted:
            return True
        if host == self.sip_host or host == self._sdp_host:
            return True
        norm = _norm(host)
        return norm == self._sip_norm or norm == self._sdp_norm

    # --- RTP in -----------------------------------------------------------------------

    def on_rtp(self, addr: Addr, ssrc: int, seq: int, now: float) -> Verdict:
        """Rules 1 to 3 for one valid RTP packet."""
        if addr == self.latched:
            self._last_rx = now
            self._candidate = None
            return Verdict.ACCEPT
        if not self.allowed(addr[0]):
            return Verdict.FOREIGN
        if self.latched is None:
            self._latch(addr, now)
            return Verdict.LATCHED
        if now - self._last_rx < self.relatch_after:
            self._candidate = None
            return Verdict.FOREIGN
        candidate = self._candidate
        if (candidate is not None and candidate[0] == addr and candidate[1] == ssrc
                and (candidate[2] + 1) & 0xFFFF == seq):
            count = candidate[3] + 1
        else:
            count = 1
        if count < self.relatch_packets:
            self._candidate = (addr, ssrc, seq, count)
            return Verdict.FOREIGN
        self._latch(addr, now)
        return Verdict.RELATCHED

    def _latch(self, addr: Addr, now: float) -> None:
        self.latched = addr
        self._last_rx = now
        self._candidate = None

    # --- RTCP in ----------------------------------------------------------------------

    def on_rtcp(self, addr: Addr, now: float) -> bool:
        """Rule 5: True to accept an RTCP packet from ``addr``."""
        if addr == self._rtcp_source:
            self._last_rtcp_rx = now
            return True
        if not self.allowed(addr[0]):
            return False
        if self._rtcp_source is not None and now - self._last_rtcp_rx < self.relatch_after:
            return False
        if not (self.trusted or same_host(addr[0], self.sip_host)
                or (self.latched is not None and same_host(addr[0], self.latched[0]))):
            return False
        self._rtcp_source = addr
        self._last_rtcp_rx = now
        return True

    # --- out --------------------------------------------------------------------------

    @property
    def sdp_confirmed(self) -> bool:
        """May we send to the SDP address before hearing from it (rule 4)?"""
        return (self._sdp_rtp is not None and self._sdp_host not in ("0.0.0.0", "::")
                and (self.trusted or self._sdp_norm == self._sip_norm))

    def destination(self) -> Addr | None:
        """Where RTP goes now; None: nowhere yet."""
        if self.latched is not None:
            return self.latched
        return self._sdp_rtp if self.sdp_confirmed else None

    def rtcp_destination(self) -> Addr | None:
        """Where our RTCP goes now; None: nowhere yet."""
        if self._rtcp_source is not None:
            return self._rtcp_source
        if self.latched is not None:
            return (self.latched[0], self.latched[1] + 1)
        return self._sdp_rtcp if self.sdp_confirmed else None
