// The participants pane: everyone in the room, their state, and moderator actions. Phone
// callers are listed like browsers, with a handset where a browser's camera state is; the
// moderator's mute and remove work the same for both (docs/signaling.md, `moderate`).

import { h, icon, avatar, phoneIcon, PHONE_LABEL } from '../lib/dom.js';

function roleText(p, isSelf) {
  const parts = [];
  if (isSelf) parts.push('You');
  if (p.role === 'moderator') parts.push('Moderator');
  if (p.kind === 'phone') parts.push('Phone');
  if (p.screen) parts.push('Presenting');
  return parts;
}

/**
 * @param {HTMLElement} list
 * @param {{participants: object[], selfId: string, moderator: boolean,
 *          onMute: (p) => void, onKick: (p) => void, onSendBack?: (p) => void}} options
 */
export function renderPeople(list, { participants, selfId, moderator, onMute, onKick, onSendBack }) {
  const sorted = [...participants].sort((a, b) => {
    if (a.id === selfId) return -1;
    if (b.id === selfId) return 1;
    if (a.hand !== b.hand) return a.hand ? -1 : 1;
    return a.name.localeCompare(b.name);
  });
  list.replaceChildren(...sorted.map((p) => {
    const isSelf = p.id === selfId;
    const av = avatar(p);
    const micOff = p.muted || !p.audio;
    const icons = [];
    if (p.hand) icons.push(h('span', { title: 'Hand raised' }, icon('hand', 'icon hand')));
    if (p.kind === 'phone') {
      icons.push(h('span', { class: 'person-kind', title: 'Phone caller' }, phoneIcon('icon', PHONE_LABEL)));
    } else {
      icons.push(h('span', { title: p.video ? 'Camera on' : 'Camera off' },
        icon(p.video ? 'cam' : 'cam-off', p.video ? 'icon' : 'icon off')));
    }
    if (moderator && !isSelf) {
      icons.push(h('button', {
        class: 'icon-btn', type: 'button', disabled: micOff,
        'aria-label': micOff ? `${p.name} is muted` : `Mute ${p.name}`,
        'data-tooltip': micOff ? 'Muted' : 'Mute', onclick: () => onMute(p),
      }, icon(micOff ? 'mic-off' : 'mic', micOff ? 'icon off' : 'icon')));
      // a phone caller too, once in the meeting (not a callee still ringing)
      const inMeeting = p.kind !== 'phone' || !p.state || p.state === 'in-meeting';
      if (onSendBack && inMeeting && p.role !== 'moderator') {
        icons.push(h('button', {
          class: 'icon-btn', type: 'button', 'aria-label': `Move ${p.name} to the lobby`,
          'data-tooltip': 'Move to lobby', 'data-action': 'send-back', onclick: () => onSendBack(p),
        }, icon('leave')));
      }
      icons.push(h('button', {
        class: 'icon-btn danger', type: 'button', 'aria-label': `Remove ${p.name} from the meeting`,
        'data-tooltip': 'Remove', onclick: () => onKick(p),
      }, icon('remove')));
    } else {
      icons.push(h('span', { title: micOff ? 'Muted' : 'Microphone on' },
        icon(micOff ? 'mic-off' : 'mic', micOff ? 'icon off' : 'icon')));
    }
    const sub = roleText(p, isSelf);
    return h('li', { class: 'person', 'data-participant': p.id },
      av,
      h('div', { class: 'person-main' },
        h('div', { class: 'person-name' }, p.name),
        sub.length ? h('div', { class: 'person-sub' },
          p.role === 'moderator' ? icon('star') : null, sub.join(' · ')) : null),
      h('div', { class: 'person-icons' }, icons));
  }));
}

/** Light up the avatars of who is speaking (and mark the dominant speaker), without redrawing
 * the list. */
export function markSpeaking(list, speaking, dominant = null) {
  for (const row of list.children) {
    const id = row.dataset.participant;
    row.querySelector('.avatar')?.classList.toggle('speaking', speaking.has(id));
    row.classList.toggle('dominant', id === dominant);
  }
}
