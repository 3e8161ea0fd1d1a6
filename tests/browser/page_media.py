"""What a meeting page sends and receives, read out of the page (for the browser tests).

- `rtp_stats(page)`: the page's inbound/outbound RTP figures from getStats().
- `remote_tracks(page)`: the page's own map of its live remote sources, by mid.
- `remote_media(browser, page)`: every live remote source of the page with its sender (from
  the applied offer's `a=msid` and the server's `tracks` map) and its inbound-rtp figures.
- `install_audio_probe(page)` / `inbound_audio(page)`: what the page receives from each
  remote participant as audio samples (WebAudio: the remote track into an AnalyserNode at
  16 kHz, its last 2 s), to measure in Python (dominant frequency, band energies).

`browser_harness` (which drives Chromium) re-exports all of it; the tests import it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from playwright.sync_api import Page

if TYPE_CHECKING:
    from browser_harness import Browser


_STATS_JS = """
async () => {
  const pc = window.switchboard && window.switchboard.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const out = {inbound: [], outbound: [], connectionState: pc.connectionState};
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out.inbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
        packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0,
        audioLevel: s.audioLevel ?? null, totalAudioEnergy: s.totalAudioEnergy ?? null,
        framesDecoded: s.framesDecoded ?? null, packetsLost: s.packetsLost ?? 0});
    } else if (s.type === 'outbound-rtp') {
      out.outbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
        packetsSent: s.packetsSent ?? 0, bytesSent: s.bytesSent ?? 0,
        framesEncoded: s.framesEncoded ?? null});
    }
  });
  return out;
}
"""


def rtp_stats(page: Page) -> dict[str, Any] | None:
    """{inbound: [...], outbound: [...], connectionState} or None before the meeting starts.
    Each inbound entry: kind, mid, ssrc, packetsReceived, bytesReceived, audioLevel,
    totalAudioEnergy, framesDecoded, packetsLost."""
    result: dict[str, Any] | None = page.evaluate(_STATS_JS)
    return result


def remote_tracks(page: Page) -> dict[str, dict[str, Any]]:
    """mid -> {participant, kind, video_type} of the page's live remote sources."""
    result: dict[str, dict[str, Any]] = page.evaluate(
        """() => {
          const m = window.switchboard && window.switchboard.meeting.media;
          if (!m) return {};
          const out = {};
          for (const [mid, e] of m.remote) {
            out[mid] = {participant: e.participant, kind: e.kind, video_type: e.video_type};
          }
          return out;
        }"""
    )
    return result


_REMOTE_JS = """
async () => {
  const pc = window.switchboard && window.switchboard.pc;
  if (!pc || !pc.remoteDescription) return null;
  const report = await pc.getStats();
  const inbound = [];
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    inbound.push({kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc,
      packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0,
      audioLevel: s.audioLevel ?? null, totalAudioEnergy: s.totalAudioEnergy ?? null,
      framesDecoded: s.framesDecoded ?? null, frameWidth: s.frameWidth ?? null});
  });
  return {sdp: pc.remoteDescription.sdp, inbound, state: pc.connectionState};
}
"""


@dataclass(frozen=True)
class RemoteSource:
    """One receive m-line of the applied offer that is live (a=sendonly from the server)."""
    mid: str
    kind: str  # "audio" | "video"
    participant: str  # the sender: a=msid's stream id in the SDP
    tracks_participant: str | None  # the sender by the offer's `tracks` map
    video_type: str | None  # "camera" | "screen" from `tracks`, None for audio
    ssrcs: frozenset[int]
    packets: int  # inbound-rtp packetsReceived of the SDP's SSRC (0 before the first packet)
    audio_level: float
    audio_energy: float
    frames: int  # framesDecoded


def _sdp_sections(sdp: str) -> list[dict[str, Any]]:
    sections = []
    for text in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = text.split("\n")
        attrs = [line[2:] for line in lines if line.startswith("a=")]
        mid = next((a[4:] for a in attrs if a.startswith("mid:")), None)
        msid = next((a[5:].split()[0] for a in attrs if a.startswith("msid:")), None)
        direction = next((a for a in attrs if a in
                          ("sendrecv", "sendonly", "recvonly", "inactive")), "sendrecv")
        ssrcs = {int(a[5:].split()[0]) for a in attrs if a.startswith("ssrc:")}
        port = lines[0].split()[1] if len(lines[0].split()) > 1 else "0"
        sections.append({"mid": mid, "kind": lines[0].split()[0], "msid": msid,
                         "direction": direction, "ssrcs": ssrcs, "port": port})
    return sections


def _sdp_version(sdp: str) -> int | None:
    for line in sdp.splitlines():
        if line.startswith("o="):
            parts = line.split()
            return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    return None


