// Modal dialogs: a confirmation, and the keyboard shortcut list.

import { $, h } from '../lib/dom.js';

/** Resolves true when the user confirms. Uses <dialog>; falls back to window.confirm. */
export function confirmDialog({ title, text, confirm = 'OK', danger = false }) {
  if (typeof HTMLDialogElement !== 'function') return Promise.resolve(window.confirm(text));
  return new Promise((resolve) => {
    const ok = h('button', { class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, type: 'button' }, confirm);
    const cancel = h('button', { class: 'btn btn-secondary', type: 'button' }, 'Cancel');
    const dialog = h('dialog', { class: 'dialog confirm', 'aria-label': title },
      h('header', { class: 'dialog-header' }, h('h2', {}, title)),
      h('p', { class: 'dialog-text' }, text),
      h('div', { class: 'dialog-actions' }, cancel, ok));
    let answer = false;
    ok.addEventListener('click', () => { answer = true; dialog.close(); });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/** Fill and open the shortcut dialog: [{key, label}]. */
export function showShortcuts(shortcuts) {
  const dialog = $('#shortcuts');
  const list = $('#shortcut-list');
  list.replaceChildren(...shortcuts.flatMap(({ key, label }) => [
    h('dt', {}, label), h('dd', {}, h('kbd', {}, key)),
  ]));
  if (!dialog.dataset.wired) {
    dialog.dataset.wired = '1';
    dialog.querySelector('[data-close]').addEventListener('click', () => dialog.close());
    dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); });
  }
  if (!dialog.open) dialog.showModal();
}
