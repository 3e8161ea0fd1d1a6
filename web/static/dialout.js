// "Call a phone": a moderator invites a phone number into the meeting (issue 16, section 2).
//
// A module of its own beside room.js: it finds the meeting through `window.switchboard`
// (set by room.js), adds its form above the participants list, and marks called-out
// phones in that list with their state ("Calling…", "Ringing…", "Busy", "No answer",
// "Failed: why") and a Cancel button while they ring. The dial and the cancel go through
// the API (POST /api/rooms/{room}/dial, DELETE /api/calls/{id}) with the moderator's token
// (the page's ?jwt=); without one the control stays hidden. The country default comes from
// GET /api/rooms/{room}/dial. User text only ever goes in through textContent.

import { $, h } from './js/lib/dom.js';
import { toast } from './js/ui/toasts.js';

const STATES = {
  calling: 'Calling…', ringing: 'Ringing…', 'in-meeting': null, busy: 'Busy',
  'no-answer': 'No answer', failed: 'Failed', cancelled: 'Cancelled', ended: 'Call ended',
};
const TICK_MS = 500;

class DialOutControl {
  constructor(meeting) {
    this.meeting = meeting;
    this.calls = new Map(); // participant id -> call id (the calls this page made)
    this.info = null; // {default_country, trunks}
    this.asked = false;
    this.form = this.build();
    $('#panel-people').insertBefore(this.form, $('#people-list'));
    new MutationObserver(() => this.decorate()).observe($('#people-list'), { childList: true });
    setInterval(() => this.tick(), TICK_MS);
  }

  build() {
    this.number = h('input', {
      id: 'dialout-number', type: 'tel', inputmode: 'tel', autocomplete: 'off', maxlength: '32',
      required: true, placeholder: '+1 555 0100', 'aria-describedby': 'dialout-country',
    });
    this.country = h('span', { id: 'dialout-country', class: 'dialout-country' });
    this.button = h('button', { id: 'dialout-call', class: 'btn btn-primary btn-sm', type: 'submit' }, 'Call');
    const form = h('form', { id: 'dialout-form', class: 'dialout-form', autocomplete: 'off', hidden: true },
      h('h3', {}, 'Call a phone'),
      h('label', { class: 'visually-hidden', for: 'dialout-number' }, 'Phone number'),
      h('div', { class: 'dialout-row' }, this.number, this.button),
      this.country);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); this.dial(); });
    return form;
  }

  get allowed() {
    return Boolean(this.meeting.isModerator && this.meeting.token && this.meeting.view === 'meeting');
  }

  headers() {
    return { Authorization: `Bearer ${this.meeting.token}`, 'Content-Type': 'application/json' };
  }

  async tick() {
    this.form.hidden = !this.allowed;
    if (this.allowed && !this.asked) {
      this.asked = true;
      try {
        const resp = await fetch(`/api/rooms/${encodeURIComponent(this.meeting.room)}/dial`,
          { headers: this.headers() });
        if (resp.ok) this.info = await resp.json();
      } catch (err) {
        console.warn('dial-out: no defaults', err);
      }
      const cc = this.info && this.info.default_country;
      this.country.textContent = cc
        ? `Numbers without + are in country +${cc}` : 'Give the number with its country code (+…)';
    }
    this.decorate();
  }

  async dial() {
    const number = this.number.value.trim();
    if (!number || !this.allowed) return;
    this.button.disabled = true;
    try {
      const resp = await fetch(`/api/rooms/${encodeURIComponent(this.meeting.room)}/dial`, {
        method: 'POST', headers: this.headers(), body: JSON.stringify({ number }),
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.status === 202) {
        this.calls.set(body.participant_id, body.id);
        this.number.value = '';
        toast('Calling…', { icon: 'phone' });
      } else {
        toast(`Cannot call: ${body.error || `HTTP ${resp.status}`}`, { icon: 'warning', kind: 'bad' });
      }
    } catch (err) {
      toast('Cannot call: the server did not answer', { icon: 'warning', kind: 'bad' });
    } finally {
      this.button.disabled = false;
      this.decorate();
    }
  }

  async cancel(pid) {
    const id = this.calls.get(pid);
    if (!id) return;
    try {
      await fetch(`/api/calls/${encodeURIComponent(id)}`, { method: 'DELETE', headers: this.headers() });
    } catch (err) {
      console.warn('dial-out: cancel failed', err);
    }
  }

  // The participants list is rebuilt by room.js on every change: mark the called-out phones
  // again each time (and on the tick, for a list that did not change).
  decorate() {
    for (const li of document.querySelectorAll('#people-list li.person')) {
      const p = this.meeting.participants.get(li.dataset.participant);
      const old = li.querySelector('.dialout-state');
      const text = p && p.state ? STATES[p.state] : null;
      if (!text) { if (old) old.remove(); continue; }
      const label = p.reason && (p.state === 'failed' || p.state === 'busy') && p.reason !== p.state
        ? `${text}: ${p.reason}` : text;
      const ringing = p.state === 'calling' || p.state === 'ringing';
      if (old && old.dataset.label === label && Boolean(old.querySelector('button')) === (ringing && this.calls.has(p.id))) continue;
      const el = h('div', { class: 'dialout-state person-sub', 'data-state': p.state, 'data-label': label }, label);
      if (ringing && this.calls.has(p.id)) {
        el.append(' ', h('button', {
          class: 'btn btn-secondary btn-sm dialout-cancel', type: 'button',
          'aria-label': `Cancel the call to ${p.name}`, onclick: () => this.cancel(p.id),
        }, 'Cancel'));
      }
      if (old) old.replaceWith(el);
      else (li.querySelector('.person-main') || li).append(el);
    }
  }
}

function attach() {
  const meeting = window.switchboard && window.switchboard.meeting;
  if (!meeting || !document.querySelector('#people-list')) {
    console.warn('dial-out: no meeting on this page');
    return;
  }
  window.switchboard.dialout = new DialOutControl(meeting);
}

attach();
