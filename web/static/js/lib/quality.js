// Connection quality from our own getStats() (and the bridge's `quality` messages).
//
// sample(report, now) turns two successive reports into rates: bitrate in and out (bit/s),
// loss (fraction of expected packets lost, in and out), round-trip time (ms), and per-
// participant audio levels from inbound-rtp (fallback for browsers without per-source levels).

export class QualityMeter {
  constructor() {
    this.prev = null;
    this.latest = null;
  }

  /** @param {RTCStatsReport} report @param {number} now milliseconds */
  sample(report, now, remoteByMid = new Map()) {
    const totals = { bytesIn: 0, bytesOut: 0, packetsIn: 0, lostIn: 0, audioLevels: new Map() };
    let rtt = null;
    let lossOut = null;
    let availableOut = null;
    let selectedPair = null;
    const pairs = [];
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) selectedPair = s.selectedCandidatePairId;
      if (s.type === 'candidate-pair') pairs.push(s);
      if (s.type === 'inbound-rtp') {
        totals.bytesIn += s.bytesReceived || 0;
        totals.packetsIn += s.packetsReceived || 0;
        totals.lostIn += Math.max(0, s.packetsLost || 0);
        const entry = s.mid ? remoteByMid.get(s.mid) : null;
        if (entry && s.kind === 'audio' && typeof s.audioLevel === 'number') {
          const prev = totals.audioLevels.get(entry.participant) || 0;
          totals.audioLevels.set(entry.participant, Math.max(prev, s.audioLevel));
        }
      }
      if (s.type === 'outbound-rtp') totals.bytesOut += s.bytesSent || 0;
      if (s.type === 'remote-inbound-rtp' && typeof s.fractionLost === 'number') {
        lossOut = Math.max(lossOut || 0, s.fractionLost);
      }
    });
    const pair = pairs.find((p) => p.id === selectedPair)
      || pairs.find((p) => p.nominated && p.state === 'succeeded')
      || pairs.find((p) => p.selected);
    if (pair) {
      if (typeof pair.currentRoundTripTime === 'number') rtt = pair.currentRoundTripTime * 1000;
      if (typeof pair.availableOutgoingBitrate === 'number') availableOut = pair.availableOutgoingBitrate;
    }

    const result = {
      rttMs: rtt, bitrateIn: null, bitrateOut: null, lossIn: null, lossOut, availableOut,
      audioLevels: totals.audioLevels,
    };
    if (this.prev) {
      const seconds = (now - this.prev.now) / 1000;
      if (seconds > 0) {
        result.bitrateIn = Math.max(0, (totals.bytesIn - this.prev.bytesIn) * 8 / seconds);
        result.bitrateOut = Math.max(0, (totals.bytesOut - this.prev.bytesOut) * 8 / seconds);
        const received = totals.packetsIn - this.prev.packetsIn;
        const lost = totals.lostIn - this.prev.lostIn;
        result.lossIn = received + lost > 0 ? Math.max(0, lost) / (received + lost) : 0;
      }
    }
    this.prev = { now, ...totals };
    this.latest = result;
    return result;
  }
}

/** 'good' | 'fair' | 'poor' from round-trip time and loss (either view). */
export function qualityLevel({ rttMs, loss }) {
  const r = Number.isFinite(rttMs) ? rttMs : 0;
  const l = Number.isFinite(loss) ? loss : 0;
  if (r > 600 || l > 0.08) return 'poor';
  if (r > 250 || l > 0.02) return 'fair';
  return 'good';
}
