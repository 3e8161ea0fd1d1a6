// The meeting page: pre-join, then the meeting over the signaling WebSocket
// (docs/signaling.md) and one RTCPeerConnection, then the end screen.

import { $, formatDuration } from './lib/dom.js';
import { LocalMedia, LevelMeter } from './lib/media.js';
import { MediaSession } from './lib/peer.js';
import { QualityMeter } from './lib/quality.js';
import { isRoomName } from './lib/rooms.js';
import { Signaling, signalingUrl, PROTOCOL_VERSION } from './lib/signaling.js';
import {
  rememberRoom, resumeToken, keepResumeToken, dropResumeToken, handOverResumeToken, takeHandedOverToken,
  otherNodes, prefs,
} from './lib/storage.js';
import { Chat } from './ui/chat.js';
import { confirmDialog } from './ui/dialogs.js';
import { wireControls } from './ui/controls.js';
import { showDialIn } from './ui/info.js';
import { renderPeople, markSpeaking } from './ui/people.js';
import { Prejoin } from './ui/prejoin.js';
import { QualityView } from './ui/quality.js';
import { Stage, SPEAKING_LEVEL } from './ui/tiles.js';
import { renderToolbar } from './ui/toolbar.js';
import { toast } from './ui/toasts.js';
import { showEnded, endReason } from './ui/ended.js';
import { takeToken, enterLobby, passwordThenRejoin, KnockingList, PolicyControls } from './ui/lobby.js';
import { CLOSE } from './lib/signaling.js';
import { RecordingControls } from './ui/recording.js';
import { DeviceMenus } from './ui/devices.js';
import { Social } from './ui/social.js';
import { ViewControls } from './ui/layout.js';
import { localMedia, meters } from './meeting_local.js';

const JOIN_TIMEOUT_MS = 10000;
const LEVELS_EVERY_MS = 100; // the speaking indicator: on and off within half a second
const STATS_EVERY_MS = 2000;
const RETRY_DELAYS_S = [2, 5, 10];
// In a cluster (`joined` listed other nodes): a room moving to another node (kill of its node,
// a drain) is back within seconds, so tries come sooner and go on longer.
const CLUSTER_RETRY_S = [1, 1, 1, 2, 2, 3, 5, 10];
const HEALTH_WAIT_MS = 1500;
// A node that stopped answering is declared dead by the others 3 s after its last heartbeat
// (cluster/logic.py DEAD_AFTER); until then they still name it as the room's host. The page
// moves to another node only once that has passed since it lost its own.
const NODE_DEAD_MS = 3500;
const PANEL_TITLES = { chat: 'Chat', people: 'Participants', info: 'Meeting details' };

class Meeting {
  constructor(room, token = null, { autojoin = false, fled = null } = {}) {
    this.room = room;
    this.autojoin = autojoin; // sent here by this tab's page on another node: no pre-join
    this.fled = fled; // the origin of the node that page found gone: never sent back there
    this.nodes = []; // a cluster's other nodes (their origins), from `joined`
    this.token = token; // from ?jwt=, sent only in `join` over the WebSocket
    this.password = null;
    this.joinErrorCode = null;
    this.local = new LocalMedia();
    this.name = '';
    this.camWanted = false;
    this.sig = null;
    this.media = null;
    this.view = 'prejoin';
    this.selfId = null;
    this.participants = new Map();
    this.dominant = null;
    this.dialIn = null;
    this.panel = null;
    this.unread = 0;
    this.levels = new Map();
    this.audioEls = new Map();
    this.timers = [];
    this.quality = new QualityMeter();
    this.statsCount = 0;
    this.joinedAt = 0;
    this.leaving = false;
    this.retry = 0;
    this.kickedBy = null;
    this.selfMeter = null;
    this.mutedTalkSince = 0;
    this.mutedHintAt = 0;
    this.stage = new Stage({ stage: $('#stage'), grid: $('#grid'), screenArea: $('#screen-area'), aloneHint: $('#alone-hint') });
    this.chat = new Chat({ log: $('#chat-log'), form: $('#chat-form'), input: $('#chat-input'), onSend: (text) => this.sendChat(text) });
    this.qualityView = new QualityView({ button: $('#quality-button'), label: $('#quality-label'), pop: $('#quality-pop') });
    this.local.addEventListener('change', () => this.onLocalChange());
    const send = (type, fields) => this.sig && this.sig.send(type, fields);
    this.knocking = new KnockingList(send);
    this.policyControls = new PolicyControls(send);
    this.recording = new RecordingControls(send, this);
    $('#lobby-leave').onclick = () => this.leave();
    this.devices = new DeviceMenus(this);
    this.social = new Social(this);
    this.views = new ViewControls(this);
    wireControls(this);
  }

