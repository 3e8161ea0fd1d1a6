// Device menus during the meeting: the small buttons beside the microphone and camera buttons
// open a menu to switch the microphone, the speaker (audio output) and the camera without
// rejoining, and to turn the browser's own noise suppression and background blur on or off.
//
// Switching a microphone or camera opens the new device and hands its track to LocalMedia,
// whose 'change' makes the MediaSession replace the sender's track (RTCRtpSender.replaceTrack):
// same slot, same m-line, no new offer, the call stays up. The speaker is each remote <audio>
// element's setSinkId (where the browser has it; the section is hidden otherwise).
//
// Noise suppression is on by default (lib/media.js asks for it); the toggle applies it to the
// live track with applyConstraints. Background blur is offered only where the browser does it
// itself (the camera track's capabilities list `backgroundBlur`, as Chromium gives on systems
// with a platform blur): no model to download; otherwise the option is not shown.

import { $, h } from '../lib/dom.js';
import { prefs } from '../lib/storage.js';
import { toast } from './toasts.js';

/** Devices of one kind, without the 'default'/'communications' aliases of a listed device. */
function listOf(all, kind, fallback) {
  const out = [];
  for (const d of all) {
    if (d.kind !== kind || !d.deviceId) continue;
    if ((d.deviceId === 'default' || d.deviceId === 'communications')
        && all.some((x) => x.kind === kind && x.groupId === d.groupId && x.deviceId !== d.deviceId
          && x.deviceId !== 'default' && x.deviceId !== 'communications')) continue;
    out.push({ id: d.deviceId, label: d.label || `${fallback} ${out.length + 1}` });
  }
  return out;
}

/** Where the browser can do it: true / false for the track's `name` capability. */
export function offers(track, name) {
  if (!track || typeof track.getCapabilities !== 'function') return false;
  const supported = navigator.mediaDevices?.getSupportedConstraints?.() || {};
  if (!supported[name]) return false;
  const cap = track.getCapabilities()[name];
  return Array.isArray(cap) ? cap.includes(true) : cap === true;
}

export class DeviceMenus {
  /** @param {object} meeting the Meeting of room.js (local, audioEls, render()) */
  constructor(meeting) {
    this.m = meeting;
    this.sinkId = '';
    this.noiseSuppression = prefs.noiseSuppression;
    this.blur = false;
    this.openName = null;
    meeting.local.audioProcessing.noiseSuppression = this.noiseSuppression;
    this.menus = {
      mic: { button: $('#btn-mic-menu'), pop: $('#mic-menu') },
      cam: { button: $('#btn-cam-menu'), pop: $('#cam-menu') },
    };
    for (const [name, { button, pop }] of Object.entries(this.menus)) {
      button.addEventListener('click', () => (this.openName === name ? this.close() : this.open(name)));
      pop.addEventListener('keydown', (e) => this.onKey(e));
    }
    document.addEventListener('pointerdown', (e) => {
      if (!this.openName) return;
      const { button, pop } = this.menus[this.openName];
      if (!pop.contains(e.target) && !button.contains(e.target)) this.close(false);
    });
  }

  get canPickSpeaker() {
    return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
  }

  async open(name) {
    this.close(false);
    const { button, pop } = this.menus[name];
    this.openName = name;
    button.setAttribute('aria-expanded', 'true');
    await this.fill(name);
    if (this.openName !== name) return;
    pop.hidden = false;
    pop.querySelector('[role^="menuitem"]')?.focus();
  }

