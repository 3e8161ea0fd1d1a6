// The meeting's controls: toolbar and panel buttons, and the keyboard shortcuts.

import { $, copyText, isTyping } from '../lib/dom.js';
import { showShortcuts } from './dialogs.js';
import { invitation, meetingUrl } from './info.js';
import { SHORTCUTS } from './toolbar.js';
import { toast } from './toasts.js';

/** Wire the page's controls to a Meeting (room.js). */
export function wireControls(m) {
  const actions = {
    'btn-mic': () => m.toggleMic(),
    'btn-cam': () => m.toggleCam(),
    'btn-screen': () => m.toggleScreen(),
    'btn-hand': () => m.toggleHand(),
    'btn-chat': () => m.togglePanel('chat'),
    'btn-people': () => m.togglePanel('people'),
    'btn-info': () => m.togglePanel('info'),
    'topbar-info': () => m.togglePanel('info'),
    'btn-leave': () => m.leave(),
    'panel-close': () => m.togglePanel(m.panel),
    'mute-all': () => m.muteAll(),
    'copy-link': async () => toast(await copyText(meetingUrl(m.room)) ? 'Link copied' : 'Could not copy', { icon: 'copy' }),
    'copy-invite': async () => toast(await copyText(invitation(m.room, m.dialIn)) ? 'Invitation copied' : 'Could not copy', { icon: 'copy' }),
  };
  for (const [id, action] of Object.entries(actions)) $(`#${id}`).addEventListener('click', action);
  $('#screen-area').addEventListener('click', (e) => {
    if (e.target.closest('[data-action="stop-screen"]')) m.toggleScreen();
  });
  const keys = {
    m: () => m.toggleMic(), v: () => m.toggleCam(), s: () => m.local.canShareScreen && m.toggleScreen(),
    h: () => m.toggleHand(), c: () => m.togglePanel('chat'), p: () => m.togglePanel('people'),
    i: () => m.togglePanel('info'), '?': () => showShortcuts(SHORTCUTS),
  };
  document.addEventListener('keydown', (event) => {
    if (m.view !== 'meeting' || event.defaultPrevented) return;
    if (event.key === 'Escape' && m.panel && !document.querySelector('dialog[open]')) {
      m.togglePanel(m.panel);
      return;
    }
    if (isTyping(event) || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const action = keys[event.key.toLowerCase()] || keys[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
  window.addEventListener('pagehide', () => {
    if (m.view === 'meeting' && m.sig) m.sig.send('leave');
  });
}