  // --- views --------------------------------------------------------------------------

  show(view) {
    this.view = view;
    document.body.dataset.view = view;
    $('#prejoin').hidden = view !== 'prejoin';
    $('#meeting').hidden = view !== 'meeting';
    $('#ended').hidden = view !== 'ended';
    $('#lobby-wait').hidden = view !== 'lobby';
    $('#password-ask').hidden = view !== 'password';
  }

  get self() {
    return this.participants.get(this.selfId) || null;
  }

  get isModerator() {
    return this.self?.role === 'moderator';
  }

  async start() {
    document.title = `${this.room} · Switchboard`;
    $('#room-title').textContent = this.room;
    if (this.autojoin && prefs.name) { // moved from another node: join as before, at once
      this.name = prefs.name;
      await this.local.start({ micId: prefs.micId, camId: prefs.camId, video: prefs.camOn });
      this.camWanted = Boolean(this.local.cam);
      this.local.setMuted(!prefs.micOn);
      await this.join();
      return;
    }
    this.show('prejoin');
    const choice = await new Prejoin({ room: this.room, local: this.local }).run();
    this.name = choice.name;
    this.camWanted = choice.camOn;
    this.local.setMuted(!choice.micOn);
    await this.join();
  }

  // --- joining and leaving ------------------------------------------------------------

  async join() {
    this.leaving = false;
    this.kickedBy = null;
    this.joinError = null;
    this.joinErrorCode = null;
    this.participants = new Map();
    this.selfId = null;
    this.setDominant(null);
    this.show('meeting');
    this.qualityView.update({ local: null, server: null, state: 'new' });
    this.render();
    const sig = new Signaling(signalingUrl());
    this.sig = sig;
    for (const [type, handler] of Object.entries(this.handlers())) sig.on(type, handler);
    sig.onclose = (event) => this.onClose(event);
    try {
      await sig.open();
    } catch {
      this.end({ code: 1006 });
      return;
    }
    const resume = resumeToken(this.room); // this tab's place in the room, from an earlier join
    sig.send('join', {
      version: PROTOCOL_VERSION, room: this.room, name: this.name,
      audio: Boolean(this.local.mic) && !this.local.muted, video: Boolean(this.local.cam),
      ...(this.token ? { token: this.token } : {}), ...(this.password ? { password: this.password } : {}),
      ...(resume ? { resume } : {}),
    });
    this.joinTimer = window.setTimeout(() => {
      if (!this.selfId && this.sig === sig) {
        sig.close();
        this.end({ code: 'timeout' });
      }
    }, JOIN_TIMEOUT_MS);
  }

  handlers() {
    return {
      joined: (m) => this.onJoined(m),
      offer: (m) => this.media && this.media.handleOffer(m),
      'participant-joined': (m) => this.onParticipantJoined(m.participant),
      'participant-left': (m) => this.onParticipantLeft(m),
      'participant-updated': (m) => this.onParticipantUpdated(m.participant),
      'dial-in': (m) => this.onDialIn(m.dial_in),
      'dominant-speaker': (m) => this.onDominantSpeaker(m.id),
      chat: (m) => this.onChat(m),
      'private-chat': (m) => this.social.onPrivate(m),
      reaction: (m) => this.social.onReaction(m),
      muted: (m) => this.onMutedByModerator(m),
      kicked: (m) => { this.kickedBy = this.participants.get(m.by)?.name || 'A moderator'; dropResumeToken(this.room); },
      quality: (m) => this.qualityView.update({ server: m }),
      error: (m) => this.onError(m),
      lobby: (m) => m.state === 'waiting' && enterLobby(this, m.waiting_for), // denied: 4013 follows
      'lobby-list': (m) => this.knocking.update(m, this.isModerator),
      policy: (m) => this.policyControls.update(m.policy, this.isModerator),
      recording: (m) => this.recording.update(m.active, this.isModerator),
      pong: () => {},
    };
  }

