// Reactions and private chat (docs/signaling.md: `reaction`, `private-chat`).
//
// Reactions: the toolbar's reaction button opens a menu of a few emoji; the server relays the
// choice to everyone in the room (us included), and each one floats up over the sender's tile
// for a moment and is announced to screen readers in a polite live region.
//
// Private chat: the chat box's "To" list holds everyone in the room who can read chat (other
// browsers); a message to one of them goes as `private-chat`, which the server gives to them
// and back to us only. Private messages are marked in the log and not kept by the server.

import { $, h } from '../lib/dom.js';
import { toast } from './toasts.js';

export const REACTIONS = [
  ['\u{1F44D}', 'thumbs up'], ['\u{1F44F}', 'applause'], ['\u{1F602}', 'laughing'],
  ['\u{1F62E}', 'surprised'], ['\u2764\uFE0F', 'love'], ['\u{1F389}', 'celebrate'],
];
const FLOAT_MS = 2600;
const MAX_FLOATING = 6; // per tile

export class Social {
  /** @param {object} meeting the Meeting of room.js (sig, participants, selfId, onChat) */
  constructor(meeting) {
    this.m = meeting;
    this.button = $('#btn-react');
    this.menu = $('#react-menu');
    this.live = $('#reactions-live');
    this.to = $('#chat-to');
    this.input = $('#chat-input');
    this.optionsKey = '';
    this.menu.replaceChildren(...REACTIONS.map(([emoji, label]) => h('button', {
      type: 'button', role: 'menuitem', class: 'react-item', tabindex: '-1', 'data-emoji': emoji,
      'aria-label': `React with ${label}`, title: label,
      onclick: () => { this.close(); this.react(emoji); },
    }, emoji)));
    this.button.addEventListener('click', () => (this.menu.hidden ? this.open() : this.close()));
    this.menu.addEventListener('keydown', (e) => {
      const items = [...this.menu.querySelectorAll('button')];
      const i = items.indexOf(document.activeElement);
      if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation();
        this.close(true);
      } else if (['ArrowRight', 'ArrowDown', 'ArrowLeft', 'ArrowUp'].includes(e.key)) {
        e.preventDefault();
        const step = e.key === 'ArrowRight' || e.key === 'ArrowDown' ? 1 : -1;
        items[(i + step + items.length) % items.length].focus();
      } else if (e.key === 'Tab') {
        this.close();
      }
    });
    document.addEventListener('pointerdown', (e) => {
      if (!this.menu.hidden && !this.menu.contains(e.target) && !this.button.contains(e.target)) this.close();
    });
    this.to.addEventListener('change', () => this.placeholder());
  }

  open() {
    this.menu.hidden = false;
    this.button.setAttribute('aria-expanded', 'true');
    this.menu.querySelector('button').focus();
  }

  close(refocus = false) {
    this.menu.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
    if (refocus) this.button.focus();
  }

  react(emoji) {
    this.m.sig?.send('reaction', { emoji });
  }

  nameOf(id) {
    if (id === this.m.selfId) return 'You';
    return this.m.participants.get(id)?.name || 'Someone';
  }

  /** `reaction` from the server: float it over the sender's tile, and say it. */
  onReaction(msg) {
    if (!msg || typeof msg.from !== 'string' || !REACTIONS.some(([e]) => e === msg.emoji)) return;
    const tile = [...document.querySelectorAll('#grid .tile')].find((t) => t.dataset.participant === msg.from);
    if (tile) {
      const floating = tile.querySelectorAll('.reaction-float');
      if (floating.length >= MAX_FLOATING) floating[0].remove();
      const el = h('span', { class: 'reaction-float', 'aria-hidden': 'true', 'data-from': msg.from }, msg.emoji);
      el.style.setProperty('--drift', `${Math.round((Math.random() - 0.5) * 40)}px`);
      tile.append(el);
      window.setTimeout(() => el.remove(), FLOAT_MS);
    }
    const label = REACTIONS.find(([e]) => e === msg.emoji)[1];
    this.live.textContent = `${this.nameOf(msg.from)} reacted: ${label} ${msg.emoji}`;
  }

  /** `private-chat` from the server (to us, or our own coming back). */
  onPrivate(msg) {
    if (!msg || typeof msg.text !== 'string' || typeof msg.from !== 'string') return;
    const mine = msg.from === this.m.selfId;
    const label = mine ? `You to ${msg.to_name || 'someone'} (private)` : `${msg.name || 'Someone'} to you (private)`;
    this.m.onChat({ ...msg, label, private: true });
  }

  /** The chat box's send: to everyone, or privately to the chosen participant. */
  send(text) {
    const to = this.to.value;
    if (to && this.m.participants.has(to)) return Boolean(this.m.sig?.send('private-chat', { to, text }));
    if (to) {
      toast('They are no longer in the meeting', { icon: 'warning', kind: 'warn' });
      return false;
    }
    return Boolean(this.m.sig?.send('chat', { text }));
  }

  placeholder() {
    const p = this.m.participants.get(this.to.value);
    this.input.placeholder = p ? `Send a private message to ${p.name}` : 'Send a message to everyone';
  }

  /** Keep the "To" list in step with the room: other browsers (phones cannot read chat). */
  render(participants, selfId) {
    const others = participants.filter((p) => p.id !== selfId && p.kind !== 'phone');
    const key = JSON.stringify(others.map((p) => [p.id, p.name]));
    if (key === this.optionsKey) return;
    this.optionsKey = key;
    const current = this.to.value;
    this.to.replaceChildren(h('option', { value: '' }, 'Everyone'),
      ...others.map((p) => h('option', { value: p.id }, p.name)));
    this.to.value = others.some((p) => p.id === current) ? current : '';
    this.placeholder();
  }
}
