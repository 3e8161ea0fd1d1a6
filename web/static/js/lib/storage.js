// What the browser remembers between visits: the display name, device choices, recent rooms.
// localStorage can throw (Safari private mode, storage disabled): every access is guarded.

const PREFIX = 'switchboard.';
const MAX_RECENT = 6;

function read(key, fallback) {
  try {
    const raw = window.localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    window.localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    /* not remembered: harmless */
  }
}

export const prefs = {
  get name() { return read('name', ''); },
  set name(v) { write('name', String(v).slice(0, 64)); },
  get micId() { return read('micId', ''); },
  set micId(v) { write('micId', v || ''); },
  get camId() { return read('camId', ''); },
  set camId(v) { write('camId', v || ''); },
  get micOn() { return read('micOn', true) !== false; },
  set micOn(v) { write('micOn', Boolean(v)); },
  get camOn() { return read('camOn', true) !== false; },
  set camOn(v) { write('camOn', Boolean(v)); },
  get noiseSuppression() { return read('noiseSuppression', true) !== false; },
  set noiseSuppression(v) { write('noiseSuppression', Boolean(v)); },
};

/** [{name, ts}] most recent first. */
export function recentRooms() {
  const list = read('recent', []);
  return Array.isArray(list)
    ? list.filter((r) => r && typeof r.name === 'string' && typeof r.ts === 'number')
    : [];
}

export function rememberRoom(name) {
  const list = recentRooms().filter((r) => r.name !== name);
  list.unshift({ name, ts: Date.now() });
  write('recent', list.slice(0, MAX_RECENT));
}

export function forgetRoom(name) {
  write('recent', recentRooms().filter((r) => r.name !== name));
}
