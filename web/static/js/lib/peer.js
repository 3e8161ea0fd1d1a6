// One RTCPeerConnection to the bridge. The server sends every offer; we answer.
//
// m-lines a0 / v0 / s0 are our sending slots (microphone, camera, screen): the server offers
// them recvonly and we answer sendonly with a track, or inactive. Every other m-line carries
// another participant's source; the offer's `tracks` says whose (mid -> {participant, kind,
// video_type}). Whenever a slot gains or loses its track after an answer, we ask for a new
// offer (`renegotiate`); a track replaced by another of the same slot needs no new offer.
//
// Events: 'remote' (the remote sources changed: this.remote), 'state' (connection state).

export const SLOTS = Object.freeze(['a0', 'v0', 's0']);
const RENEGOTIATE_RETRY_MS = 5000;
const GATHER_TIMEOUT_MS = 2000;

// Packets come every 20 ms: a source with none for 150 ms has stopped (the speaking
// indicator must go off within half a second of that).
const LEVEL_FRESH_MS = 150;

/**
 * True when an RTCRtpSynchronizationSource timestamp is recent. The specification has moved
 * its time base (wall clock since 1970, then the page's performance time origin): a value
 * past 1e12 is compared with Date.now(), a smaller one with performance.now().
 */
export function isFresh(timestamp, fresh = LEVEL_FRESH_MS) {
  if (typeof timestamp !== 'number') return true;
  const now = timestamp > 1e12 ? Date.now() : performance.now();
  return now - timestamp <= fresh;
}

/** The mids whose m-line is a=inactive (or port 0) in an SDP. */
export function inactiveMids(sdp) {
  const inactive = new Set();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = /\r?\na=mid:(\S+)/.exec(`\n${section}`);
    if (!mid) continue;
    const portZero = /^\S+ 0 /.test(section);
    if (portZero || /\r?\na=inactive/.test(`\n${section}`)) inactive.add(mid[1]);
  }
  return inactive;
}

