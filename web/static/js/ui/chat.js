// The chat panel: the room's messages with names and times, and the box to write one.

import { h, formatClock } from '../lib/dom.js';

const MAX_MESSAGES = 500;
const GROUP_SECONDS = 120;
const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

/** Text with links made clickable, as DOM nodes (no HTML parsing of user text). */
function linkify(text) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    out.push(h('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer' }, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

export class Chat {
  /** @param {{log: HTMLElement, form: HTMLFormElement, input: HTMLTextAreaElement,
   *           onSend: (text: string) => boolean}} options */
  constructor({ log, form, input, onSend }) {
    this.log = log;
    this.input = input;
    this.onSend = onSend;
    this.lastFrom = null;
    this.lastTs = 0;
    this.count = 0;
    this.empty = h('li', { class: 'chat-empty' }, 'Messages here are seen by everyone in the meeting, and by people who join later.');
    this.log.replaceChildren(this.empty);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    input.addEventListener('input', () => this.autosize());
  }

  autosize() {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(120, this.input.scrollHeight)}px`;
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (this.onSend(text.slice(0, 2000))) {
      this.input.value = '';
      this.autosize();
    }
  }

  clear() {
    this.log.replaceChildren(this.empty);
    this.lastFrom = null;
    this.count = 0;
  }

  /** Add {from, name, text, ts}; selfId marks our own messages. */
  add(msg, selfId) {
    if (!msg || typeof msg.text !== 'string') return;
    if (this.empty.isConnected) this.empty.remove();
    const ts = Number(msg.ts) || Date.now() / 1000;
    const same = !msg.private && msg.from === this.lastFrom && ts - this.lastTs < GROUP_SECONDS;
    const mine = msg.from === selfId;
    const name = msg.label || (mine ? 'You' : String(msg.name || 'Someone'));
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(h('li', { class: `chat-msg${same ? ' same' : ''}${mine ? ' mine' : ''}${msg.private ? ' private' : ''}` },
      h('div', { class: 'chat-meta' },
        h('span', { class: 'chat-from' }, name),
        h('time', { class: 'chat-time', datetime: new Date(ts * 1000).toISOString() }, formatClock(ts))),
      h('div', { class: 'chat-text' }, linkify(msg.text))));
    this.lastFrom = msg.private ? null : msg.from;
    this.lastTs = ts;
    this.count += 1;
    while (this.log.children.length > MAX_MESSAGES) this.log.firstElementChild.remove();
    if (atBottom || mine) this.log.scrollTop = this.log.scrollHeight;
  }

  scrollToEnd() {
    this.log.scrollTop = this.log.scrollHeight;
  }
}
