// The stage's views: tile view (everyone the same size, ui/tiles.js) and speaker view (one
// participant large, the others as a strip below), pinning, full screen, and hiding one's own
// tile.
//
// In speaker view the large tile is the pinned participant if there is one, else the bridge's
// dominant speaker (the `dominant-speaker` events), else the last one shown; never ourselves
// while someone else is here (when we are the dominant speaker the previous one stays large).
// Pinning someone (the pin button on each tile) switches to speaker view with them large until
// they are unpinned or leave. A shared screen takes the stage in either view (ui/tiles.js).
//
// The stage gets the classes `speaker-view` and `hide-self`; the large tile `featured`, a
// pinned one `pinned` (CSS in css/staples.css).

import { $, h, icon } from '../lib/dom.js';

export class ViewControls {
  /** @param {object} meeting the Meeting of room.js (stage, participants, selfId, dominant) */
  constructor(meeting) {
    this.m = meeting;
    this.speakerView = false;
    this.hideSelf = false;
    this.pinned = null;
    this.lastFeatured = null;
    this.stageEl = $('#stage');
    this.grid = $('#grid');
    this.viewButton = $('#view-toggle');
    this.selfButton = $('#self-toggle');
    this.fullButton = $('#fullscreen-toggle');
    this.viewButton.addEventListener('click', () => this.setSpeakerView(!this.speakerView));
    this.selfButton.addEventListener('click', () => this.setHideSelf(!this.hideSelf));
    this.fullButton.hidden = !document.fullscreenEnabled;
    this.fullButton.addEventListener('click', () => this.toggleFullscreen());
    document.addEventListener('fullscreenchange', () => this.paintButtons());
    this.grid.addEventListener('click', (e) => {
      const pin = e.target.closest('.tile-pin');
      if (pin) this.pin(pin.closest('.tile')?.dataset.participant || null);
    });
    this.paintButtons();
  }

  setSpeakerView(on) {
    this.speakerView = on;
    if (!on) this.pinned = null;
    this.apply();
  }

  setHideSelf(on) {
    this.hideSelf = on;
    this.apply();
  }

  /** Pin `id` (or unpin it when it is pinned already). */
  pin(id) {
    if (!id) return;
    if (this.pinned === id) {
      this.pinned = null;
    } else {
      this.pinned = id;
      this.speakerView = true;
    }
    this.apply();
  }

  async toggleFullscreen() {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await $('#meeting').requestFullscreen();
    } catch (err) {
      console.info('layout: full screen refused', err.name);
    }
    this.paintButtons();
  }

  /** Who is large in speaker view (a participant id), or null. */
  featured() {
    const ids = [...this.grid.children].map((el) => el.dataset.participant);
    const self = this.m.selfId;
    const others = ids.filter((id) => id !== self);
    if (this.pinned && ids.includes(this.pinned)) return this.pinned;
    if (this.pinned) this.pinned = null; // they left
    const dominant = this.m.dominant;
    if (dominant && dominant !== self && ids.includes(dominant)) return dominant;
    if (this.lastFeatured && others.includes(this.lastFeatured)) return this.lastFeatured;
    return others[0] || ids[0] || null;
  }

  /** After each render and dominant-speaker change: classes, pin buttons, the large tile. */
  apply() {
    const featured = this.speakerView ? this.featured() : null;
    if (featured && featured !== this.m.selfId) this.lastFeatured = featured;
    this.stageEl.classList.toggle('speaker-view', this.speakerView);
    this.stageEl.classList.toggle('hide-self', this.hideSelf);
    for (const tile of this.grid.children) {
      const id = tile.dataset.participant;
      tile.classList.toggle('featured', id === featured);
      tile.classList.toggle('pinned', id === this.pinned);
      let pin = tile.querySelector(':scope > .tile-pin');
      if (!pin) {
        pin = h('button', { class: 'tile-pin', type: 'button' }, icon('pin'));
        tile.append(pin);
      }
      const name = id === this.m.selfId ? 'yourself' : (this.m.participants.get(id)?.name || 'this participant');
      const pinned = id === this.pinned;
      pin.setAttribute('aria-pressed', String(pinned));
      pin.setAttribute('aria-label', pinned ? `Unpin ${name}` : `Pin ${name}`);
      pin.dataset.tooltip = pinned ? 'Unpin' : 'Pin';
    }
    this.paintButtons();
    this.m.stage.layout();
  }

  paintButtons() {
    const set = (button, pressed, label) => {
      button.setAttribute('aria-pressed', String(pressed));
      button.setAttribute('aria-label', label);
      button.dataset.tooltip = label;
      button.classList.toggle('active', pressed);
    };
    set(this.viewButton, this.speakerView, this.speakerView ? 'Switch to tile view' : 'Switch to speaker view');
    set(this.selfButton, this.hideSelf, this.hideSelf ? 'Show my own tile' : 'Hide my own tile');
    const full = Boolean(document.fullscreenElement);
    set(this.fullButton, full, full ? 'Leave full screen' : 'Full screen');
  }
}
