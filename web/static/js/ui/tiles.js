// The stage: one tile per participant (video or avatar, name, mic state, speaking, hand), laid
// out as large as the stage allows; a shared screen takes the stage with the tiles in a strip.
// A phone caller's tile is the same with no video: an avatar and a handset next to the name.
//
// Speaking: a tile is `.speaking` while its audio level is over SPEAKING_LEVEL (and for
// SPEAKING_HOLD_MS after, while its packets still come: a source with no fresh level is off at
// once), and for DOMINANT_SPEAKING_MS after the bridge names it the dominant speaker (the
// bridge only switches to someone who talks). The dominant speaker's tile is also `.dominant`
// until the bridge names someone else.

import { h, icon, avatar, colorFor, phoneIcon, PHONE_LABEL } from '../lib/dom.js';

const GAP = 10;
const MIN_ASPECT = 0.75;
const MAX_ASPECT = 1.9;
const SPEAKING_LEVEL = 0.015; // linear audio level, as RTCRtpSynchronizationSource gives it
// Levels are read every 100 ms (room.js LEVELS_EVERY_MS) and a source counts for 150 ms after
// its last packet (lib/peer.js LEVEL_FRESH_MS): the tile goes off within about 300 ms of the
// sound stopping (the hold and one read) or of the packets stopping (freshness and one read),
// on within one read of it starting: inside the half second issue 17 asks for.
const SPEAKING_HOLD_MS = 200;
const DOMINANT_SPEAKING_MS = 300;

export { SPEAKING_LEVEL };

/** How much a tile shape is worth: cameras are 16:9, and a squarer tile crops them more. */
function shapeWeight(aspect) {
  if (aspect >= 1.5) return 1;
  if (aspect >= 1.25) return 0.78;
  if (aspect >= 1) return 0.5;
  return 0.45;
}

/**
 * Tile size for n tiles in a W x H box. For each column count, a tile may take its whole
 * cell (aspect held between 3:4 and 1.9:1) or the largest 16:9 or 4:3 box inside it; the
 * largest area, weighted by shape, wins.
 */
export function bestLayout(n, width, height, gap = GAP) {
  let best = { w: 0, h: 0, cols: 1, score: 0 };
  if (n <= 0 || width <= 0 || height <= 0) return best;
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    const cw = (width - gap * (cols - 1)) / cols;
    const ch = (height - gap * (rows - 1)) / rows;
    if (cw <= 0 || ch <= 0) continue;
    const cell = Math.min(MAX_ASPECT, Math.max(MIN_ASPECT, cw / ch));
    for (const aspect of [cell, 16 / 9, 4 / 3]) {
      const w = Math.min(cw, ch * aspect);
      const h = w / aspect;
      const score = w * h * shapeWeight(aspect);
      if (score > best.score) best = { w, h, cols, score };
    }
  }
  return { w: Math.floor(best.w), h: Math.floor(best.h), cols: best.cols };
}

function attach(video, track) {
  const current = video.srcObject ? video.srcObject.getTracks()[0] : null;
  if (current === track) return;
  video.srcObject = track ? new MediaStream([track]) : null;
  if (track) video.play().catch(() => { /* autoplay of a muted video: retried on resize */ });
}

