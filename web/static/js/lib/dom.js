// Small DOM helpers. User text only ever goes in through textContent (never innerHTML).

const ICONS = '/static/img/icons.svg';
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Create an element: h('div', {class: 'x', onclick: fn, 'aria-label': 'y'}, child, 'text'). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'style' && typeof value === 'object') {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An <svg> that shows one symbol of the icon sprite. */
export function icon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(SVG_NS, 'use');
  use.setAttribute('href', `${ICONS}#${name}`);
  svg.append(use);
  return svg;
}

// A telephone handset (the sprite's `phone` symbol), drawn inline so that it needs no second
// request and can carry its own accessible name.
const HANDSET_PATH = 'M5 3h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 12l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 5a2 2 0 0 1 2-2z';
export const PHONE_LABEL = 'phone caller';

/**
 * An inline <svg> handset. With a label it is an image named by it (role="img", aria-label
 * and <title>); without one it is decoration (aria-hidden).
 */
export function phoneIcon(cls = 'icon', label = PHONE_LABEL) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({
    class: `${cls} phone-icon`, viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor',
    'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', focusable: 'false',
  })) svg.setAttribute(k, v);
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const title = document.createElementNS(SVG_NS, 'title');
    title.textContent = label;
    svg.append(title);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', HANDSET_PATH);
  svg.append(path);
  return svg;
}

/** Point an existing sprite <svg> (or its <use>) at another symbol. */
export function setIcon(svg, name) {
  const use = svg.tagName.toLowerCase() === 'use' ? svg : svg.querySelector('use');
  use.setAttribute('href', `${ICONS}#${name}`);
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** "Ada Lovelace" -> "AL"; "+1 555 0100" -> "" (callers get the phone icon instead). */
export function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter((w) => /\p{L}/u.test(w));
  if (words.length === 0) return '';
  const first = [...words[0]][0] || '';
  const last = words.length > 1 ? [...words[words.length - 1]][0] || '' : '';
  return (first + last).toUpperCase();
}

/** A stable, pleasant colour for a participant. */
export function colorFor(seed) {
  let hash = 0;
  for (const ch of String(seed)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const hues = [222, 262, 292, 330, 12, 28, 160, 188, 204, 245];
  return `hsl(${hues[hash % hues.length]} 55% 48%)`;
}

const MAX_AVATAR_URL = 1024; // focus/tokens.py MAX_AVATAR_URL

/** The participant's picture (from its token) if it is one the page may load: an https: URL
 * the server already checked (focus/tokens.py avatar_url); checked again here. */
export function avatarUrl(participant) {
  const url = participant.avatar;
  if (typeof url !== 'string' || url.length > MAX_AVATAR_URL) return null;
  return /^https:\/\/[^\s"'<>\\`]+$/i.test(url) ? url : null;
}

/** An avatar element: initials on a colour, or an icon (phone, person) when there are none;
 * the token's picture over them when there is one (initials show if it does not load). */
export function avatar(participant, cls = 'avatar') {
  const el = h('div', { class: cls, 'aria-hidden': 'true' });
  el.style.setProperty('--avatar', colorFor(participant.id || participant.name));
  if (participant.kind === 'phone') {
    el.append(phoneIcon('icon', null));
    return el;
  }
  const text = initials(participant.name);
  if (text) el.textContent = text;
  else el.append(icon('people'));
  const url = avatarUrl(participant);
  if (url) {
    const img = h('img', { class: 'avatar-img', alt: '', referrerpolicy: 'no-referrer', decoding: 'async' });
    img.addEventListener('error', () => { img.hidden = true; }, { once: true });
    img.src = url; // a property, never markup
    el.append(img);
  }
  return el;
}

export function formatClock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function formatBitrate(bps) {
  if (!Number.isFinite(bps)) return '–';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}

/** Copy text to the clipboard; true when it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { style: { position: 'fixed', opacity: '0' } });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    area.remove();
    return ok;
  }
}

/** True when a key press belongs to a text field, not to the page's shortcuts. */
export function isTyping(event) {
  const t = event.target;
  if (!(t instanceof HTMLElement)) return false;
  return t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName);
}
