// The end screen: why the meeting ended for us, and a way back in (sometimes by itself).

import { $, setIcon } from '../lib/dom.js';
import { CLOSE } from '../lib/signaling.js';

let countdown = 0;

/** {kind, title, text, icon, retry} for a close code (or 'timeout' / 'join-error'). */
export function endReason(code, kickedBy = null, message = '') {
  switch (code) {
    case CLOSE.KICKED:
      return { kind: 'kicked', icon: 'remove', title: 'You were removed from the meeting',
        text: `${kickedBy || 'A moderator'} removed you.`, retry: false };
    case CLOSE.NO_ROOM:
      return { kind: 'no-room', icon: 'warning', title: 'This meeting does not exist',
        text: 'Meetings on this server are set up by its administrator. Check the link you were given.', retry: false };
    case CLOSE.ROOM_FULL:
      return { kind: 'full', icon: 'people', title: 'This meeting is full',
        text: 'Try again when someone leaves.', retry: false };
    case CLOSE.ELSEWHERE:
      return { kind: 'elsewhere', icon: 'info', title: 'You joined from somewhere else',
        text: 'This meeting is open in another tab or on another device.', retry: false };
    case CLOSE.BAD_TOKEN:
      return { kind: 'bad-token', icon: 'warning', title: 'Your meeting link is not valid',
        text: message || 'The token in the link was refused. Ask for a new link.', retry: false };
    case CLOSE.DENIED:
      return { kind: 'denied', icon: 'remove', title: 'You were not let in',
        text: 'A moderator declined your request to join.', retry: false };
    case CLOSE.NOT_ALLOWED:
      return { kind: 'not-allowed', icon: 'warning', title: 'You cannot join this meeting',
        text: message || 'This meeting is for invited participants only.', retry: false };
    case CLOSE.MEDIA_FAILED:
      return { kind: 'media', icon: 'warning', title: 'Audio and video could not connect',
        text: 'A firewall may be blocking the media. Trying again often helps.', retry: true };
    case CLOSE.TRY_LATER:
      return { kind: 'moving', icon: 'warning', title: 'The meeting is moving',
        text: 'It is starting again on another server: this page rejoins by itself.', retry: true };
    case CLOSE.GOING_AWAY:
      return { kind: 'restart', icon: 'warning', title: 'The server is restarting',
        text: 'You can rejoin in a moment.', retry: true };
    case CLOSE.BAD_MESSAGES:
    case CLOSE.FLOOD:
    case CLOSE.POLICY:
    case 1003:
    case 1009:
      return { kind: 'protocol', icon: 'warning', title: 'The server ended the connection',
        text: `It did not accept what this page sent (code ${code}).`, retry: false };
    case CLOSE.NORMAL:
      return { kind: 'closed', icon: 'leave', title: 'The meeting ended for you',
        text: 'The server closed the connection.', retry: false };
    case 'timeout':
      return { kind: 'timeout', icon: 'warning', title: 'Could not join the meeting',
        text: 'The server did not answer in time.', retry: true };
    case 'join-error':
      return { kind: 'refused', icon: 'warning', title: 'Could not join the meeting',
        text: message || 'The server refused to let this page join.', retry: false };
    default:
      if (message && code >= 4000) {
        return { kind: 'refused', icon: 'warning', title: 'Could not stay in the meeting',
          text: message, retry: false };
      }
      return { kind: 'lost', icon: 'warning', title: 'You were disconnected',
        text: 'The connection to the server was lost. Check your network.', retry: true };
  }
}

/** Fill the end screen; onRejoin runs on the button or when autoRetry seconds pass. */
export function showEnded(reason, onRejoin) {
  window.clearInterval(countdown);
  const r = reason.kind === 'left'
    ? { icon: 'leave', title: 'You left the meeting', text: 'Hope it went well.' }
    : reason;
  $('#ended-title').textContent = r.title;
  $('#ended-text').textContent = r.text;
  setIcon($('#ended-icon'), r.icon);
  const button = $('#rejoin');
  let started = false;
  const go = () => {
    if (started) return;
    started = true;
    window.clearInterval(countdown);
    button.disabled = true;
    button.textContent = 'Joining…';
    onRejoin();
  };
  button.disabled = false;
  button.textContent = 'Rejoin';
  button.onclick = go;
  if (reason.autoRetry) {
    let left = reason.autoRetry;
    const paint = () => { button.textContent = `Rejoining in ${left} s`; };
    paint();
    countdown = window.setInterval(() => {
      left -= 1;
      if (left <= 0) go();
      else paint();
    }, 1000);
  }
}
