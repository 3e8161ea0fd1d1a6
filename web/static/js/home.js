// The home page: join a room by name, start a new one, or go back to a recent one.

import { $, h, avatar } from './lib/dom.js';
import { recentRooms } from './lib/storage.js';
import { randomRoomName, toRoomName } from './lib/rooms.js';

function go(name) {
  window.location.assign(`/${encodeURIComponent(name)}`);
}

function ago(ts) {
  const seconds = (Date.now() - ts) / 1000;
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  const days = Math.floor(seconds / 86400);
  if (days < 30) return days === 1 ? 'yesterday' : `${days} days ago`;
  return new Date(ts).toLocaleDateString();
}

function renderRecent() {
  const rooms = recentRooms();
  const list = $('#recent-list');
  list.replaceChildren(...rooms.map((room) => h('li', {},
    h('a', { href: `/${encodeURIComponent(room.name)}` },
      avatar({ id: room.name, name: room.name.replace(/[-_.]+/g, ' ') }),
      h('span', { class: 'recent-name' }, room.name),
      h('span', { class: 'recent-when' }, ago(room.ts))))));
  $('#recent').hidden = rooms.length === 0;
}

function init() {
  const form = $('#join-form');
  const input = $('#room-input');
  $('#room-prefix').textContent = `${window.location.host}/`;

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = toRoomName(input.value);
    if (!name) {
      form.classList.add('invalid');
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    go(name);
  });
  input.addEventListener('input', () => {
    form.classList.remove('invalid');
    input.removeAttribute('aria-invalid');
  });
  $('#new-button').addEventListener('click', () => go(randomRoomName()));
  renderRecent();
}

init();