  onJoined(msg) {
    window.clearTimeout(this.joinTimer);
    if (!msg.self || typeof msg.self.id !== 'string') return;
    this.show('meeting'); // from the waiting screen too
    if (this.media) this.media.close(); // admitted again after being sent back
    this.selfId = msg.self.id;
    if (msg.resume) keepResumeToken(this.room, msg.resume); // a cluster: the next join resumes
    else dropResumeToken(this.room);
    this.nodes = otherNodes(msg.nodes);
    this.participants = new Map();
    for (const p of [...(Array.isArray(msg.participants) ? msg.participants : []), msg.self]) {
      if (p && typeof p.id === 'string') this.participants.set(p.id, p);
    }
    this.joinedAt = Date.now();
    this.retry = 0;
    if (msg.self.muted && !this.local.muted) this.local.setMuted(true);
    rememberRoom(this.room);
    this.onDialIn(msg.dial_in);
    this.chat.clear();
    for (const c of Array.isArray(msg.chat) ? msg.chat : []) this.chat.add(c, this.selfId);
    this.unread = 0;

    this.policyControls.update(msg.policy, this.isModerator);
    this.knocking.render(this.isModerator);
    this.recording.update(false, this.isModerator, false); // a `recording` message follows if on
    this.media = new MediaSession({
      iceServers: msg.ice_servers, local: this.local, send: (type, fields) => this.sig.send(type, fields),
    });
    this.media.addEventListener('remote', () => this.onRemoteMedia());
    this.media.addEventListener('state', (e) => this.qualityView.update({ state: e.detail }));
    this.startTimers();
    this.render();
  }

  startTimers() {
    this.stopTimers();
    this.selfMeter = this.local.mic ? new LevelMeter(this.local.mic) : null;
    this.timers.push(window.setInterval(() => this.tickLevels(), LEVELS_EVERY_MS));
    this.timers.push(window.setInterval(() => this.tickStats(), STATS_EVERY_MS));
    const clock = () => { $('#meeting-clock').textContent = formatDuration((Date.now() - this.joinedAt) / 1000); };
    clock();
    this.timers.push(window.setInterval(clock, 1000));
  }

  stopTimers() {
    for (const t of this.timers) window.clearInterval(t);
    this.timers = [];
    if (this.selfMeter) this.selfMeter.close();
    this.selfMeter = null;
  }

  teardown() {
    window.clearTimeout(this.joinTimer);
    this.stopTimers();
    if (this.media) this.media.close();
    this.media = null;
    for (const el of this.audioEls.values()) {
      el.srcObject = null;
      el.remove();
    }
    this.audioEls.clear();
    if (this.sig) this.sig.close();
    this.sig = null;
    this.local.stopAll();
    this.quality = new QualityMeter();
  }

  leave() {
    if (this.view !== 'meeting' && this.view !== 'lobby') return;
    this.leaving = true;
    dropResumeToken(this.room); // left on purpose: the next join is a new one
    if (this.sig) this.sig.send('leave');
    this.teardown();
    showEnded({ kind: 'left' }, () => this.rejoin());
    this.show('ended');
  }

  onClose({ code }) {
    if (this.leaving) return;
    this.end({ code, message: this.joinError || '' });
  }

  end({ code, message = '' }) {
    if (this.view === 'ended') return;
    if (code === CLOSE.PASSWORD) {
      passwordThenRejoin(this, this.joinErrorCode === 'wrong-password');
      return;
    }
    const reason = endReason(code, this.kickedBy, message);
    this.lostAt = Date.now();
    this.teardown();
    this.show('ended');
    const delays = this.nodes.length || this.fled ? CLUSTER_RETRY_S : RETRY_DELAYS_S;
    const delay = reason.retry && this.retry < delays.length ? delays[this.retry] : 0;
    showEnded({ ...reason, autoRetry: delay }, () => this.rejoin());
  }

