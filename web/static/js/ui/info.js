// Meeting details: the link, the dial-in numbers and PIN (from `joined.dial_in`), and an
// invitation to copy.

import { h } from '../lib/dom.js';

function spacedPin(pin) {
  return String(pin).replace(/(\d{3})(?=\d)/g, '$1 ');
}

/** tel: URI that dials the number, waits, and sends the PIN and #. */
export function telLink(number, pin) {
  const digits = String(number).replace(/[^\d+]/g, '');
  return pin ? `tel:${digits},,${String(pin).replace(/\D/g, '')}%23` : `tel:${digits}`;
}

/** The usable dial-in numbers of `joined.dial_in` (none when it is null or has no PIN). */
export function dialInNumbers(dialIn) {
  if (!dialIn || typeof dialIn !== 'object' || !dialIn.pin) return [];
  const numbers = Array.isArray(dialIn.numbers) ? dialIn.numbers : [];
  return numbers.filter((n) => n && typeof n === 'object' && (n.number || n.formatted));
}

export function meetingUrl(room) {
  return `${window.location.origin}/${encodeURIComponent(room)}`;
}

export function renderInfo(els, room, dialIn) {
  els.link.textContent = meetingUrl(room);
  const numbers = dialInNumbers(dialIn);
  const hasDialIn = numbers.length > 0;
  els.block.hidden = !hasDialIn;
  els.none.hidden = hasDialIn;
  if (!hasDialIn) {
    els.numbers.replaceChildren();
    els.pin.textContent = '';
    return;
  }
  els.pin.textContent = spacedPin(dialIn.pin);
  els.numbers.replaceChildren(...numbers.map((n) => h('li', {},
    h('a', { href: telLink(n.number || n.formatted, dialIn.pin) }, n.formatted || n.number),
    n.country ? h('span', { class: 'dialin-country' }, n.country) : null,
    n.toll_free ? h('span', { class: 'tag' }, 'Toll-free') : null)));
}

export function invitation(room, dialIn) {
  const lines = [`Join the meeting "${room}": ${meetingUrl(room)}`];
  const numbers = dialInNumbers(dialIn);
  if (numbers.length) {
    lines.push('', 'Or join by phone:');
    for (const n of numbers) {
      const extra = [n.country, n.toll_free ? 'toll-free' : ''].filter(Boolean).join(', ');
      lines.push(`  ${n.formatted || n.number}${extra ? ` (${extra})` : ''}`);
    }
    lines.push(`  PIN: ${dialIn.pin}#`);
  }
  return lines.join('\n');
}
