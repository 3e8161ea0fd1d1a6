// Recording on the meeting page: everyone sees the indicator (top bar) while the room is
// being recorded; moderators get a button in the participants panel that starts or stops
// it (`recording` messages, docs/recording.md).

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
      this.send('recording', { action: this.active ? 'stop' : 'start' });
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
  }
}
