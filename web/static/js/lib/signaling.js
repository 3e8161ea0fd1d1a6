// The signaling WebSocket (docs/signaling.md, version 1): JSON objects with a "type".
//
//   const sig = new Signaling(url);
//   sig.on('offer', (msg) => ...);       // one handler list per server message type
//   sig.onclose = ({code, reason, wasClean}) => ...;
//   await sig.open();
//   sig.send('join', {version: 1, room, name, audio, video});

export const PROTOCOL_VERSION = 1;
const PING_EVERY_MS = 20000;
const MAX_MESSAGE = 64 * 1024;

export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  KICKED: 4001,
  BAD_MESSAGES: 4002,
  ROOM_FULL: 4003,
  NO_ROOM: 4004,
  FLOOD: 4008,
  ELSEWHERE: 4009,
  MEDIA_FAILED: 4010,
  BAD_TOKEN: 4011,
  PASSWORD: 4012,
  DENIED: 4013,
  NOT_ALLOWED: 4014,
  TRY_LATER: 4029,
});

/** ws(s)://this-host/ws */
export function signalingUrl(location = window.location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

export class Signaling {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.handlers = new Map();
    this.onclose = null;
    this.pingTimer = 0;
    this.pingId = 0;
    this.closed = false;
  }

  /** Resolves when the socket is open; rejects if it closes first. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        this.pingTimer = window.setInterval(() => this.send('ping', { id: `p${++this.pingId}` }),
          PING_EVERY_MS);
        resolve();
      });
      ws.addEventListener('message', (event) => this.dispatch(event.data));
      ws.addEventListener('close', (event) => {
        window.clearInterval(this.pingTimer);
        const wasOpen = opened;
        this.closed = true;
        if (!opened) reject(new Error(`signaling: could not connect (${event.code})`));
        if (wasOpen && this.onclose) {
          this.onclose({ code: event.code, reason: event.reason, wasClean: event.wasClean });
        }
      });
    });
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
  }

  dispatch(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('signaling: a message that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    const handlers = this.handlers.get(msg.type) || [];
    for (const handler of handlers) {
      try {
        handler(msg);
      } catch (err) {
        console.warn(`signaling: handling ${msg.type} failed`, err);
      }
    }
  }

  /** Send one message; false when the socket is not open or the message is too large. */
  send(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const text = JSON.stringify({ type, ...fields });
    if (text.length > MAX_MESSAGE) {
      console.warn(`signaling: ${type} message too large, not sent`);
      return false;
    }
    this.ws.send(text);
    return true;
  }

  close(code = CLOSE.NORMAL) {
    window.clearInterval(this.pingTimer);
    this.onclose = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code);
  }
}
