"""An aiortc peer against the bridge, as the focus would set it up: the offer made from an
EndpointAllocation (Unified Plan, BUNDLE, rtcp-mux; "a0"/"v0" for the client's own audio and
video, then one sendonly m-line per source it receives), what the focus takes from the answer,
and a tone track. Shared by the bridge's integration tests (the fixture that keeps aioice on
loopback, `loopback_clients`, is in tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import av
import numpy as np
from aiortc import AudioStreamTrack
from aiortc.sdp import SessionDescription

from bridge.api import (
    DtlsFingerprint,
    EndpointAllocation,
    IceCandidate,
    MediaSource,
    ReceiveSource,
    TransportDescription,
)


def transport_lines(t: TransportDescription) -> list[str]:
    lines = [f"a=ice-ufrag:{t.ice_ufrag}", f"a=ice-pwd:{t.ice_pwd}"]
    lines += [f"a=fingerprint:{f.algorithm} {f.value}" for f in t.fingerprints]
    lines.append(f"a=setup:{t.setup}")
    for c in t.candidates:
        lines.append(f"a=candidate:{c.foundation} {c.component} {c.protocol} {c.priority} "
                     f"{c.host} {c.port} typ {c.type}"
                     + (f" tcptype {c.tcptype}" if c.tcptype else ""))
    lines.append("a=end-of-candidates")
    return lines


def codec_lines(alloc: EndpointAllocation, kind: str) -> tuple[list[int], list[str]]:
    pts: list[int] = []
    lines: list[str] = []
    audio = kind == "audio"
    for p in alloc.payload_types:
        if (p.name == "opus") != audio:
            continue
        pts.append(p.pt)
        suffix = f"/{p.channels}" if p.channels > 1 else ""
        lines.append(f"a=rtpmap:{p.pt} {p.name}/{p.clock_rate}{suffix}")
        if p.fmtp:
            lines.append(f"a=fmtp:{p.pt} {p.fmtp}")
        lines += [f"a=rtcp-fb:{p.pt} {fb}" for fb in p.rtcp_fb]
    for ext in alloc.header_extensions:
        if audio or "audio-level" not in ext.uri:
            lines.append(f"a=extmap:{ext.id} {ext.uri}")
    return pts, lines


def make_offer(alloc: EndpointAllocation, revision: int,
               receive: tuple[ReceiveSource, ...]) -> tuple[str, dict[str, ReceiveSource]]:
    """A Unified-Plan BUNDLE offer: a0, v0 (the client's sending slots), then r1.. (others)."""
    slots: list[tuple[str, str, str, ReceiveSource | None]] = [
        ("a0", "audio", "recvonly", None), ("v0", "video", "recvonly", None)]
    tracks: dict[str, ReceiveSource] = {}
    for i, rs in enumerate(receive, start=1):
        slots.append((f"r{i}", rs.source.kind, "sendonly", rs))
        tracks[f"r{i}"] = rs
    lines = ["v=0", f"o=- 4242 {revision} IN IP4 0.0.0.0", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(s[0] for s in slots), "a=msid-semantic: WMS *"]
    for mid, kind, direction, rs in slots:
        pts, media_lines = codec_lines(alloc, kind)
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF {' '.join(map(str, pts))}",
                  "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", f"a=mid:{mid}",
                  *transport_lines(alloc.transport), "a=rtcp-mux", f"a={direction}",
                  *media_lines]
        if rs is not None:
            src = rs.source
            stream, track = src.stream_id or src.endpoint_id, src.track_id or mid
            lines.append(f"a=msid:{stream} {track}")
            if rs.rtx_ssrc is not None:
                lines.append(f"a=ssrc-group:FID {rs.ssrc} {rs.rtx_ssrc}")
            for ssrc in (rs.ssrc, rs.rtx_ssrc):
                if ssrc is not None:
                    lines += [f"a=ssrc:{ssrc} cname:{src.endpoint_id}",
                              f"a=ssrc:{ssrc} msid:{stream} {track}"]
    return "\r\n".join(lines) + "\r\n", tracks


def parse_answer(sdp: str, endpoint_id: str) -> tuple[TransportDescription,
                                                      tuple[MediaSource, ...]]:
    """What the focus would take from the answer: the transport and the sources sent."""
    desc = SessionDescription.parse(sdp)
    first = desc.media[0]
    assert first.ice is not None and first.dtls is not None
    setup = {"client": "active", "server": "passive", "auto": "actpass"}[first.dtls.role]
    transport = TransportDescription(
        ice_ufrag=first.ice.usernameFragment or "", ice_pwd=first.ice.password or "",
        fingerprints=tuple(DtlsFingerprint(f.algorithm, f.value)
                           for f in first.dtls.fingerprints),
        setup=setup,
        candidates=tuple(
            IceCandidate(c.foundation, c.component, c.protocol.lower(), c.priority, c.ip,
                         c.port, c.type, c.relatedAddress, c.relatedPort)
            for c in first.ice_candidates),
    )
    sources: list[MediaSource] = []
    for media in desc.media:
        if media.rtp.muxId not in ("a0", "v0") or media.direction not in ("sendonly",
                                                                           "sendrecv"):
            continue
        fid = [g.items for g in media.ssrc_group if g.semantic == "FID"]
        main = int(fid[0][0]) if fid else media.ssrc[0].ssrc
        rtx = int(fid[0][1]) if fid else None
        stream, _, track = (media.msid or "- -").partition(" ")
        sources.append(MediaSource(
            endpoint_id=endpoint_id, kind="audio" if media.kind == "audio" else "video",
            ssrc=main, rtx_ssrc=rtx, video_type="camera" if media.kind == "video" else None,
            stream_id=stream, track_id=track))
    return transport, tuple(sources)


class ToneTrack(AudioStreamTrack):
    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced 20 ms of silence at 8 kHz
        t = (np.arange(frame.samples) + frame.pts) / frame.sample_rate
        tone = (8000 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame.planes[0].update(tone.tobytes())
        return frame


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