  close(refocus = true) {
    if (!this.openName) return;
    const { button, pop } = this.menus[this.openName];
    this.openName = null;
    pop.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) button.focus();
  }

  onKey(e) {
    const items = [...e.currentTarget.querySelectorAll('[role^="menuitem"]')];
    const i = items.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      this.close();
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      items[(i + step + items.length) % items.length]?.focus();
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      items[e.key === 'Home' ? 0 : items.length - 1]?.focus();
    } else if (e.key === 'Tab') {
      this.close(false);
    }
  }

  item(label, checked, action, role = 'menuitemradio', data = {}) {
    return h('button', {
      type: 'button', role, class: 'menu-item', 'aria-checked': String(Boolean(checked)),
      tabindex: '-1', ...data,
      onclick: async () => {
        this.close();
        await action();
        this.m.render();
      },
    }, h('span', { class: 'menu-check', 'aria-hidden': 'true' }, checked ? '✓' : ''), h('span', {}, label));
  }

  group(title, items) {
    if (!items.length) return [];
    const id = `menu-${title.toLowerCase().replace(/\W+/g, '-')}`;
    return [h('div', { class: 'menu-title', id, role: 'presentation' }, title),
      h('div', { role: 'group', 'aria-labelledby': id }, items)];
  }

  async fill(name) {
    const all = navigator.mediaDevices?.enumerateDevices ? await navigator.mediaDevices.enumerateDevices() : [];
    const local = this.m.local;
    const { pop } = this.menus[name];
    if (name === 'mic') {
      const mics = listOf(all, 'audioinput', 'Microphone');
      const speakers = this.canPickSpeaker ? listOf(all, 'audiooutput', 'Speaker') : [];
      const current = this.sinkId || 'default';
      const toggles = [];
      if (local.mic && offers(local.mic, 'noiseSuppression')) {
        toggles.push(this.item('Noise suppression', this.noiseSuppression,
          () => this.setNoiseSuppression(!this.noiseSuppression), 'menuitemcheckbox', { 'data-toggle': 'noise' }));
      }
      pop.replaceChildren(
        ...this.group('Microphone', mics.map((d) => this.item(d.label, d.id === local.micId,
          () => this.switchMic(d.id), 'menuitemradio', { 'data-device': d.id }))),
        ...this.group('Speaker', speakers.map((d) => this.item(d.label, d.id === current,
          () => this.switchSpeaker(d.id), 'menuitemradio', { 'data-device': d.id }))),
        ...this.group('Sound', toggles));
    } else {
      const cams = listOf(all, 'videoinput', 'Camera');
      const toggles = [];
      if (local.cam && offers(local.cam, 'backgroundBlur')) {
        toggles.push(this.item('Blur my background', this.blur, () => this.setBlur(!this.blur),
          'menuitemcheckbox', { 'data-toggle': 'blur' }));
      }
      pop.replaceChildren(
        ...this.group('Camera', cams.map((d) => this.item(d.label, d.id === local.camId,
          () => this.switchCam(d.id), 'menuitemradio', { 'data-device': d.id }))),
        ...this.group('Effects', toggles));
    }
    if (!pop.children.length) pop.append(h('p', { class: 'muted menu-empty' }, 'No devices found'));
  }

  /** A new microphone; the sender's track is replaced, mute state kept. */
  async switchMic(id) {
    const local = this.m.local;
    if (id === local.micId && local.mic) return true;
    if (!(await local.openMic(id, true))) {
      toast(local.errors.mic || 'That microphone could not be started', { icon: 'mic-off', kind: 'bad' });
      return false;
    }
    local.micId = id;
    prefs.micId = id;
    toast('Microphone switched', { icon: 'mic' });
    return true;
  }

  /** A new camera: switched now when the camera is on, else used when it is turned on. */
  async switchCam(id) {
    const local = this.m.local;
    if (!local.cam) {
      local.camId = id;
      prefs.camId = id;
      return true;
    }
    if (id === local.camId) return true;
    if (!(await local.openCamera(id, true))) {
      toast(local.errors.cam || 'That camera could not be started', { icon: 'cam-off', kind: 'bad' });
      return false;
    }
    local.camId = id;
    prefs.camId = id;
    this.blur = false;
    return true;
  }

  async switchSpeaker(id) {
    const els = [...this.m.audioEls.values()];
    try {
      await Promise.all(els.map((el) => el.setSinkId(id)));
    } catch (err) {
      console.warn('devices: could not switch the speaker', err.name);
      toast('That speaker could not be used', { icon: 'warning', kind: 'bad' });
      return false;
    }
    this.sinkId = id;
    return true;
  }

  /** A remote <audio> element just made: it plays on the chosen speaker. */
  applySink(el) {
    if (this.sinkId && typeof el.setSinkId === 'function') {
      el.setSinkId(this.sinkId).catch((err) => console.warn('devices: setSinkId failed', err.name));
    }
  }

  async setNoiseSuppression(on) {
    const track = this.m.local.mic;
    this.noiseSuppression = on;
    prefs.noiseSuppression = on;
    this.m.local.audioProcessing.noiseSuppression = on; // for a microphone opened later
    if (!track) return true;
    try {
      await track.applyConstraints({ ...track.getConstraints(), noiseSuppression: on });
    } catch (err) {
      console.info('devices: applyConstraints refused noiseSuppression', err.name);
    }
    // Chromium accepts the constraint on a live track but keeps the audio processing the
    // device was opened with: then the microphone is closed and opened again with it (the
    // sender's track replaced; a moment of silence).
    if (track.getSettings().noiseSuppression !== on) {
      track.stop();
      if (!(await this.m.local.openMic(this.m.local.micId, true))) {
        toast('Noise suppression could not be changed', { icon: 'warning', kind: 'bad' });
        return false;
      }
    }
    toast(on ? 'Noise suppression on' : 'Noise suppression off', { icon: 'mic' });
    return true;
  }

  async setBlur(on) {
    const track = this.m.local.cam;
    if (!track) return false;
    try {
      await track.applyConstraints({ ...track.getConstraints(), backgroundBlur: on });
      this.blur = on;
    } catch (err) {
      console.warn('devices: background blur not changed', err.name);
      return false;
    }
    return true;
  }
}
