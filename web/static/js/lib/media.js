// The local media: microphone, camera and screen tracks, device lists, the mic level.
//
// The microphone track stays while in the meeting (mute = track.enabled = false, so unmuting
// is instant); the camera track is stopped when the camera is off (its light goes out); the
// screen track lives while sharing. A 'change' event fires whenever a track comes or goes.

const AUDIO_PROCESSING = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const CAMERA_SHAPE = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

function deviceConstraint(id, exact) {
  if (!id) return {};
  return { deviceId: exact ? { exact: id } : { ideal: id } };
}

/** A short, human reason for a getUserMedia failure. */
export function describeMediaError(err, what) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return `The browser is not allowed to use your ${what}. Allow it in the address bar.`;
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return `No ${what} found.`;
  if (name === 'NotReadableError') return `Your ${what} is in use by another application.`;
  return `Your ${what} could not be started.`;
}

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    this.mic = null;
    this.cam = null;
    this.screen = null;
    this.micId = '';
    this.camId = '';
    this.muted = false;
    this.errors = { mic: '', cam: '' };
    this.audioProcessing = { ...AUDIO_PROCESSING }; // noiseSuppression: the page's toggle
  }

  get canShareScreen() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  }

  changed(what) {
    this.dispatchEvent(new CustomEvent('change', { detail: what }));
  }

  /** Open the microphone (always, when there is one) and the camera (when `video`). */
  async start({ micId = '', camId = '', video = true } = {}) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.errors.mic = 'This browser cannot use a microphone here (it needs HTTPS).';
      this.errors.cam = this.errors.mic;
      return;
    }
    const constraints = {
      audio: { ...this.audioProcessing, ...deviceConstraint(micId, false) },
      video: video ? { ...CAMERA_SHAPE, ...deviceConstraint(camId, false) } : false,
    };
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      this.adopt(stream);
      return;
    } catch (err) {
      console.info('media: microphone and camera together failed, trying one by one', err.name);
    }
    await this.openMic(micId, false);
    if (video) await this.openCamera(camId, false);
  }

  adopt(stream) {
    for (const track of stream.getTracks()) {
      if (track.kind === 'audio') this.setMicTrack(track);
      else this.setCamTrack(track);
    }
  }

  setMicTrack(track) {
    if (this.mic) this.mic.stop();
    this.mic = track;
    if (track) {
      track.enabled = !this.muted;
      this.micId = track.getSettings().deviceId || this.micId;
      this.errors.mic = '';
    }
    this.changed('mic');
  }

  setCamTrack(track) {
    if (this.cam) this.cam.stop();
    this.cam = track;
    if (track) {
      track.contentHint = 'motion';
      this.camId = track.getSettings().deviceId || this.camId;
      this.errors.cam = '';
      track.addEventListener('ended', () => {
        if (this.cam === track) this.setCamTrack(null);
      });
    }
    this.changed('cam');
  }

  async openMic(deviceId = this.micId, exact = true) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { ...this.audioProcessing, ...deviceConstraint(deviceId, exact) },
      });
      this.setMicTrack(stream.getAudioTracks()[0]);
      return true;
    } catch (err) {
      this.errors.mic = describeMediaError(err, 'microphone');
      return false;
    }
  }

  async openCamera(deviceId = this.camId, exact = true) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { ...CAMERA_SHAPE, ...deviceConstraint(deviceId, exact) },
      });
      this.setCamTrack(stream.getVideoTracks()[0]);
      return true;
    } catch (err) {
      this.errors.cam = describeMediaError(err, 'camera');
      this.changed('cam');
      return false;
    }
  }

  closeCamera() {
    this.setCamTrack(null);
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.mic) this.mic.enabled = !muted;
    this.changed('mute');
  }

  async startScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    track.addEventListener('ended', () => {
      if (this.screen === track) this.stopScreen();
    });
    if (this.screen) this.screen.stop();
    this.screen = track;
    this.changed('screen');
    return track;
  }

  stopScreen() {
    if (!this.screen) return;
    this.screen.stop();
    this.screen = null;
    this.changed('screen');
  }

  /** {mics: [{id, label}], cams: [...]}; labels appear once permission is given. */
  async devices() {
    const result = { mics: [], cams: [] };
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return result;
    const all = await navigator.mediaDevices.enumerateDevices();
    for (const d of all) {
      if (!d.deviceId) continue;
      const list = d.kind === 'audioinput' ? result.mics : d.kind === 'videoinput' ? result.cams : null;
      if (!list) continue;
      if (d.deviceId === 'default' || d.deviceId === 'communications') {
        if (list.some((x) => x.group === d.groupId)) continue;
      }
      const fallback = d.kind === 'audioinput' ? 'Microphone' : 'Camera';
      list.push({ id: d.deviceId, label: d.label || `${fallback} ${list.length + 1}`, group: d.groupId });
    }
    return result;
  }

  stopAll() {
    for (const track of [this.mic, this.cam, this.screen]) if (track) track.stop();
    this.mic = null;
    this.cam = null;
    this.screen = null;
  }
}

let audioContext = null;

/** One AudioContext for the page (browsers limit them); resumed on a user gesture. */
export function sharedAudioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!audioContext) audioContext = new Ctx();
  if (audioContext.state === 'suspended') audioContext.resume().catch(() => {});
  return audioContext;
}

/** The level of an audio track, 0..1, read on demand (for meters and "you are muted"). */
export class LevelMeter {
  constructor(track) {
    this.track = track;
    this.source = null;
    this.analyser = null;
    this.buffer = null;
    const ctx = sharedAudioContext();
    if (!ctx || !track) return;
    try {
      this.source = ctx.createMediaStreamSource(new MediaStream([track]));
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 512;
      this.buffer = new Float32Array(this.analyser.fftSize);
      this.source.connect(this.analyser);
    } catch (err) {
      console.info('media: no level meter', err);
    }
  }

  /** The RMS of the last few milliseconds, linear 0..1 (like WebRTC's audioLevel). */
  rms() {
    if (!this.analyser) return 0;
    this.analyser.getFloatTimeDomainData(this.buffer);
    let sum = 0;
    for (const v of this.buffer) sum += v * v;
    return Math.sqrt(sum / this.buffer.length);
  }

  /** RMS mapped to 0..1 on a log scale (-60 dBFS -> 0, -10 dBFS -> 1), for meters. */
  level() {
    const rms = this.rms();
    if (rms <= 0) return 0;
    const db = 20 * Math.log10(rms);
    return Math.min(1, Math.max(0, (db + 60) / 50));
  }

  close() {
    if (this.source) this.source.disconnect();
    this.source = null;
    this.analyser = null;
  }
}
