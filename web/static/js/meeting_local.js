// The meeting's own microphone, camera and screen (the toolbar's toggles and what follows a
// change), and its periodic meters (audio levels for the speaking indicators, connection
// statistics): methods of the page's Meeting (js/room.js), kept here to keep that file short.

import { LevelMeter } from './lib/media.js';
import { toast } from './ui/toasts.js';

const STATS_SEND_EVERY = 3; // send `stats` every third sample

export const localMedia = {
  onLocalChange() {
    if (this.media) this.media.sync();
    if (this.selfMeter && this.selfMeter.track !== this.local.mic) { // a switched microphone
      this.selfMeter.close();
      this.selfMeter = this.local.mic ? new LevelMeter(this.local.mic) : null;
    }
    if (this.view === 'meeting') this.render();
  },

  sendMedia() {
    this.sig?.send('media', {
      audio: Boolean(this.local.mic) && !this.local.muted,
      video: Boolean(this.local.cam),
      screen: Boolean(this.local.screen),
    });
  },

  patchSelf(fields) {
    const self = this.self;
    if (self) this.participants.set(self.id, { ...self, ...fields });
  },

  toggleMic() {
    if (!this.local.mic) return;
    this.local.setMuted(!this.local.muted);
    this.patchSelf({ muted: this.local.muted, audio: !this.local.muted });
    this.sendMedia();
    this.render();
  },

  async toggleCam() {
    if (this.local.cam) {
      this.local.closeCamera();
      this.camWanted = false;
    } else if (!(await this.local.openCamera(this.local.camId, false))) {
      toast(this.local.errors.cam || 'The camera could not be started', { icon: 'cam-off', kind: 'bad' });
      return;
    } else {
      this.camWanted = true;
    }
    this.patchSelf({ video: Boolean(this.local.cam) });
    this.sendMedia();
    this.render();
  },

  async toggleScreen() {
    if (this.local.screen) {
      this.local.stopScreen();
    } else {
      try {
        await this.local.startScreen();
      } catch (err) {
        if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') {
          toast('Screen sharing could not start', { icon: 'screen', kind: 'bad' });
        }
        return;
      }
    }
    this.patchSelf({ screen: Boolean(this.local.screen) });
    this.sendMedia();
    this.render();
  },
};

export const meters = {
  tickLevels() {
    if (!this.media) return;
    const levels = this.media.remoteLevels() || new Map(this.quality.latest?.audioLevels || []);
    const selfRms = this.selfMeter ? this.selfMeter.rms() : 0;
    if (this.self && this.local.mic && !this.local.muted) levels.set(this.selfId, selfRms);
    this.levels = levels;
    this.stage.setLevels(levels, this.dominant);
    if (this.local.muted && this.local.mic && selfRms > 0.05) {
      const now = Date.now();
      if (!this.mutedTalkSince) this.mutedTalkSince = now;
      if (now - this.mutedTalkSince > 1200 && now - this.mutedHintAt > 30000) {
        this.mutedHintAt = now;
        toast('Are you talking? Your microphone is muted. Press M to unmute.', { icon: 'mic-off', kind: 'warn' });
      }
    } else {
      this.mutedTalkSince = 0;
    }
    if (this.panel === 'people') this.renderPanel();
  },

  async tickStats() {
    if (!this.media) return;
    const media = this.media;
    const report = await media.getStats().catch(() => null);
    if (!report || media !== this.media) return;
    const sample = this.quality.sample(report, Date.now(), media.remote);
    this.qualityView.update({ local: sample, state: media.connectionState });
    this.statsCount += 1;
    if (this.statsCount % STATS_SEND_EVERY === 0 && sample.bitrateIn !== null) {
      this.sig?.send('stats', {
        rtt_ms: Math.round(sample.rttMs ?? 0), bitrate_in: Math.round(sample.bitrateIn),
        bitrate_out: Math.round(sample.bitrateOut ?? 0), loss: Number((sample.lossIn ?? 0).toFixed(4)),
      });
    }
  },
};
