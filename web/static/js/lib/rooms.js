// Room names: the server's rule is [A-Za-z0-9._-]{1,64}, stored in lower case.

export const ROOM_RE = /^[A-Za-z0-9._-]{1,64}$/;
const RESERVED = new Set(['api', 'ws', 'static', 'favicon.ico', 'robots.txt', 'health']);

export function isRoomName(name) {
  return ROOM_RE.test(name) && !RESERVED.has(name.toLowerCase()) && name.replace(/\./g, '') !== '';
}

/**
 * What the user typed -> a room name, or '' when nothing usable is left.
 * Accepts a pasted meeting link ("https://host/standup" -> "standup") and plain words
 * ("Team Standup!" -> "team-standup").
 */
export function toRoomName(input) {
  let text = String(input || '').trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    try {
      text = new URL(text).pathname.split('/').filter(Boolean).pop() || '';
    } catch {
      /* not a URL after all */
    }
  }
  const name = text
    .normalize('NFKD').replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[\s/]+/g, '-')
    .replace(/[^a-z0-9._-]/g, '')
    .replace(/-{2,}/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 64);
  return isRoomName(name) ? name : '';
}

const ADJECTIVES = ['amber', 'brisk', 'calm', 'clever', 'cosmic', 'daring', 'eager', 'gentle',
  'golden', 'happy', 'lively', 'lucky', 'mellow', 'nimble', 'quiet', 'rapid', 'silver', 'sunny',
  'swift', 'vivid', 'witty', 'bold', 'bright', 'crisp'];
const NOUNS = ['badger', 'comet', 'falcon', 'harbor', 'heron', 'island', 'lagoon', 'maple',
  'meadow', 'orbit', 'otter', 'panda', 'pine', 'planet', 'raven', 'river', 'summit', 'tiger',
  'valley', 'willow', 'zebra', 'canyon', 'ember', 'glacier'];

function pick(list, random) {
  return list[random % list.length];
}

/** A readable, hard-to-guess name like "brisk-otter-4821". */
export function randomRoomName() {
  const r = new Uint32Array(3);
  crypto.getRandomValues(r);
  return `${pick(ADJECTIVES, r[0])}-${pick(NOUNS, r[1])}-${1000 + (r[2] % 9000)}`;
}
