// Short notices at the top of the page: joins, leaves, moderator actions. At most a few at once.

import { $, h, icon } from '../lib/dom.js';

const MAX_TOASTS = 4;

/** toast('Ada joined', {icon: 'people', kind: 'warn' | 'bad', timeout: ms}) */
export function toast(text, { icon: iconName = 'info', kind = '', timeout = 4000 } = {}) {
  const box = $('#toasts');
  if (!box) return;
  const el = h('div', { class: `toast ${kind}`.trim() }, icon(iconName), h('span', {}, text));
  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  window.setTimeout(() => {
    el.classList.add('leaving');
    window.setTimeout(() => el.remove(), 300);
  }, timeout);
}
