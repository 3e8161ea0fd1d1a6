// Recording on the meeting page: everyone sees the indicator (top bar) while the room is
// being recorded; moderators get a button in the participants panel that starts or stops
// it, with video or not, or start a live stream (`recording` messages, docs/recording.md).
// A host (a moderator by token) also gets the room's recordings to download: fetched with
// the token in a header (never in an address), saved from a blob.

import { $ } from '../lib/dom.js';
import { toast } from './toasts.js';

export class RecordingControls {
  constructor(send, meeting = null) {
    this.send = send;
    this.meeting = meeting;
    $('#rec-files').addEventListener('toggle', () => {
      if ($('#rec-files').open) this.listFiles();
    });
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

  /** The room's recordings with a download button per file (hosts only: the API wants a
   *  moderator's token for the room). */
  async listFiles() {
    const token = this.meeting && this.meeting.token;
    const list = $('#rec-file-list');
    if (!token) return;
    const room = encodeURIComponent(this.meeting.room);
    let items = [];
    try {
      const resp = await fetch(`/api/rooms/${room}/recordings`,
        { headers: { Authorization: `Bearer ${token}` } });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      items = await resp.json();
    } catch (err) {
      list.replaceChildren();
      toast(`The recordings could not be listed (${err.message})`, { icon: 'warning', kind: 'bad' });
      return;
    }
    const rows = items.slice(-20).reverse().map((item) => {
      const li = document.createElement('li');
      const when = document.createElement('span');
      when.textContent = `${(item.start || '').replace('T', ' ').slice(0, 16)} (${item.state})`;
      li.append(when);
      for (const file of item.files || []) {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'btn btn-secondary btn-sm rec-file';
        button.textContent = file.name;
        button.dataset.file = file.name;
        button.addEventListener('click', () => this.download(item.id, file.name));
        li.append(button);
      }
      return li;
    });
    if (!rows.length) {
      const li = document.createElement('li');
      li.textContent = 'No recordings yet';
      rows.push(li);
    }
    list.replaceChildren(...rows);
  }

  async download(id, name) {
    const room = encodeURIComponent(this.meeting.room);
    const resp = await fetch(
      `/api/rooms/${room}/recordings/${encodeURIComponent(id)}/files/${encodeURIComponent(name)}`,
      { headers: { Authorization: `Bearer ${this.meeting.token}` } });
    if (!resp.ok) {
      toast(`${name} could not be downloaded (HTTP ${resp.status})`, { icon: 'warning', kind: 'bad' });
      return;
    }
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = `${id}-${name}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  render(moderator) {
    this.moderator = Boolean(moderator);
    $('#rec-files').hidden = !(this.moderator && this.meeting && this.meeting.token);
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
