"""RTP and RTCP for one phone call leg: the thin asyncio adapter around ``gateway/media``.

One ``RtpSession`` owns two UDP sockets (RTP on an even port drawn at random by the
``PortAllocator``, RTCP on the next one) bound on the configured media address, and:

- strict, symmetric RTP (``gateway/media/rtp_source.py`` states the rules): media is taken
  only from the SDP host or the SIP source host (``sip_host``; a caller behind NAT), from
  anywhere only for a ``trusted`` peer. The first valid RTP packet (version 2, a payload type
  we expect) from such a host latches the leg to its source; another source takes over only
  after ``relatch_packets`` consecutive in-sequence packets of one SSRC while the latched
  source has been quiet for ``relatch_after`` seconds (NAT rebinding). Every other packet is
  counted (``rx_foreign``, ``rtcp_foreign``) and dropped before the jitter buffer and DTMF.
  Nothing (RTP, RTCP, DTMF events) is sent to an address that has not sent valid RTP,
  except to the SDP address when its host is the SIP source host or the peer is trusted:
  no reflection towards a third party an SDP names. RTCP follows the same rules.
- receive fast path: the common 12-byte header is read with one ``struct`` call and the
  payload goes straight into the jitter buffer; anything malformed is counted and dropped,
  no exception ever leaves ``datagram_received``.
- ``pull_frame(now)`` once per 20 ms tick: jitter buffer pop, decode, loss concealment;
  frames of ``sample_rate / 50`` samples at the codec's PCM rate (``sample_rate``: 8000
  for G.711, 16000 for G.722, 8000 or 16000 for Opus as its codec instance was built).
  The jitter buffer counts in RTP timestamp units with the codec's ``timestamp_step`` as
  its frame (160 ticks for G.711 and G.722, whose RTP clock is 8 kHz; 960 for Opus).
  Losses are concealed by the codec itself when it can (Opus: ``decode_lost``, with the
  in-band FEC of the next packet when it is already buffered), else by the generic
  concealer at the codec's rate.
- ``on_audio_packet(payload_type, payload, timestamp, marker)``, when set, sees every
  accepted audio packet from the phone before the jitter buffer (an Opus phone's payload
  can go to the bridge unchanged).
- ``send_payload(payload)`` once per 20 ms tick: our SSRC, sequence number and timestamp
  (advancing ``timestamp_step`` per call, sent or not), marker on the first packet after the
  start, a hold or a DTMF event. Nothing is sent while the remote side holds us.
- DTMF in (RFC 4733, ``on_dtmf(digit)`` once per digit) and out (``send_dtmf``). Events
  share the audio's SSRC, sequence numbers and timestamp base (RFC 4733 section 2.1), so
  their timestamps and durations are counted at the audio codec's RTP clock: 8000 for G.711
  and G.722, 48000 for Opus. (Phones commonly offer only telephone-event/8000 beside Opus;
  baresip, for one, then sends its events on the 48 kHz audio clock, as we do.)
- one periodic housekeeping callback (every ``check_interval`` s): media timeout
  (``on_timeout()`` once when no RTP came for ``media_timeout`` s while we expect it), RTCP
  SR/RR every ``rtcp_interval`` s.
- ``close()`` releases the port pair whatever else fails on the way (a ``finally``).
- SDES-SRTP (``set_srtp``): packets protected last before they leave, unprotected first
  when they come (a failed check is garbage, dropped); a plain leg pays one ``is None``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.media.codecs import AudioCodec
from gateway.media.dtmf import DtmfReceiver, DtmfStarted, digit_to_event, dtmf_packets
from gateway.media.jitterbuffer import JitterBuffer
from gateway.media.plc import FrameDecoder
from gateway.media.rtcp import parse_compound
from gateway.media.rtp import HEADER, RtpPacket
from gateway.media.rtp_source import SourcePolicy, Verdict
from gateway.media.stats import RtcpStats
from gateway.rtp_endpoint import Addr, RtpEndpoint, SessionCounters
from gateway.rtp_ports import PortAllocator, PortsExhausted
from native.sendbatch import SendBatch

__all__ = ["PortAllocator", "PortsExhausted", "RtpSession", "SessionCounters"]

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]

_AFTER_HEADER = struct.Struct("!BHII")     # M/PT, seq, ts, SSRC after the first octet
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
DTMF_GAP = 0.06                            # silence between queued digits, seconds


def _ignore_digit(digit: str) -> None:
    pass


def _ignore() -> None:
    pass


class RtpSession:
    """RTP/RTCP for one call leg. Create, ``await open()``, ``set_remote(...)``, ...,
    ``close()``."""

    def __init__(
        self,
        call_id: str,
        allocator: PortAllocator,
        bind_host: str = "127.0.0.1",
        *,
        sip_host: str,
        trusted: bool = False,
        media_timeout: float = 30.0,
        relatch_after: float = 3.0,
        relatch_packets: int = 5,
        rtcp_interval: float = 5.0,
        check_interval: float = 1.0,
        dtmf_duration_ms: int = 160,
    ) -> None:
        self.call_id = call_id
        self.bind_host = bind_host
        self.media_timeout = media_timeout
        self.rtcp_interval = rtcp_interval
        self.check_interval = check_interval
        self.dtmf_duration_ms = dtmf_duration_ms
        self.on_dtmf: Callable[[str], None] = _ignore_digit
        self.on_timeout: Callable[[], None] = _ignore
        #: (payload_type, payload, RTP timestamp, marker) of each accepted audio packet
        self.on_audio_packet: Callable[[int, bytes, int, bool], None] | None = None
        self.local_port = 0
        self.fileno = -1                          # the RTP socket's, for a SendBatch
        self.batch: SendBatch | None = None       # set: send_payload queues its packet there
        self.counters = SessionCounters()
        self.srtp_tx: Any = None                  # SDES-SRTP (pylibsrtp): None, plain RTP
        self.srtp_rx: Any = None
        self._allocator = allocator
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._check_handle: asyncio.TimerHandle | None = None
        self._closed = False
        # remote side
        self._codec: AudioCodec | None = None
        self._audio_pt = -1
        self._dtmf_pt = -1
        #: who may send us media, and where ours goes (strict RTP, no reflection)
        self.policy = SourcePolicy(sip_host, trusted=trusted, relatch_after=relatch_after,
                                   relatch_packets=relatch_packets)
        self._dest: Addr | None = None           # where RTP goes: policy.destination()
        self._sending = True
        self._expect_rtp = True
        # receive state
        self._jb: JitterBuffer | None = None
        self._decoder: FrameDecoder | None = None
        self._dtmf_rx = DtmfReceiver()
        self._last_rx: float | None = None       # last accepted RTP packet
        self._timeout_base = 0.0
        self._timed_out = False
        # send state (RFC 3550: random initial values)
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._step = 160
        self._marker_next = True
        self._stats = RtcpStats(self.ssrc, 8000, f"{secrets.token_hex(8)}@switchboard",
                                interval=rtcp_interval)
        # DTMF out
        self._dtmf_queue: deque[tuple[str, int]] = deque()
        self._dtmf_handle: asyncio.TimerHandle | None = None
        self._dtmf_active = False

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Take a port pair and bind both sockets; retries on ports taken by others."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        last_error: OSError | None = None
        for _ in range(min(self._allocator.size, 16)):
            port = self._allocator.take()
            try:
                rtp, _ = await loop.create_datagram_endpoint(
                    lambda: RtpEndpoint(self._on_rtp, self._internal_error, self.counters),
                    local_addr=(self.bind_host, port),
                )
            except OSError as exc:
                self._allocator.release(port)
                last_error = exc
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    lambda: RtpEndpoint(self._on_rtcp, self._internal_error, self.counters),
                    local_addr=(self.bind_host, port + 1),
                )
            except OSError as exc:
                rtp.close()
                self._allocator.release(port)
                last_error = exc
                continue
            if self._closed:                      # closed while the sockets were opening
                rtp.close()
                rtcp.close()
                self._allocator.release(port)
                raise OSError(f"call {self.call_id}: RTP session closed while opening")
            self._rtp = rtp
            self._rtcp = rtcp
            self.local_port = port
            self.fileno = rtp.get_extra_info("socket").fileno()
            break
        else:
            raise OSError(f"call {self.call_id}: no bindable RTP port pair") from last_error
        self._timeout_base = loop.time()
        self._check_handle = loop.call_later(self.check_interval, self._housekeeping)
        log.debug("call %s: RTP on %s:%d", self.call_id, self.bind_host, self.local_port)

    def close(self) -> None:
        """Send RTCP BYE, close both sockets, release the port. Idempotent; the port and
        the sockets are released whatever fails before."""
        if self._closed:
            return
        self._closed = True
        try:
            for handle in (self._check_handle, self._dtmf_handle):
                if handle is not None:
                    handle.cancel()
            self._check_handle = self._dtmf_handle = None
            dest = self.policy.rtcp_destination()
            if self._rtcp is not None and dest is not None and self._loop is not None:
                self._rtcp.sendto(self._rtcp_out(
                    self._stats.build_report(self._loop.time(), time.time(), bye=True)), dest)
        except Exception:
            log.warning("call %s: RTCP BYE not sent", self.call_id, exc_info=True)
        finally:
            try:
                for transport in (self._rtp, self._rtcp):
                    if transport is not None:
                        with contextlib.suppress(Exception):
                            transport.close()
            finally:
                self._rtp = self._rtcp = None
                if self.local_port:
                    self._allocator.release(self.local_port)
        log.debug("call %s: RTP session closed (%s)", self.call_id, self.counters)

    @property
    def closed(self) -> bool:
        return self._closed

    def set_srtp(self, tx: Any, rx: Any) -> None:
        """Encrypt what we send with ``tx`` and decrypt what comes with ``rx`` (pylibsrtp
        Sessions, gateway/media/sdes.py ``srtp_sessions``); both None: plain RTP."""
        self.srtp_tx, self.srtp_rx = tx, rx

    # --- configuration from SDP -------------------------------------------------------

    def set_remote(
        self,
        host: str,
        port: int,
        codec: AudioCodec,
        dtmf_pt: int | None = None,
        rtcp_port: int | None = None,
    ) -> None:
        """Where the remote wants media (from its SDP) and what we agreed on.

        ``host`` must be a numeric IP of the session's family (the service resolves or
        refuses anything else). Called again after a re-INVITE: a new address drops the
        latch (the strict RTP rules start again), a new codec restarts the jitter buffer."""
        self.policy.set_sdp(host, port, rtcp_port)
        self._dest = self.policy.destination()
        old = self._codec
        if old is not None and _same_codec(old, codec):
            codec = old                          # keep the running decoder state
        self._codec = codec
        self._audio_pt = codec.payload_type
        self._dtmf_pt = -1 if dtmf_pt is None else dtmf_pt
        if (old is None or old.name != codec.name or old.clock_rate != codec.clock_rate
                or old.sample_rate != codec.sample_rate):
            ticks = getattr(codec, "packet_ticks", None)
            self._jb = JitterBuffer(codec.clock_rate, codec.timestamp_step, codec.bytes_per_tick,
                                    packet_ticks=ticks if callable(ticks) else None)
            self._decoder = FrameDecoder(codec)
            self._dtmf_rx = DtmfReceiver(codec.clock_rate)
            self._step = codec.timestamp_step
            self._stats.clock_rate = codec.clock_rate
            self._stats.sender.clock_rate = codec.clock_rate
            self._marker_next = True
        elif self._decoder is not None:
            self._decoder.use(codec)
        self._timeout_base = self._now()
        log.info("call %s: remote media %s:%d %r dtmf=%s", self.call_id, host, port, codec,
                 dtmf_pt)

    def set_remote_direction(self, direction: str) -> None:
        """The direction attribute of the remote's SDP: "sendonly" or "inactive" (the remote
        holds us) stop our sending; "recvonly" or "inactive" mean no RTP is expected (no
        media timeout)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown SDP direction {direction!r}")
        sending = direction in ("sendrecv", "recvonly")
        if sending and not self._sending:
            self._marker_next = True
        if sending != self._sending:
            log.info("call %s: remote is %s, %s sending", self.call_id, direction,
                     "resume" if sending else "stop")
        self._sending = sending
        self._expect_rtp = direction in ("sendrecv", "sendonly")
        self._timeout_base = self._now()
        self._timed_out = False

    @property
    def leg_id(self) -> str:
        """The call id: with ``codec_name``, ``pull_frame`` and ``send_payload`` this makes the
        session usable as a ``gateway.mixer.MixerLeg``."""
        return self.call_id

    @property
    def codec(self) -> AudioCodec | None:
        return self._codec

    @property
    def codec_name(self) -> str:
        return self._codec.name if self._codec is not None else ""

    @property
    def sample_rate(self) -> int:
        """The PCM rate of ``pull_frame``'s frames and of what the payloads given to
        ``send_payload`` were encoded from (8000 until ``set_remote``)."""
        return self._codec.sample_rate if self._codec is not None else 8000

    @property
    def frame_samples(self) -> int:
        """Samples in one ``pull_frame`` frame: ``sample_rate / 50``."""
        return self._codec.frame_samples if self._codec is not None else 160

    @property
    def remote_addr(self) -> Addr | None:
        """Where RTP goes now: the latched source, else the SDP address when it may be sent
        to before it spoke (its host is the SIP source host, or the peer is trusted), else
        None."""
        return self._dest

    @property
    def sending(self) -> bool:
        return self._sending

    # --- receive ----------------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Addr) -> None:
        counters = self.counters
        if len(data) < 12 or self._closed:
            counters.rx_garbage += 1
            return
        rx = self.srtp_rx
        if rx is not None:
            if 192 <= data[1] <= 223:
                self._on_rtcp(data, addr)           # SRTCP multiplexed on the RTP port
                return
            try:
                data = rx.unprotect(data)
            except Exception:                       # authentication, replay: not theirs
                counters.rx_garbage += 1
                return
        first = data[0]
        if first == 0x80:
            second, seq, ts, ssrc = _AFTER_HEADER.unpack_from(data, 1)
            payload = data[12:]
        elif first >> 6 == 2:
            if 192 <= data[1] <= 223:
                self._on_rtcp(data, addr)           # RTCP multiplexed on the RTP port
                return
            try:
                packet = RtpPacket.parse(data)
            except ValueError:
                counters.rx_garbage += 1
                return
            second = packet.payload_type | (0x80 if packet.marker else 0)
            seq, ts, ssrc, payload = (
                packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload
            )
        else:
            counters.rx_garbage += 1
            return
        pt = second & 0x7F
        if pt != self._audio_pt and pt != self._dtmf_pt:
            if 192 <= second <= 223:
                self._on_rtcp(data, addr)
            else:
                counters.rx_unexpected_pt += 1
            return
        now = self._now()
        verdict = self.policy.on_rtp(addr, ssrc, seq, now)
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.FOREIGN:
                counters.rx_foreign += 1
                return
            self._on_latch(addr, verdict)
        counters.rx_packets += 1
        self._last_rx = now
        self._stats.on_rtp_received(ssrc, seq, ts, now)
        if pt == self._audio_pt:
            hook = self.on_audio_packet
            if hook is not None:
                try:
                    hook(pt, payload, ts, second > 127)
                except Exception:
                    self._internal_error()
            if self._jb is not None:
                self._jb.insert(ssrc, seq, ts, second > 127, payload, now)
            return
        counters.rx_dtmf += 1
        dtmf = self._dtmf_rx
        dtmf.receive(ts, second > 127, payload, now)
        while (event := dtmf.next_event()) is not None:
            if isinstance(event, DtmfStarted):
                log.info("call %s: DTMF: a digit (RFC 4733)", self.call_id)  # never which
                try:
                    self.on_dtmf(event.digit)
                except Exception:
                    log.exception("call %s: on_dtmf failed", self.call_id)

    def _on_latch(self, addr: Addr, verdict: Verdict) -> None:
        if verdict is Verdict.RELATCHED:
            self.counters.relatches += 1
            log.info("call %s: RTP source moved %s -> %s, latched again", self.call_id,
                     _fmt(self._dest), _fmt(addr))
        elif addr != self._dest:
            log.info("call %s: RTP latched to %s (SDP said %s)", self.call_id, _fmt(addr),
                     _fmt(self.policy.sdp_address))
        self._dest = addr

    def _on_rtcp(self, data: bytes, addr: Addr) -> None:
        if self._closed:
            return
        rx = self.srtp_rx
        try:
            if rx is not None:
                data = rx.unprotect_rtcp(data)
            packets = parse_compound(data)
        except Exception:                            # ValueError; SRTCP authentication
            self.counters.rtcp_garbage += 1
            return
        now = self._now()
        if not self.policy.on_rtcp(addr, now):
            self.counters.rtcp_foreign += 1
            return
        self.counters.rtcp_rx += 1
        self._stats.on_rtcp(packets, now, time.time())

    def pull_frame(self, now: float) -> Pcm | None:
        """The next 20 ms of decoded audio, ``frame_samples`` samples at ``sample_rate``
        (concealed on loss); None for silence."""
        jb = self._jb
        decoder = self._decoder
        if jb is None or decoder is None:
            return None
        pcm = decoder.frame(jb.pop(now))
        jb.played(pcm)  # (a spare frame is dropped after a quiet one)
        return pcm

    # --- send -------------------------------------------------------------------------

    def send_payload(self, payload: bytes) -> None:
        """Send one 20 ms frame encoded in the session's codec (dropped while held, while a
        DTMF event is going out, or before ``set_remote``)."""
        ts = self._ts
        self._ts = (ts + self._step) & 0xFFFFFFFF
        dest = self._dest
        if not self._sending or self._dtmf_active or dest is None or self._rtp is None:
            if not self._sending:
                self._marker_next = True
            return
        marker = self._marker_next
        self._marker_next = False
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        header = HEADER.pack(0x80, self._audio_pt | (0x80 if marker else 0), seq, ts, self.ssrc)
        packet = header + payload
        tx = self.srtp_tx
        if tx is not None:
            packet = tx.protect(packet)
        if self.batch is not None:  # the tick's packets leave together (native/sendbatch.py)
            self.batch.add(self, packet, dest)
        else:
            self._rtp.sendto(packet, dest)
        self.counters.tx_packets += 1
        self._stats.on_rtp_sent(ts, len(payload), self._now())

    def skip_frames(self, count: int) -> None:
        """``count`` frames' time went by without a frame sent (the media clock skipped
        ticks): the RTP timestamp moves on by as much, so the phone hears a gap where the
        time went, not a stream that has fallen behind the clock for good."""
        if count > 0:
            self._ts = (self._ts + count * self._step) & 0xFFFFFFFF
            self._marker_next = True

    def send_dtmf(self, digit: str, duration_ms: int | None = None) -> bool:
        """Queue one digit as RFC 4733 events; False if the remote did not offer
        telephone-event (send SIP INFO instead). ``ValueError`` for a non-digit."""
        digit_to_event(digit)   # ValueError for a non-digit
        if self._dtmf_pt < 0 or self._closed:
            return False
        self._dtmf_queue.append((digit, duration_ms or self.dtmf_duration_ms))
        if not self._dtmf_active:
            self._next_dtmf()
        return True

    def _next_dtmf(self) -> None:
        if not self._dtmf_queue or self._loop is None or self._closed:
            self._dtmf_active = False
            return
        digit, duration_ms = self._dtmf_queue.popleft()
        clock = self._codec.clock_rate if self._codec is not None else 8000
        packets = dtmf_packets(digit, duration_ms, clock_rate=clock)
        self._dtmf_active = True
        event_ts = self._ts
        start = self._loop.time()
        log.info("call %s: sending a DTMF digit", self.call_id)  # never which
        ticks = max(1, round(duration_ms / 20)) * clock // 50

        def step(index: int) -> None:
            self._dtmf_handle = None
            if self._closed or self._loop is None:
                return
            now = self._loop.time()
            while index < len(packets) and start + packets[index].offset <= now + 0.002:
                pkt = packets[index]
                self._send_event(pkt.payload, pkt.marker, event_ts)
                index += 1
            if index < len(packets):
                self._dtmf_handle = self._loop.call_at(start + packets[index].offset, step, index)
                return
            # the audio timestamp must move past the event
            if (self._ts - event_ts) & 0xFFFFFFFF < ticks:
                self._ts = (event_ts + ticks) & 0xFFFFFFFF
            self._marker_next = True
            self._dtmf_handle = self._loop.call_later(DTMF_GAP, self._next_dtmf)

        step(0)

    def _send_event(self, payload: bytes, marker: bool, event_ts: int) -> None:
        dest = self._dest
        if not self._sending or dest is None or self._rtp is None:
            return
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        header = HEADER.pack(0x80, self._dtmf_pt | (0x80 if marker else 0), seq, event_ts,
                             self.ssrc)
        packet = header + payload
        if self.srtp_tx is not None:
            packet = self.srtp_tx.protect(packet)
        self._rtp.sendto(packet, dest)
        self.counters.tx_dtmf += 1
        self._stats.on_rtp_sent(None, len(payload), self._now())

    def _rtcp_out(self, report: bytes) -> bytes:
        tx = self.srtp_tx
        return report if tx is None else tx.protect_rtcp(report)

    # --- housekeeping -----------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _housekeeping(self) -> None:
        self._check_handle = None
        if self._closed or self._loop is None:
            return
        now = self._loop.time()
        try:
            self._check(now)
        except Exception:
            self._internal_error()
        if not self._closed:
            self._check_handle = self._loop.call_later(self.check_interval, self._housekeeping)

    def _check(self, now: float) -> None:
        if (self.media_timeout > 0 and self._expect_rtp
                and self.policy.sdp_address is not None):
            last = max(self._last_rx or 0.0, self._timeout_base)
            if now - last >= self.media_timeout:
                if not self._timed_out:
                    self._timed_out = True
                    log.warning("call %s: no RTP for %.1f s", self.call_id, now - last)
                    self.on_timeout()
            else:
                self._timed_out = False
        self._dtmf_rx.handle_timer(now)
        while self._dtmf_rx.next_event() is not None:
            pass
        dest = self.policy.rtcp_destination()
        if self._rtcp is not None and dest is not None and self._stats.report_due(now):
            try:
                self._rtcp.sendto(self._rtcp_out(self._stats.build_report(now, time.time())),
                                  dest)
                self.counters.rtcp_tx += 1
            except OSError:
                self.counters.send_errors += 1

    def _internal_error(self) -> None:
        self.counters.internal_errors += 1
        if self.counters.internal_errors in (1, 100, 10000):
            log.exception("call %s: RTP session error (%d so far)", self.call_id,
                          self.counters.internal_errors)

    def stats(self) -> dict[str, float | int]:
        """Counters for logs and /api/stats: ours, the jitter buffer's and RTCP's."""
        out: dict[str, float | int] = dict(asdict(self.counters))
        if self._jb is not None:
            for key, value in asdict(self._jb.stats).items():
                out[f"jb_{key}"] = value
            out["jb_target_ms"] = self._jb.target_ms
        if self._decoder is not None:
            out["rx_undecodable"] = self._decoder.undecodable   # concealed instead
        sources = list(self._stats.sources.values())
        if sources:
            best = max(sources, key=lambda s: s.received)
            out["rx_lost"] = best.cumulative_lost
            out["rx_expected"] = best.expected
            out["rx_jitter_ms"] = round(best.jitter_ms, 2)
        if self._stats.rtt is not None:
            out["rtt_ms"] = round(self._stats.rtt * 1000, 1)
        return out


def _same_codec(a: AudioCodec, b: AudioCodec) -> bool:
    """The same negotiated codec again (a re-INVITE): the running instance is kept."""
    return (a.name == b.name and a.payload_type == b.payload_type
            and a.clock_rate == b.clock_rate and a.sample_rate == b.sample_rate)


def _fmt(addr: Addr | None) -> str:
    return "none" if addr is None else f"{addr[0]}:{addr[1]}"