def remote_media(browser: Browser, page: Page) -> list[RemoteSource]:
    """The page's live remote sources: mids the server's applied offer sends (a=sendonly),
    each with its sender from a=msid, the `tracks` map of the offer with that revision (as
    Playwright saw it on the socket), and the inbound-rtp stats of the m-line's SSRC."""
    raw: dict[str, Any] | None = page.evaluate(_REMOTE_JS)
    if raw is None:
        return []
    version = _sdp_version(raw["sdp"])
    offers = browser.messages(page, "offer")
    offer = next((o for o in reversed(offers) if o.get("revision") == version),
                 offers[-1] if offers else {})
    tracks: dict[str, Any] = offer.get("tracks") or {}
    out = []
    for section in _sdp_sections(raw["sdp"]):
        if section["direction"] != "sendonly" or section["port"] == "0" or not section["mid"]:
            continue
        stats = [s for s in raw["inbound"] if s["ssrc"] in section["ssrcs"]]
        stat: dict[str, Any] = max(stats, key=lambda s: s["packetsReceived"], default={})
        info = tracks.get(section["mid"]) or {}
        out.append(RemoteSource(
            mid=section["mid"], kind=section["kind"], participant=str(section["msid"]),
            tracks_participant=info.get("participant"), video_type=info.get("video_type"),
            ssrcs=frozenset(section["ssrcs"]), packets=int(stat.get("packetsReceived") or 0),
            audio_level=float(stat.get("audioLevel") or 0.0),
            audio_energy=float(stat.get("totalAudioEnergy") or 0.0),
            frames=int(stat.get("framesDecoded") or 0),
        ))
    return out


# -- what the page hears from each remote participant -----------------------------------------

PROBE_RATE = 16000
PROBE_FFT = 32768  # AnalyserNode's largest: 2.048 s at 16 kHz

# Every 100 ms each live remote audio source (meeting.media.remote) gets a source node ->
# AnalyserNode (-> a muted gain -> destination, so it is pulled) in one AudioContext at
# PROBE_RATE; gone sources are disconnected. read(): per participant, the last PROBE_FFT
# samples. (The page's <audio> elements keep playing the tracks, which Chromium needs.)
_PROBE_JS = """
([rate, fftSize]) => {
  if (window.__audioProbe) return true;
  const ctx = new AudioContext({sampleRate: rate});
  const sink = ctx.createGain();
  sink.gain.value = 0;
  sink.connect(ctx.destination);
  const nodes = new Map();  // mid -> {participant, track, source, analyser, since}
  const scan = () => {
    const media = window.switchboard && window.switchboard.meeting.media;
    const live = new Set();
    if (media) {
      for (const [mid, e] of media.remote) {
        if (e.kind !== 'audio' || !e.track || e.track.readyState !== 'live') continue;
        live.add(mid);
        const known = nodes.get(mid);
        if (known && known.track === e.track && known.participant === e.participant) continue;
        if (known) { known.source.disconnect(); known.analyser.disconnect(); }
        const source = ctx.createMediaStreamSource(new MediaStream([e.track]));
        const analyser = ctx.createAnalyser();
        analyser.fftSize = fftSize;
        analyser.smoothingTimeConstant = 0;
        source.connect(analyser);
        analyser.connect(sink);
        nodes.set(mid, {participant: e.participant, track: e.track, source, analyser,
                        since: performance.now()});
      }
    }
    for (const [mid, n] of nodes) {
      if (!live.has(mid)) { n.source.disconnect(); n.analyser.disconnect(); nodes.delete(mid); }
    }
    if (ctx.state === 'suspended') ctx.resume();
  };
  setInterval(scan, 100);
  scan();
  window.__audioProbe = {
    read() {
      const out = {};
      for (const [mid, n] of nodes) {
        const buf = new Float32Array(n.analyser.fftSize);
        n.analyser.getFloatTimeDomainData(buf);
        out[n.participant] = {mid, rate: ctx.sampleRate, state: ctx.state,
          age_ms: performance.now() - n.since,
          samples: Array.from(buf, (x) => Math.round(x * 32768))};
      }
      return out;
    },
  };
  return true;
}
"""


@dataclass(frozen=True)
class InboundAudio:
    """The last `samples.size / rate` seconds a page received from one participant."""
    participant: str
    mid: str
    rate: int
    age_s: float  # how long the probe has listened to this source
    samples: npt.NDArray[np.float64]  # in [-1, 1)

    def recent(self, seconds: float) -> npt.NDArray[np.float64]:
        """The newest `seconds` (all if it has not listened that long)."""
        keep = round(min(seconds, self.age_s) * self.rate)
        return self.samples[-keep:] if keep > 0 else self.samples[:0]


def install_audio_probe(page: Page) -> None:
    """Start listening to every remote audio source of the page (idempotent)."""
    page.evaluate(_PROBE_JS, [PROBE_RATE, PROBE_FFT])


def inbound_audio(page: Page) -> dict[str, InboundAudio]:
    """participant id -> what the page received from them in the last 2 s (install the
    probe first; a source it has listened to for less than that is padded with zeros at the
    start: use `recent()`)."""
    raw: dict[str, Any] | None = page.evaluate(
        "() => window.__audioProbe ? window.__audioProbe.read() : null")
    if raw is None:
        raise AssertionError("the audio probe is not installed in this page")
    out = {}
    for participant, entry in raw.items():
        if entry["state"] != "running":
            raise AssertionError(f"the probe's AudioContext is {entry['state']}, not running")
        samples = np.asarray(entry["samples"], dtype=np.float64) / 32768.0
        out[participant] = InboundAudio(participant, str(entry["mid"]), int(entry["rate"]),
                                        float(entry["age_ms"]) / 1000.0, samples)
    return out
