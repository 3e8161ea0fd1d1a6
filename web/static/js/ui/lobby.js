// Who gets in: the page's token (?jwt=), the waiting screen, the password form, and for
// moderators the knocking list (admit, deny, admit everyone) and the room's policy.

import { $, h, icon } from '../lib/dom.js';
import { showEnded } from './ended.js';
import { toast } from './toasts.js';

/**
 * The token given as ?jwt=TOKEN, removed from the address bar at once (history.replaceState),
 * so it stays out of the history, bookmarks, screenshots and any Referer. The page sends it
 * over the WebSocket in `join`, never in a URL.
 */
export function takeToken(location = window.location, history = window.history) {
  const params = new URLSearchParams(location.search);
  const token = params.get('jwt');
  if (params.has('jwt')) {
    params.delete('jwt');
    const query = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
  }
  return token && token.length <= 8192 ? token : null;
}

/** The waiting screen: "waiting" for a "moderator" or a "host". */
export function showWaiting(waitingFor) {
  $('#lobby-title').textContent = waitingFor === 'host'
    ? 'Waiting for the host' : 'Asking to join';
  $('#lobby-text').textContent = waitingFor === 'host'
    ? 'The meeting starts when a host joins. You will be let in then.'
    : 'Someone in the meeting will let you in soon.';
}

/** The password form; resolves with the password typed (or null when cancelled). */
export function askPassword(wrong) {
  const form = $('#password-form');
  const input = $('#password-input');
  $('#password-error').hidden = !wrong;
  $('#password-error').textContent = wrong ? 'That password is not right. Try again.' : '';
  input.value = '';
  window.setTimeout(() => input.focus(), 0);
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      const value = input.value;
      if (value.length < 1) return;
      input.value = '';
      resolve(value);
    };
    $('#password-cancel').onclick = () => resolve(null);
  });
}

/** The meeting goes to the waiting screen (also when a moderator sends it back). */
export function enterLobby(meeting, waitingFor) {
  window.clearTimeout(meeting.joinTimer);
  if (meeting.media) { // sent back to the lobby by a moderator
    meeting.stopTimers();
    meeting.media.close();
    meeting.media = null;
    for (const el of meeting.audioEls.values()) el.remove();
    meeting.audioEls.clear();
    toast('A moderator moved you to the lobby', { icon: 'leave', kind: 'warn' });
  }
  meeting.selfId = null;
  meeting.participants = new Map();
  meeting.knocking.clear();
  showWaiting(waitingFor);
  meeting.show('lobby');
}

/** The room needs a password (close 4012): ask, then join again with it. */
export async function passwordThenRejoin(meeting, wrong) {
  meeting.teardown();
  meeting.show('password');
  const password = await askPassword(wrong);
  if (password === null) {
    meeting.show('ended');
    showEnded({ kind: 'refused', icon: 'warning', title: 'You did not join the meeting',
      text: 'It needs a password.' }, () => meeting.rejoin());
    return;
  }
  meeting.password = password;
  await meeting.rejoin();
}

let audio = null;

/** A short two-tone chime (no file to download): someone knocks. */
export function chime() {
  try {
    audio = audio || new AudioContext();
    const now = audio.currentTime;
    for (const [i, freq] of [[0, 660], [1, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.2);
    }
  } catch (err) {
    console.warn('lobby: could not play the knock sound', err);
  }
}

/** The moderators' knocking list, in the people panel. `send(type, fields)` signals. */
export class KnockingList {
  constructor(send) {
    this.send = send;
    this.waiting = [];
  }

  update(msg, isModerator) {
    const before = new Set(this.waiting.map((w) => w.id));
    this.waiting = Array.isArray(msg.waiting) ? msg.waiting.filter((w) => w && typeof w.id === 'string') : [];
    if (isModerator && msg.knock) {
      for (const w of this.waiting) {
        if (!before.has(w.id)) toast(`${w.name} wants to join`, { icon: 'people', kind: 'warn', timeout: 6000 });
      }
      chime();
    }
    this.render(isModerator);
  }

  clear() {
    this.waiting = [];
    this.render(false);
  }

  render(isModerator) {
    const box = $('#lobby-panel');
    box.hidden = !isModerator || this.waiting.length === 0;
    $('#lobby-count').textContent = String(this.waiting.length);
    const list = $('#lobby-list');
    list.replaceChildren(...this.waiting.map((w) => h('li', { class: 'lobby-entry', 'data-id': w.id },
      icon(w.kind === 'phone' ? 'phone' : 'people'),
      h('span', { class: 'lobby-name' }, w.name),
      h('button', { class: 'btn btn-primary btn-sm', type: 'button', 'data-action': 'admit',
        onclick: () => this.send('lobby', { action: 'admit', target: w.id }) }, 'Admit'),
      h('button', { class: 'btn btn-secondary btn-sm', type: 'button', 'data-action': 'deny',
        onclick: () => this.send('lobby', { action: 'deny', target: w.id }) }, 'Deny'))));
    $('#lobby-admit-all').onclick = () => this.send('lobby', { action: 'admit-all' });
  }
}

/** The room's policy controls (moderators), in the meeting details panel. */
export class PolicyControls {
  constructor(send) {
    this.send = send;
    this.policy = null;
    $('#policy-lobby').onchange = (e) => this.send('policy', { lobby: e.target.checked });
    $('#policy-hosts').onchange = (e) => this.send('policy', { start: e.target.checked ? 'hosts' : 'anyone' });
    $('#policy-guests').onchange = (e) => this.send('policy', { guests: !e.target.checked });
    $('#policy-password-form').onsubmit = (e) => {
      e.preventDefault();
      const value = $('#policy-password').value;
      if (value.length >= 4) this.send('policy', { password: value });
      $('#policy-password').value = '';
    };
    $('#policy-password-remove').onclick = () => this.send('policy', { password: '' });
  }

  update(policy, isModerator) {
    if (policy && typeof policy === 'object') this.policy = policy;
    const box = $('#policy-block');
    box.hidden = !isModerator || !this.policy;
    if (!this.policy) return;
    $('#policy-lobby').checked = Boolean(this.policy.lobby);
    $('#policy-hosts').checked = this.policy.start === 'hosts';
    $('#policy-guests').checked = this.policy.guests === false;
    $('#policy-password-state').textContent = this.policy.has_password
      ? 'This meeting has a password.' : 'No password.';
    $('#policy-password-remove').hidden = !this.policy.has_password;
  }
}
