// Recording on the meeting page: everyone sees the indicator (top bar) while the room is
// being recorded; moderators get a button in the participants panel that starts or stops
// it, with video or not, or start a live stream (`recording` messages, docs/recording.md).

import { $ } from '../lib/dom.js';
import { toast } from './toasts.js';

export class RecordingControls {
  constructor(send) {
    this.send = send;
    this.active = false;
    this.moderator = false;
    const button = $('#rec-toggle');
    button.addEventListener('click', () => {
      button.disabled = true; // until the room's state comes back (or an error)
      if (this.active) {
        this.send('recording', { action: 'stop' });
      } else {
        this.send('recording', { action: 'start', video: $('#rec-video').checked });
      }
    });
    // A live stream: a YouTube stream key, or a whole rtmp:// address. The key is a
    // password field's value: never shown, never kept by the page.
    $('#rec-stream-start').addEventListener('click', () => {
      const input = $('#rec-stream-key');
      const target = input.value.trim();
      if (!target) {
        input.focus();
        return;
      }
      const message = { action: 'start', mode: 'stream' };
      if (/^rtmps?:\/\//i.test(target)) message.url = target;
      else message.youtube_key = target;
      $('#rec-stream-start').disabled = true;
      button.disabled = true;
      this.send('recording', message);
      input.value = '';
    });
  }

  /** The room's state changed (a `recording` message); `announce`: tell it in a toast. */
  update(active, moderator, announce = true) {
    const changed = Boolean(active) !== this.active;
    this.active = Boolean(active);
    if (changed && announce) {
      toast(this.active ? 'This meeting is now being recorded' : 'Recording stopped',
        { icon: 'info', kind: this.active ? 'warn' : '' });
    }
    this.render(moderator);
  }

  /** A refused start (`recording-refused`): the button works again. */
  refused(message) {
    toast(`Recording could not start: ${message}`, { icon: 'warning', kind: 'bad' });
    this.render(this.moderator);
  }

  render(moderator) {
    this.moderator = Boolean(moderator);
    $('#rec-indicator').hidden = !this.active;
    const button = $('#rec-toggle');
    $('#rec-actions').hidden = !this.moderator; // in the participants panel
    button.disabled = false;
    button.textContent = this.active ? 'Stop recording' : 'Record';
    button.setAttribute('aria-pressed', String(this.active));
    $('#rec-video-option').hidden = this.active;
    $('#rec-stream').hidden = this.active;
    $('#rec-stream-start').disabled = false;
  }
}