export class MediaSession extends EventTarget {
  /**
   * @param {{iceServers: RTCIceServer[], local: import('./media.js').LocalMedia,
   *          send: (type: string, fields?: object) => boolean}} options
   */
  constructor({ iceServers, local, send }) {
    super();
    this.local = local;
    this.send = send;
    this.pc = new RTCPeerConnection({
      iceServers: Array.isArray(iceServers) ? iceServers : [],
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.queue = Promise.resolve();
    this.revision = -1;
    this.answered = { a0: false, v0: false, s0: false };
    this.askedAt = 0;
    this.remote = new Map(); // mid -> {mid, participant, kind, video_type, track, receiver}
    this.closed = false;
    this.pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('state', { detail: this.pc.connectionState }));
    });
    // Remote tracks are matched to participants after each answer (reconcile), where the
    // offer's `tracks` is at hand; 'track' events only trigger that for late arrivals.
    this.pc.addEventListener('track', () => this.dispatchEvent(new Event('remote')));
  }

  get connectionState() {
    return this.pc.connectionState;
  }

  wanted() {
    return { a0: this.local.mic, v0: this.local.cam, s0: this.local.screen };
  }

  transceiver(mid) {
    return this.pc.getTransceivers().find((t) => t.mid === mid) || null;
  }

  /** Queue one server offer: {sdp, revision, tracks}. */
  handleOffer(offer) {
    this.enqueue(() => this.applyOffer(offer));
  }

  /** The local tracks changed: replace senders' tracks, or ask for a new offer. */
  sync() {
    this.enqueue(() => this.syncSenders());
  }

  enqueue(job) {
    this.queue = this.queue.then(job).catch((err) => {
      console.error('media: negotiation failed', err);
      this.dispatchEvent(new CustomEvent('error', { detail: err }));
    });
  }

  async applyOffer({ sdp, revision, tracks }) {
    if (this.closed) return;
    if (typeof sdp !== 'string' || !Number.isInteger(revision)) return;
    if (revision <= this.revision) return; // an older offer than one already answered
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    const wanted = this.wanted();
    for (const slot of SLOTS) {
      const t = this.transceiver(slot);
      if (!t || t.stopped) continue;
      const track = wanted[slot] || null;
      t.direction = track ? 'sendonly' : 'inactive';
      if (t.sender.track !== track) await t.sender.replaceTrack(track);
    }
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await this.gathered();
    this.revision = revision;
    for (const slot of SLOTS) {
      const t = this.transceiver(slot);
      this.answered[slot] = Boolean(t && t.direction === 'sendonly');
    }
    this.askedAt = 0;
    this.send('answer', { sdp: this.pc.localDescription.sdp, revision });
    this.reconcile(tracks || {}, inactiveMids(sdp));
    await this.syncSenders(); // the local tracks may have changed while we negotiated
  }

  /** The server does not trickle: wait (bounded) for our candidates to be in the answer. */
  gathered() {
    if (this.pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        window.clearTimeout(timer);
        this.pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const check = () => { if (this.pc.iceGatheringState === 'complete') done(); };
      const timer = window.setTimeout(done, GATHER_TIMEOUT_MS);
      this.pc.addEventListener('icegatheringstatechange', check);
    });
  }

  reconcile(tracks, inactive) {
    const next = new Map();
    for (const t of this.pc.getTransceivers()) {
      const mid = t.mid;
      if (!mid || SLOTS.includes(mid) || t.stopped) continue;
      const info = Object.prototype.hasOwnProperty.call(tracks, mid) ? tracks[mid] : null;
      if (!info || typeof info !== 'object' || inactive.has(mid)) continue;
      if (t.currentDirection === 'inactive' || t.currentDirection === 'sendonly') continue;
      next.set(mid, {
        mid,
        participant: String(info.participant),
        kind: info.kind === 'video' ? 'video' : 'audio',
        video_type: info.video_type === 'screen' ? 'screen' : info.kind === 'video' ? 'camera' : null,
        track: t.receiver.track,
        receiver: t.receiver,
      });
    }
    this.remote = next;
    this.dispatchEvent(new Event('remote'));
  }

  async syncSenders() {
    if (this.closed || this.revision < 0) return;
    const wanted = this.wanted();
    let needOffer = false;
    for (const slot of SLOTS) {
      const t = this.transceiver(slot);
      if (!t || t.stopped) continue;
      const track = wanted[slot] || null;
      if (Boolean(track) === this.answered[slot]) {
        if (t.sender.track !== track) await t.sender.replaceTrack(track);
      } else {
        needOffer = true;
        if (!track && t.sender.track) await t.sender.replaceTrack(null);
      }
    }
    const now = Date.now();
    if (needOffer && (!this.askedAt || now - this.askedAt > RENEGOTIATE_RETRY_MS)) {
      this.askedAt = now;
      this.send('renegotiate');
    }
  }

  /** {participantId: {audio: [entry], camera: entry|null, screen: entry|null}} */
  byParticipant() {
    const out = new Map();
    for (const entry of this.remote.values()) {
      if (!out.has(entry.participant)) out.set(entry.participant, { audio: [], camera: null, screen: null });
      const slot = out.get(entry.participant);
      if (entry.kind === 'audio') slot.audio.push(entry);
      else if (entry.video_type === 'screen') slot.screen = entry;
      else slot.camera = entry;
    }
    return out;
  }

  /**
   * Audio level per participant (0..1) from the RTP audio-level header extension, as the
   * browser reports it per source; null when the browser gives none (use getStats then).
   *
   * A source stays in getSynchronizationSources() for 10 s after its last packet, with the
   * level of that packet: a sender whose packets stop (left, moderator-muted, track removed)
   * would look like it still talks for 10 s. Only entries younger than LEVEL_FRESH_MS count.
   */
  remoteLevels() {
    const levels = new Map();
    let supported = false;
    for (const entry of this.remote.values()) {
      if (entry.kind !== 'audio' || typeof entry.receiver.getSynchronizationSources !== 'function') continue;
      supported = true;
      for (const src of entry.receiver.getSynchronizationSources()) {
        if (typeof src.audioLevel !== 'number' || !isFresh(src.timestamp)) continue;
        levels.set(entry.participant, Math.max(levels.get(entry.participant) || 0, src.audioLevel));
      }
    }
    return supported ? levels : null;
  }

  getStats() {
    return this.pc.getStats();
  }

  close() {
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
    this.remote = new Map();
  }
}
