// The pre-join screen: display name (remembered), microphone and camera choice with a live
// preview and a level meter. Resolves with what the user chose when they press Join.

import { $, h, initials, colorFor, icon, setIcon } from '../lib/dom.js';
import { LevelMeter, sharedAudioContext } from '../lib/media.js';
import { prefs } from '../lib/storage.js';

function fillSelect(select, devices, currentId, emptyText) {
  const options = devices.map((d) => h('option', { value: d.id }, d.label));
  if (options.length === 0) options.push(h('option', { value: '' }, emptyText));
  select.replaceChildren(...options);
  select.disabled = devices.length === 0;
  if (devices.some((d) => d.id === currentId)) select.value = currentId;
}

export class Prejoin {
  constructor({ room, local }) {
    this.room = room;
    this.local = local;
    this.micOn = prefs.micOn;
    this.camOn = prefs.camOn;
    this.meter = null;
    this.raf = 0;
    this.done = false;
    this.els = {
      box: $('#preview-box'), video: $('#preview-video'), off: $('#preview-off'),
      avatar: $('#preview-avatar'), message: $('#preview-message'), mic: $('#pre-mic'),
      cam: $('#pre-cam'), name: $('#name-input'), micSelect: $('#mic-select'),
      camSelect: $('#cam-select'), level: $('#mic-level'), error: $('#prejoin-error'),
      form: $('#prejoin-form'), join: $('#join-button'),
    };
  }

  /** Show the screen; resolves {name, micOn, camOn} on Join. */
  async run() {
    const { els } = this;
    $('#prejoin-room').textContent = `${window.location.host}/${this.room}`;
    els.name.value = prefs.name;
    this.paintAvatar();
    els.name.addEventListener('input', () => {
      this.paintAvatar();
      els.error.hidden = true;
    });
    els.mic.addEventListener('click', () => this.toggleMic());
    els.cam.addEventListener('click', () => this.toggleCam());
    els.micSelect.addEventListener('change', () => this.chooseMic(els.micSelect.value));
    els.camSelect.addEventListener('change', () => this.chooseCam(els.camSelect.value));
    this.onDeviceChange = () => this.refreshDevices();
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', this.onDeviceChange);
    }

    els.join.disabled = true;
    els.join.textContent = 'Starting your devices…';
    await this.local.start({ micId: prefs.micId, camId: prefs.camId, video: this.camOn });
    this.local.setMuted(!this.micOn);
    // The camera turned off while the devices were starting: it stays off (never a camera
    // the person switched off coming on by itself).
    if (!this.camOn) this.local.closeCamera();
    if (!this.local.cam) this.camOn = false;
    await this.refreshDevices();
    this.paint();
    this.startMeter();
    els.join.disabled = false;
    els.join.textContent = 'Join meeting';
    if (!els.name.value) els.name.focus();
    else els.join.focus();

    return new Promise((resolve) => {
      els.form.addEventListener('submit', (event) => {
        event.preventDefault();
        sharedAudioContext();
        const name = els.name.value.trim().replace(/\s+/g, ' ').slice(0, 64);
        if (!name) {
          els.error.textContent = 'Enter your name so others know who joined.';
          els.error.hidden = false;
          els.name.focus();
          return;
        }
        prefs.name = name;
        prefs.micOn = this.micOn;
        prefs.camOn = this.camOn;
        this.finish();
        resolve({ name, micOn: this.micOn && Boolean(this.local.mic), camOn: Boolean(this.local.cam) });
      });
    });
  }

  finish() {
    this.done = true;
    window.cancelAnimationFrame(this.raf);
    if (this.meter) this.meter.close();
    this.meter = null;
    this.els.video.srcObject = null;
    if (navigator.mediaDevices && navigator.mediaDevices.removeEventListener) {
      navigator.mediaDevices.removeEventListener('devicechange', this.onDeviceChange);
    }
  }

  paintAvatar() {
    const name = this.els.name.value.trim();
    const text = initials(name);
    this.els.avatar.style.setProperty('--avatar', colorFor(name || 'you'));
    if (text) this.els.avatar.textContent = text;
    else this.els.avatar.replaceChildren(icon('people'));
  }

  async refreshDevices() {
    const { mics, cams } = await this.local.devices();
    fillSelect(this.els.micSelect, mics, this.local.micId || prefs.micId, 'No microphone found');
    fillSelect(this.els.camSelect, cams, this.local.camId || prefs.camId, 'No camera found');
  }

  paint() {
    const { els, local } = this;
    const camera = local.cam && this.camOn;
    els.box.classList.toggle('camera-on', Boolean(camera));
    if (camera && els.video.srcObject?.getVideoTracks()[0] !== local.cam) {
      els.video.srcObject = new MediaStream([local.cam]);
      els.video.play().catch(() => {});
    }
    if (!camera) els.video.srcObject = null;
    els.message.textContent = !local.cam && local.errors.cam ? local.errors.cam : 'Camera is off';

    const micOn = this.micOn && Boolean(local.mic);
    els.mic.setAttribute('aria-pressed', String(micOn));
    els.mic.disabled = !local.mic;
    const micLabel = !local.mic ? 'No microphone' : micOn ? 'Turn off microphone' : 'Turn on microphone';
    els.mic.setAttribute('aria-label', micLabel);
    els.mic.dataset.tooltip = micLabel;
    setIcon(els.mic.querySelector('svg'), micOn ? 'mic' : 'mic-off');

    els.cam.setAttribute('aria-pressed', String(Boolean(camera)));
    const camLabel = camera ? 'Turn off camera' : 'Turn on camera';
    els.cam.setAttribute('aria-label', camLabel);
    els.cam.dataset.tooltip = camLabel;
    setIcon(els.cam.querySelector('svg'), camera ? 'cam' : 'cam-off');

    const problems = [local.errors.mic].filter(Boolean);
    if (problems.length) {
      els.error.textContent = `${problems.join(' ')} You can still join to listen and chat.`;
      els.error.hidden = false;
    }
  }

  startMeter() {
    if (this.meter) this.meter.close();
    this.meter = this.local.mic ? new LevelMeter(this.local.mic) : null;
    const tick = () => {
      if (this.done) return;
      const level = this.meter && this.micOn ? this.meter.level() : 0;
      this.els.level.style.transform = `scaleX(${level.toFixed(3)})`;
      this.raf = window.requestAnimationFrame(tick);
    };
    window.cancelAnimationFrame(this.raf);
    tick();
  }

  toggleMic() {
    sharedAudioContext();
    this.micOn = !this.micOn;
    this.local.setMuted(!this.micOn);
    this.paint();
  }

  async toggleCam() {
    this.camOn = !this.camOn;
    if (this.camOn) {
      await this.local.openCamera(this.els.camSelect.value || this.local.camId, false);
      if (!this.local.cam) this.camOn = false;
      await this.refreshDevices();
    } else {
      this.local.closeCamera();
    }
    this.paint();
  }

  async chooseMic(id) {
    prefs.micId = id;
    if (await this.local.openMic(id)) this.startMeter();
    this.paint();
  }

  async chooseCam(id) {
    prefs.camId = id;
    if (this.camOn) await this.local.openCamera(id);
    this.paint();
  }
}