class Tile {
  constructor(id, onTrackState) {
    this.id = id;
    this.onTrackState = onTrackState;
    this.video = h('video', { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true;
    this.avatarBox = h('div', { class: 'tile-avatar' });
    this.hand = h('div', { class: 'tile-hand', hidden: true }, icon('hand'), h('span', {}, 'Hand raised'));
    this.badge = h('div', { class: 'tile-badge', hidden: true });
    this.micIcon = icon('mic-off', 'icon tile-mic off');
    this.bars = h('span', { class: 'speak-bars', 'aria-hidden': 'true' }, h('i'), h('i'), h('i'));
    this.kindIcon = phoneIcon('icon tile-kind', PHONE_LABEL); // in the label for phone callers only
    this.name = h('span', { class: 'tile-name' });
    this.label = h('div', { class: 'tile-label' }, this.micIcon, this.bars, this.name);
    this.el = h('div', { class: 'tile video-hidden', 'data-participant': id, role: 'group' },
      this.video, this.avatarBox, this.hand, this.badge, this.label);
    this.track = null;
    this.avatarKey = '';
    this.speakingUntil = -Infinity; // from its audio level
    this.dominantUntil = -Infinity; // from the bridge naming it the dominant speaker
    this.shown = 0;
    this.trackListener = () => this.onTrackState();
  }

  setTrack(track) {
    if (this.track === track) return;
    if (this.track) {
      this.track.removeEventListener('mute', this.trackListener);
      this.track.removeEventListener('unmute', this.trackListener);
    }
    this.track = track;
    if (track) {
      track.addEventListener('mute', this.trackListener);
      track.addEventListener('unmute', this.trackListener);
    }
    attach(this.video, track);
  }

  update(p, { isSelf, track, showVideo }) {
    const avatarKey = `${p.kind}|${p.name}|${p.avatar || ''}`;
    if (avatarKey !== this.avatarKey) {
      this.avatarKey = avatarKey;
      this.avatarBox.replaceChildren(avatar(p));
      this.avatarBox.style.setProperty('--avatar', colorFor(p.id));
    }
    this.setTrack(track);
    this.el.classList.toggle('video-hidden', !showVideo);
    this.el.classList.toggle('self', isSelf);
    const isPhone = p.kind === 'phone';
    this.el.classList.toggle('phone', isPhone);
    this.el.dataset.kind = isPhone ? 'phone' : 'browser';
    const label = isSelf ? `${p.name} (you)` : p.name;
    this.name.textContent = label;
    this.el.setAttribute('aria-label', [
      label, isPhone ? PHONE_LABEL : '', p.muted || !p.audio ? 'muted' : '',
      p.hand ? 'hand raised' : '',
    ].filter(Boolean).join(', '));
    const micOff = p.muted || !p.audio;
    this.micIcon.style.display = micOff ? '' : 'none';
    this.bars.style.display = micOff ? 'none' : '';
    if (isPhone && this.kindIcon.parentNode !== this.label) this.name.before(this.kindIcon);
    else if (!isPhone && this.kindIcon.parentNode) this.kindIcon.remove();
    this.hand.hidden = !p.hand;
    this.badge.hidden = !p.screen;
    this.badge.textContent = p.screen ? 'Presenting' : '';
  }

  /** Speaking while the level is over the threshold, and for a moment after (no flicker
   * between words); `present` false (no fresh level: its packets stopped): not speaking. */
  setLevel(level, now, present = true) {
    if (!present) this.speakingUntil = -Infinity;
    else if (level > SPEAKING_LEVEL) this.speakingUntil = Math.max(this.speakingUntil, now + SPEAKING_HOLD_MS);
    this.shown = Math.max(level, this.shown * 0.6);
    this.paintSpeaking(now);
  }

  /** The bridge just named this participant the dominant speaker: they are talking. */
  startedSpeaking(now) {
    this.dominantUntil = now + DOMINANT_SPEAKING_MS;
    this.shown = Math.max(this.shown, 0.1);
    this.paintSpeaking(now);
  }

  paintSpeaking(now) {
    this.el.classList.toggle('speaking', now < Math.max(this.speakingUntil, this.dominantUntil));
    this.el.style.setProperty('--lvl', Math.min(1, Math.sqrt(this.shown) * 1.6).toFixed(2));
  }

  get speaking() {
    return this.el.classList.contains('speaking');
  }
}

export class Stage {
  constructor({ stage, grid, screenArea, aloneHint }) {
    this.stageEl = stage;
    this.gridEl = grid;
    this.screenArea = screenArea;
    this.aloneHint = aloneHint;
    this.tiles = new Map();
    this.order = [];
    this.screenVideo = h('video', { autoplay: true, playsinline: true, muted: true });
    this.screenVideo.muted = true;
    this.screenLabel = h('div', { class: 'tile-label' });
    this.screenWait = h('p', { class: 'screen-wait', hidden: true });
    this.screenOwner = null;
    this.screenTrack = null;
    this.screenListener = () => this.rerender();
    this.lastInput = null;
    this.dominant = null;
    const observer = new ResizeObserver(() => this.layout());
    observer.observe(this.gridEl);
  }

  /**
   * @param {object} input
   * @param {object[]} input.participants everyone, self included, in roster order
   * @param {string} input.selfId
   * @param {Map<string, {camera, screen}>} input.media remote tracks by participant
   * @param {{cam: MediaStreamTrack|null, screen: MediaStreamTrack|null}} input.local
   */
  render(input) {
    this.lastInput = input;
    const { participants, selfId, media, local } = input;
    const seen = new Set();
    const ordered = [...participants].sort((a, b) => (a.id === selfId ? -1 : b.id === selfId ? 1 : 0));
    for (const p of ordered) {
      seen.add(p.id);
      let tile = this.tiles.get(p.id);
      if (!tile) {
        tile = new Tile(p.id, () => this.rerender());
        this.tiles.set(p.id, tile);
      }
      const isSelf = p.id === selfId;
      const remote = media.get(p.id);
      const track = isSelf ? local.cam : remote && remote.camera ? remote.camera.track : null;
      const showVideo = Boolean(track) && (isSelf || (p.video && !track.muted));
      tile.update(p, { isSelf, track, showVideo });
      tile.el.classList.toggle('dominant', p.id === this.dominant);
    }
    for (const [id, tile] of this.tiles) {
      if (!seen.has(id)) {
        tile.setTrack(null);
        tile.el.remove();
        this.tiles.delete(id);
      }
    }
    const els = ordered.map((p) => this.tiles.get(p.id).el);
    if (els.some((el, i) => this.gridEl.children[i] !== el) || this.gridEl.children.length !== els.length) {
      this.gridEl.replaceChildren(...els);
    }
    this.aloneHint.hidden = participants.length !== 1 || selfId === 'joining';
    this.renderScreen(participants, selfId, media, local);
    this.layout();
  }

  rerender() {
    if (this.lastInput) this.render(this.lastInput);
  }

  renderScreen(participants, selfId, media, local) {
    // A remote screen first; our own screen is not shown back to us (no hall of mirrors).
    let owner = null;
    let track = null;
    for (const p of participants) {
      const remote = p.id !== selfId ? media.get(p.id) : null;
      if (remote && remote.screen && p.screen !== false) {
        owner = p;
        track = remote.screen.track;
        break;
      }
    }
    if (!owner && local.screen) owner = participants.find((p) => p.id === selfId) || null;
    this.stageEl.classList.toggle('has-screen', Boolean(owner));
    this.screenArea.hidden = !owner;
    if (!owner) {
      this.watchScreen(null);
      attach(this.screenVideo, null);
      this.screenOwner = null;
      return;
    }
    const isSelf = owner.id === selfId;
    if (isSelf) {
      this.watchScreen(null);
      attach(this.screenVideo, null);
      this.screenArea.replaceChildren(h('div', { class: 'self-presenting' },
        icon('screen'), h('p', {}, 'You are presenting to everyone'),
        h('button', { class: 'btn btn-secondary', type: 'button', 'data-action': 'stop-screen' }, 'Stop presenting')));
    } else {
      this.watchScreen(track);
      attach(this.screenVideo, track);
      this.screenLabel.replaceChildren(icon('screen'), h('span', { class: 'tile-name' }, `${owner.name} is presenting`));
      this.screenWait.textContent = `Waiting for ${owner.name}'s screen…`;
      this.screenWait.hidden = !track.muted;
      if (this.screenVideo.parentNode !== this.screenArea) {
        this.screenArea.replaceChildren(this.screenVideo, this.screenWait, this.screenLabel);
      }
    }
    this.screenOwner = owner.id;
  }

  /** Re-render when the shared screen's frames start or stop (track mute / unmute). */
  watchScreen(track) {
    if (this.screenTrack === track) return;
    if (this.screenTrack) {
      this.screenTrack.removeEventListener('mute', this.screenListener);
      this.screenTrack.removeEventListener('unmute', this.screenListener);
    }
    this.screenTrack = track;
    if (track) {
      track.addEventListener('mute', this.screenListener);
      track.addEventListener('unmute', this.screenListener);
    }
  }

  layout() {
    if (this.stageEl.classList.contains('has-screen')) {
      this.gridEl.style.removeProperty('--tile-w');
      this.gridEl.style.removeProperty('--tile-h');
      return;
    }
    const hideSelf = this.stageEl.classList.contains('hide-self'); // ui/layout.js
    const n = [...this.gridEl.children].filter((el) => !(hideSelf && el.classList.contains('self'))).length;
    const { width, height } = this.gridEl.getBoundingClientRect();
    const gap = parseFloat(getComputedStyle(this.gridEl).rowGap) || GAP;
    const best = bestLayout(n, width, height, gap);
    this.gridEl.style.setProperty('--tile-w', `${best.w}px`);
    this.gridEl.style.setProperty('--tile-h', `${best.h}px`);
  }

  /** levels: Map participant id -> 0..1 (no entry: no fresh audio from it); dominant: id or
   * null. */
  setLevels(levels, dominant, now = performance.now()) {
    this.setDominant(dominant, now);
    for (const [id, tile] of this.tiles) tile.setLevel(levels.get(id) || 0, now, levels.has(id));
  }

  /** The bridge's dominant speaker (id or null), shown at once; a new one is speaking now. */
  setDominant(id, now = performance.now()) {
    const changed = id !== this.dominant;
    this.dominant = id || null;
    for (const [pid, tile] of this.tiles) {
      tile.el.classList.toggle('dominant', pid === this.dominant);
      if (changed && pid === this.dominant) tile.startedSpeaking(now);
    }
  }

  /** The ids whose tiles show the speaking indicator now. */
  speakingIds() {
    return new Set([...this.tiles].filter(([, tile]) => tile.speaking).map(([id]) => id));
  }
}