  async rejoin() {
    this.retry += 1;
    if (this.nodes.length && !(await thisNodeAnswers())) {
      // This node is gone (killed, unreachable): another node of the cluster takes the page
      // (the room is re-homed there, or it sends the page on to the room's new host).
      const next = this.nodes[(this.retry - 1) % this.nodes.length];
      const wait = (this.lostAt || 0) + NODE_DEAD_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => { window.setTimeout(resolve, wait); });
      this.leaving = true;
      handOverResumeToken(this.room, next, { autojoin: true, fled: window.location.origin });
      window.location.assign(next + window.location.pathname + window.location.search);
      return;
    }
    const muted = this.local.muted;
    await this.local.start({ micId: this.local.micId, camId: this.local.camId, video: this.camWanted });
    this.local.setMuted(muted);
    await this.join();
  }

  // --- server messages ----------------------------------------------------------------

  onParticipantJoined(p) {
    if (!p || typeof p.id !== 'string') return;
    const known = this.participants.has(p.id);
    this.participants.set(p.id, p);
    if (!known && p.id !== this.selfId) {
      toast(p.kind === 'phone' ? `${p.name} joined by phone` : `${p.name} joined`, { icon: p.kind === 'phone' ? 'phone' : 'people' });
    }
    this.render();
  }

  onParticipantLeft({ id, reason }) {
    const p = this.participants.get(id);
    if (!p || id === this.selfId) return;
    this.participants.delete(id);
    if (this.dominant === id) this.setDominant(null);
    const text = {
      kicked: `${p.name} was removed from the meeting`,
      timeout: `${p.name} lost their connection`,
      hangup: `${p.name} hung up`,
      lobby: `${p.name} was moved to the lobby`,
    }[reason] || `${p.name} left`;
    toast(text, { icon: reason === 'kicked' ? 'remove' : 'leave' });
    this.render();
  }

  /** `joined.dial_in`, or a `dial-in` that brings the host PIN to a new moderator. */
  onDialIn(dialIn) {
    this.dialIn = dialIn && typeof dialIn === 'object' ? dialIn : null;
    showDialIn(this.room, this.dialIn);
  }

  onParticipantUpdated(p) {
    if (!p || typeof p.id !== 'string') return;
    const before = this.participants.get(p.id);
    this.participants.set(p.id, p);
    if (before && p.id !== this.selfId) {
      if (p.hand && !before.hand) toast(`${p.name} raised their hand`, { icon: 'hand', kind: 'warn' });
      if (p.screen && !before.screen) toast(`${p.name} is presenting`, { icon: 'screen' });
    }
    if (before && p.id === this.selfId && p.role === 'moderator' && before.role !== 'moderator') {
      toast('You are now a moderator', { icon: 'star' });
      this.knocking.render(true);
      this.policyControls.update(null, true);
      this.recording.render(true);
    }
    this.render();
  }

  /** The bridge's dominant speaker (a browser or a phone caller alike), shown at once. */
  onDominantSpeaker(id) {
    this.setDominant(typeof id === 'string' ? id : null);
    if (this.panel === 'people') this.renderPanel();
  }

  setDominant(id) {
    this.dominant = id;
    this.stage.setDominant(id);
    this.views.apply();
  }

  onChat(msg) {
    this.chat.add(msg, this.selfId);
    if (msg.from !== this.selfId && this.panel !== 'chat') {
      this.unread += 1;
      const preview = String(msg.text || '').slice(0, 80);
      toast(`${msg.name}: ${preview}`, { icon: 'chat' });
      this.renderChrome();
    }
  }

  onMutedByModerator(msg) {
    this.local.setMuted(true);
    this.sendMedia();
    const by = this.participants.get(msg.by)?.name || 'A moderator';
    toast(`${by} muted you. Press M to unmute.`, { icon: 'mic-off', kind: 'warn', timeout: 6000 });
    this.render();
  }

  onError(msg) {
    console.warn(`signaling error ${msg.code}: ${msg.message}`);
    if (msg.code === 'recording-refused') this.recording.refused(msg.message);
    else if (msg.code === 'forbidden') toast('Only moderators can do that', { icon: 'warning', kind: 'bad' });
    else if (msg.code === 'rate-limited') toast('Slow down: too many actions at once', { icon: 'warning', kind: 'warn' });
    else if (msg.ref === 'join' && msg.code === 'room-elsewhere' && msg.message === this.fled) {
      // The room's node is the one this page found gone, not yet declared dead: not there.
      // The close that follows (4029) makes the page try again here shortly.
      this.joinError = 'The meeting is moving to another server';
    } else if (msg.ref === 'join' && msg.code === 'room-elsewhere' && /^https?:\/\/[^/?#]+$/.test(msg.message)) {
      // A cluster: another node hosts the room; its page opens there (the same path), and this
      // tab's resume token goes along (not in the URL: lib/storage.js).
      this.leaving = true;
      handOverResumeToken(this.room, msg.message, { autojoin: true });
      window.location.assign(msg.message + window.location.pathname + window.location.search);
    } else if (msg.ref === 'join' && !this.selfId) {
      // The close code that follows says why; the message is the fallback.
      const sig = this.sig;
      this.joinError = msg.message;
      this.joinErrorCode = msg.code;
      window.setTimeout(() => {
        if (this.sig === sig && !this.selfId && this.view === 'meeting') {
          sig.close();
          this.end({ code: 'join-error', message: msg.message });
        }
      }, 3000);
    }
  }

  onRemoteMedia() {
    if (!this.media) return;
    const live = new Set();
    for (const entry of this.media.remote.values()) {
      if (entry.kind !== 'audio') continue;
      live.add(entry.mid);
      let el = this.audioEls.get(entry.mid);
      if (!el) {
        el = document.createElement('audio');
        el.autoplay = true;
        el.dataset.mid = entry.mid;
        $('#audio-sink').append(el);
        this.audioEls.set(entry.mid, el);
        this.devices.applySink(el);
      }
      el.dataset.participant = entry.participant;
      const current = el.srcObject ? el.srcObject.getTracks()[0] : null;
      if (current !== entry.track) {
        el.srcObject = new MediaStream([entry.track]);
        el.play().catch(() => this.unlockAudio());
      }
    }
    for (const [mid, el] of this.audioEls) {
      if (!live.has(mid)) {
        el.srcObject = null;
        el.remove();
        this.audioEls.delete(mid);
      }
    }
    this.render();
  }

  /** The browser refused to play sound before a user gesture: play on the next click. */
  unlockAudio() {
    if (this.audioLocked) return;
    this.audioLocked = true;
    toast('Click anywhere to hear the others', { icon: 'info', timeout: 8000 });
    document.addEventListener('pointerdown', () => {
      this.audioLocked = false;
      for (const el of this.audioEls.values()) el.play().catch(() => {});
    }, { once: true });
  }

  // --- local actions ------------------------------------------------------------------

  toggleHand() {
    const raised = !(this.self?.hand);
    this.sig?.send('hand', { raised });
    this.patchSelf({ hand: raised });
    this.render();
  }

  sendChat(text) {
    return this.social.send(text);
  }

  togglePanel(name) {
    const panel = $('#panel');
    if (panel && panel.contains(document.activeElement)) document.activeElement.blur();
    this.panel = this.panel === name ? null : name;
    if (this.panel === 'chat') this.unread = 0;
    this.render();
    if (this.panel === 'chat') {
      this.chat.scrollToEnd();
      $('#chat-input').focus();
    }
    window.requestAnimationFrame(() => this.stage.layout());
  }

  muteParticipant(p) {
    this.sig?.send('moderate', { action: 'mute', target: p.id });
  }

  async kickParticipant(p) {
    const ok = await confirmDialog({
      title: `Remove ${p.name}?`, text: `${p.name} will leave the meeting at once.`,
      confirm: 'Remove', danger: true,
    });
    if (ok) this.sig?.send('moderate', { action: 'kick', target: p.id });
  }

  muteAll() {
    this.sig?.send('moderate', { action: 'mute-all' });
    toast('You muted everyone else', { icon: 'mic-off' });
  }

  // --- periodic work ------------------------------------------------------------------

  // --- rendering ----------------------------------------------------------------------

  render() {
    if (this.view !== 'meeting') return;
    const participants = [...this.participants.values()];
    // Our own tile shows what we send now, not what the server last heard; before `joined`
    // it stands alone so that the stage is never empty.
    const selfId = this.selfId || 'joining';
    const self = this.self || { id: selfId, name: this.name, kind: 'browser', role: 'guest', hand: false };
    const i = participants.findIndex((p) => p.id === selfId);
    participants.splice(i < 0 ? 0 : i, i < 0 ? 0 : 1, {
      ...self, audio: Boolean(this.local.mic) && !this.local.muted,
      muted: this.local.muted || !this.local.mic, video: Boolean(this.local.cam), screen: Boolean(this.local.screen),
    });
    this.stage.render({
      participants, selfId, media: this.media ? this.media.byParticipant() : new Map(),
      local: { cam: this.local.cam, screen: this.local.screen },
    });
    this.views.apply();
    this.social.render(participants, selfId);
    this.renderChrome();
    this.renderPanel();
  }

  renderChrome() {
    renderToolbar({
      hasMic: Boolean(this.local.mic), muted: this.local.muted, camOn: Boolean(this.local.cam),
      canCam: true, sharing: Boolean(this.local.screen), canShare: this.local.canShareScreen,
      hand: Boolean(this.self?.hand), panel: this.panel, unread: this.unread, count: this.participants.size,
    });
    document.title = `${this.unread ? `(${this.unread}) ` : ''}${this.room} · Switchboard`;
  }

  renderPanel() {
    const panel = $('#panel');
    panel.hidden = !this.panel;
    if (!this.panel) return;
    $('#panel-title').textContent = this.panel === 'people'
      ? `${PANEL_TITLES.people} (${this.participants.size})` : PANEL_TITLES[this.panel];
    for (const name of ['chat', 'people', 'info']) $(`#panel-${name}`).hidden = this.panel !== name;
    if (this.panel === 'people') {
      $('#people-actions').hidden = !this.isModerator || this.participants.size < 2;
      const speaking = this.stage.speakingIds();
      for (const [id, v] of this.levels) if (v > SPEAKING_LEVEL) speaking.add(id);
      const key = JSON.stringify([[...this.participants.values()], this.isModerator]);
      if (key !== this.peopleKey) {
        this.peopleKey = key;
        renderPeople($('#people-list'), {
          participants: [...this.participants.values()], selfId: this.selfId, moderator: this.isModerator,
          onMute: (p) => this.muteParticipant(p), onKick: (p) => this.kickParticipant(p),
          onSendBack: (p) => this.sig?.send('lobby', { action: 'send-back', target: p.id }),
        });
      }
      markSpeaking($('#people-list'), speaking, this.dominant);
    }
  }
}

Object.assign(Meeting.prototype, localMedia, meters);

/** Whether this page's node answers at all (any HTTP status), within HEALTH_WAIT_MS. */
async function thisNodeAnswers() {
  const ctrl = new AbortController();
  const timer = window.setTimeout(() => ctrl.abort(), HEALTH_WAIT_MS);
  try {
    await fetch('/api/health', { cache: 'no-store', signal: ctrl.signal });
    return true;
  } catch {
    return false;
  } finally {
    window.clearTimeout(timer);
  }
}

function main() {
  const room = decodeURIComponent(window.location.pathname.replace(/^\/+|\/+$/g, ''));
  if (!isRoomName(room)) {
    window.location.replace('/');
    return;
  }
  const handed = takeHandedOverToken(room.toLowerCase()); // from this tab's page on another node
  const meeting = new Meeting(room.toLowerCase(), takeToken(), handed);
  // A handle for debugging and the browser tests: the meeting and its RTCPeerConnection.
  window.switchboard = {
    meeting,
    get pc() { return meeting.media ? meeting.media.pc : null; },
  };
  meeting.start().catch((err) => console.error('meeting: could not start', err));
}

main();
