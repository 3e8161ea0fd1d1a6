// The connection-quality button in the top bar and its details popover.

import { h, formatBitrate } from '../lib/dom.js';
import { qualityLevel } from '../lib/quality.js';

const LABELS = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' };

function ms(v) {
  return Number.isFinite(v) ? `${Math.round(v)} ms` : '–';
}

function pct(v) {
  return Number.isFinite(v) ? `${(v * 100).toFixed(v < 0.1 ? 1 : 0)} %` : '–';
}

export class QualityView {
  constructor({ button, label, pop }) {
    this.button = button;
    this.label = label;
    this.pop = pop;
    this.local = null;
    this.server = null;
    this.state = 'new';
    button.addEventListener('click', () => this.toggle());
    document.addEventListener('click', (event) => {
      if (!this.pop.hidden && !this.pop.contains(event.target) && !this.button.contains(event.target)) this.toggle(false);
    });
  }

  toggle(open = this.pop.hidden) {
    this.pop.hidden = !open;
    this.button.setAttribute('aria-expanded', String(open));
    if (open) this.paintDetails();
  }

  /** state: the RTCPeerConnection's connectionState */
  update({ local = this.local, server = this.server, state = this.state } = {}) {
    this.local = local;
    this.server = server;
    this.state = state;
    let level = 'connecting';
    let text = 'Connecting';
    if (state === 'failed' || state === 'disconnected') {
      level = 'poor';
      text = 'Reconnecting';
    } else if (state === 'connected') {
      const rtt = Math.max(local?.rttMs ?? 0, server?.rtt_ms ?? 0);
      const loss = Math.max(local?.lossIn ?? 0, local?.lossOut ?? 0, server?.loss ?? 0);
      level = qualityLevel({ rttMs: rtt, loss });
      text = LABELS[level];
    }
    this.button.dataset.level = level;
    this.label.textContent = text;
    this.button.setAttribute('aria-label', `${text}. Connection details`);
    this.button.dataset.tooltip = text;
    this.button.dataset.tooltipPos = 'below';
    if (!this.pop.hidden) this.paintDetails();
  }

  paintDetails() {
    const l = this.local || {};
    const s = this.server;
    const rows = (pairs) => h('dl', {}, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const parts = [
      h('h3', {}, 'This browser'),
      rows([
        ['Round trip', ms(l.rttMs)],
        ['Receiving', formatBitrate(l.bitrateIn)],
        ['Sending', formatBitrate(l.bitrateOut)],
        ['Loss received', pct(l.lossIn)],
        ['Loss sent', pct(l.lossOut)],
      ]),
    ];
    if (s) {
      parts.push(h('h3', {}, 'The server'), rows([
        ['Round trip', ms(s.rtt_ms)],
        ['Receiving from you', formatBitrate(s.receive_bitrate)],
        ['Sending to you', formatBitrate(s.send_bitrate)],
        ['Loss', pct(s.loss)],
      ]));
    }
    this.pop.replaceChildren(...parts);
  }
}
