// Meeting details: the link, the dial-in numbers and PIN (from `joined.dial_in`), the host
// PIN for moderators (`joined.dial_in.host_pin`, or a later `dial-in`), and an invitation to
// copy (without the host PIN).

import { $, h } from '../lib/dom.js';

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
  // the host PIN comes to moderators only (docs/signaling.md); never in the invitation
  const hostPin = hasDialIn && typeof dialIn.host_pin === 'string' && /^\d+$/.test(dialIn.host_pin)
    ? dialIn.host_pin : '';
  if (els.hostRow) els.hostRow.hidden = !hostPin;
  if (els.hostPin) els.hostPin.textContent = hostPin ? spacedPin(hostPin) : '';
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

/** The meeting details' dial-in part and the hint shown to the only one in the room. */
export function showDialIn(room, dialIn) {
  renderInfo({
    link: $('#info-link'), block: $('#dialin-block'), none: $('#dialin-none'),
    pin: $('#dialin-pin'), numbers: $('#dialin-numbers'),
    hostRow: $('#dialin-host-row'), hostPin: $('#dialin-host-pin'),
  }, room, dialIn);
  $('#alone-hint').textContent = dialInNumbers(dialIn).length
    ? 'You are the only one here. Share the link or the dial-in number to invite others.'
    : 'You are the only one here. Share the link to invite others.';
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
