// The toolbar: each button's icon, label (with its shortcut, for tooltips and screen readers),
// pressed state and badge, redrawn from the meeting state.

import { $, h, icon, setIcon } from '../lib/dom.js';

/** Shortcut keys; the dialog lists them in this order. */
export const SHORTCUTS = [
  { key: 'M', label: 'Mute or unmute the microphone' },
  { key: 'V', label: 'Turn the camera on or off' },
  { key: 'S', label: 'Share the screen or stop' },
  { key: 'H', label: 'Raise or lower your hand' },
  { key: 'C', label: 'Open or close the chat' },
  { key: 'P', label: 'Show or hide the participants' },
  { key: 'I', label: 'Meeting details and dial-in' },
  { key: 'Esc', label: 'Close the side panel' },
  { key: '?', label: 'Show these shortcuts' },
];

function setup(button) {
  if (button.dataset.ready) return;
  button.dataset.ready = '1';
  button.append(icon('mic'));
  const badge = h('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
  button.append(badge);
}

/** Set one button: {icon, label, key, pressed, cls, disabled, badge, badgeCls} */
function paint(button, { icon: iconName, label, key, pressed, cls = '', disabled = false, badge = '', badgeCls = '' }) {
  setup(button);
  setIcon(button.querySelector('svg'), iconName);
  const text = key ? `${label} (${key})` : label;
  button.setAttribute('aria-label', text);
  button.dataset.tooltip = text;
  if (key) button.setAttribute('aria-keyshortcuts', key.toLowerCase());
  if (pressed !== undefined) button.setAttribute('aria-pressed', String(Boolean(pressed)));
  button.className = `tool ${button.dataset.base || ''} ${cls}`.replace(/\s+/g, ' ').trim();
  button.disabled = disabled;
  const b = button.querySelector('.badge');
  b.hidden = !badge;
  b.textContent = badge;
  b.className = `badge ${badgeCls}`.trim();
}

/**
 * @param {object} s
 * @param {boolean} s.hasMic @param {boolean} s.muted @param {boolean} s.camOn
 * @param {boolean} s.canCam @param {boolean} s.sharing @param {boolean} s.canShare
 * @param {boolean} s.hand @param {string|null} s.panel @param {number} s.unread @param {number} s.count
 */
export function renderToolbar(s) {
  for (const id of ['btn-info', 'btn-leave']) {
    const el = $(`#${id}`);
    if (!el.dataset.base) el.dataset.base = el.classList.contains('tool-extra') ? 'tool-extra' : 'tool-leave';
  }
  paint($('#btn-mic'), !s.hasMic
    ? { icon: 'mic-off', label: 'No microphone', cls: 'off', disabled: true, pressed: false }
    : { icon: s.muted ? 'mic-off' : 'mic', label: s.muted ? 'Unmute microphone' : 'Mute microphone',
      key: 'M', pressed: !s.muted, cls: s.muted ? 'off' : '' });
  paint($('#btn-cam'), {
    icon: s.camOn ? 'cam' : 'cam-off', label: s.camOn ? 'Turn off camera' : 'Turn on camera',
    key: 'V', pressed: s.camOn, cls: s.camOn ? '' : 'off', disabled: !s.canCam && !s.camOn,
  });
  const screen = $('#btn-screen');
  screen.hidden = !s.canShare;
  paint(screen, {
    icon: 'screen', label: s.sharing ? 'Stop presenting' : 'Share your screen', key: 'S',
    pressed: s.sharing, cls: s.sharing ? 'active' : '',
  });
  paint($('#btn-hand'), {
    icon: 'hand', label: s.hand ? 'Lower hand' : 'Raise hand', key: 'H', pressed: s.hand,
    cls: s.hand ? 'raised' : '',
  });
  paint($('#btn-chat'), {
    icon: 'chat', label: s.panel === 'chat' ? 'Close chat' : 'Open chat', key: 'C',
    pressed: s.panel === 'chat', cls: s.panel === 'chat' ? 'active' : '',
    badge: s.unread ? String(Math.min(99, s.unread)) : '',
  });
  paint($('#btn-people'), {
    icon: 'people', label: s.panel === 'people' ? 'Hide participants' : 'Show participants', key: 'P',
    pressed: s.panel === 'people', cls: s.panel === 'people' ? 'active' : '',
    badge: s.count ? String(s.count) : '', badgeCls: 'count',
  });
  paint($('#btn-info'), {
    icon: 'info', label: 'Meeting details', key: 'I', pressed: s.panel === 'info',
    cls: s.panel === 'info' ? 'active' : '',
  });
  paint($('#btn-leave'), { icon: 'leave', label: 'Leave meeting' });
}
