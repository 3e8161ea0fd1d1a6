// What the browser remembers between visits: the display name, device choices, recent rooms;
// and for this tab only (sessionStorage), each room's resume token (a cluster's `joined`
// gives one: the next join presents it to get the same place back after a restart or a move).
// Storage can throw (Safari private mode, storage disabled): every access is guarded.

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

const RESUME_TOKEN = /^[A-Za-z0-9_-]{16,128}$/;

/** This tab's resume token for `room`, or null. Never put in a URL or logged. */
export function resumeToken(room) {
  try {
    const token = window.sessionStorage.getItem(`${PREFIX}resume.${room}`);
    return token && RESUME_TOKEN.test(token) ? token : null;
  } catch {
    return null;
  }
}

export function keepResumeToken(room, token) {
  if (typeof token !== 'string' || !RESUME_TOKEN.test(token)) return;
  try {
    window.sessionStorage.setItem(`${PREFIX}resume.${room}`, token);
  } catch {
    /* not kept: the next join is a new participant */
  }
}

export function dropResumeToken(room) {
  try {
    window.sessionStorage.removeItem(`${PREFIX}resume.${room}`);
  } catch {
    /* nothing kept */
  }
}

// A room-elsewhere answer (or a node that stopped answering, in a cluster) sends the page to
// another node, whose origin has a sessionStorage of its own: the token goes along in this
// tab's window.name (kept by browsers across a navigation within one site, as
// node1.example.org to node2.example.org), for that origin and that room only, with
// `autojoin` (the person had joined already: the page there joins at once, no pre-join
// screen); the page there takes it at once and clears window.name.
const HANDOVER = 'switchboard.resume:';

export function handOverResumeToken(room, url, { autojoin = false, fled = null } = {}) {
  const token = resumeToken(room);
  if (!token && !autojoin) return;
  try {
    const { origin } = new URL(url); // as the page there sees its own
    // With autojoin, the person's name and device choices go along too (localStorage is the
    // origin's own): the page there joins as this one did.
    const me = autojoin ? { name: prefs.name, micOn: prefs.micOn, camOn: prefs.camOn } : null;
    window.name = HANDOVER + JSON.stringify({
      room, origin, token, autojoin: Boolean(autojoin), fled: typeof fled === 'string' ? fled : null, me,
    });
  } catch {
    /* not handed over: a new participant there */
  }
}

/** Take what this tab's page on another node handed over for `room` here: its resume token is
 * kept; returns {autojoin, fled} (`fled`: the origin of a node that had stopped answering). */
export function takeHandedOverToken(room, origin = window.location.origin) {
  let data = null;
  try {
    if (typeof window.name === 'string' && window.name.startsWith(HANDOVER)) {
      data = JSON.parse(window.name.slice(HANDOVER.length));
      window.name = '';
    }
  } catch {
    window.name = '';
  }
  if (!data || data.room !== room || data.origin !== origin) return { autojoin: false, fled: null };
  if (data.token) keepResumeToken(room, data.token);
  const me = data.autojoin === true && data.me && typeof data.me === 'object' ? data.me : null;
  if (me && typeof me.name === 'string' && me.name.trim()) {
    prefs.name = me.name.trim();
    prefs.micOn = me.micOn !== false;
    prefs.camOn = me.camOn === true;
  }
  const fled = typeof data.fled === 'string' && /^https?:\/\/[^/?#]+$/.test(data.fled) ? data.fled : null;
  return { autojoin: data.autojoin === true, fled };
}

/** The other nodes of a cluster that `joined` listed: http(s) origins only, not this one. */
export function otherNodes(list, here = window.location.origin) {
  if (!Array.isArray(list)) return [];
  return list.filter((u) => typeof u === 'string' && /^https?:\/\/[^/?#]+$/.test(u) && u !== here)
    .slice(0, 16);
}
