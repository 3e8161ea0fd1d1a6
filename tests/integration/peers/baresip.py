"""A baresip (1.0.0) softphone for integration tests, driven over ctrl_tcp.

One config folder per instance (`config`, `accounts`, recordings in `rec/`), run as
`timeout N baresip -f DIR < /dev/null`. The audio source is a WAV played by `aufile` (made
longer than the instance lives: at its end baresip hangs up), the player is ALSA's null
device, and `sndfile` records every call as `rec/dump-<time>-enc.wav` (what it sent) and
`rec/dump-<time>-dec.wav` (what it heard).

The source's sample rate and channels must be the ones baresip's audio source runs at
(`ausrc_srate`, `ausrc_channels`: aufile refuses any other file): `sample_rate` (8000 by
default; 16000 suits G.722, 48000 Opus) sets both the source and the player, `channels`
(None: as the codec has them) both channel counts.

ctrl_tcp speaks netstring-framed JSON: commands `{"command", "params", "token"}` get a
`{"response": true, "ok", "data", "token"}`; events arrive as
`{"event": true, "type": "CALL_ESTABLISHED", "param": ..., "id": ...}`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audio, procs

log = logging.getLogger(__name__)

MODULE_PATH = Path("/usr/lib/baresip/modules")
DEFAULT_CODECS = ("PCMU/8000/1", "PCMA/8000/1")


class BaresipError(Exception):
    """baresip refused a command, died, or an awaited event did not come."""


@dataclass(frozen=True, slots=True)
class BaresipEvent:
    type: str
    param: str
    call_id: str
    peer_uri: str
    direction: str
    raw: dict[str, Any] = field(compare=False)
    at: float = field(default=0.0, compare=False)  # time.monotonic() when it was read

    @classmethod
    def from_json(cls, obj: dict[str, Any], at: float = 0.0) -> BaresipEvent:
        return cls(type=str(obj.get("type", "")), param=str(obj.get("param", "")),
                   call_id=str(obj.get("id", "")), peer_uri=str(obj.get("peeruri", "")),
                   direction=str(obj.get("direction", "")), raw=obj, at=at)


class NetstringReader:
    """Incremental netstring decoder: feed bytes, take complete payloads."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                if len(self._buf) > 12:
                    raise BaresipError(f"bad netstring prefix: {self._buf[:40]!r}")
                break
            length = int(self._buf[:colon])
            end = colon + 1 + length
            if len(self._buf) < end + 1:
                break
            if self._buf[end:end + 1] != b",":
                raise BaresipError(f"netstring not closed by ',': {self._buf[:80]!r}")
            out.append(self._buf[colon + 1:end])
            self._buf = self._buf[end + 1:]
        return out


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class CtrlClient:
    """A blocking ctrl_tcp client. Every event received is kept in `events`; `wait_event`
    consumes them in order, so two waits for CALL_DTMF_START return two different digits."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.sock = socket.create_connection((procs.LOOPBACK, port), timeout=5)
        self.events: list[BaresipEvent] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, dict[str, Any]] = {}
        self._reader = NetstringReader()
        self._tokens = itertools.count(1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _pump(self, timeout: float) -> bool:
        """Read what arrives within `timeout`; False once the connection is closed."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except OSError:
            return False
        if not data:
            return False
        for payload in self._reader.feed(data):
            try:
                obj = json.loads(payload)
            except json.JSONDecodeError:
                log.warning("baresip %s: not JSON on ctrl_tcp: %r", self.name, payload[:200])
                continue
            if obj.get("event"):
                event = BaresipEvent.from_json(obj, time.monotonic())
                log.debug("baresip %s event %s %s", self.name, event.type, event.param)
                self.events.append(event)
            elif obj.get("response"):
                self._responses[str(obj.get("token", ""))] = obj
        return True

    def command(self, command: str, params: str | None = None,
                timeout: float = 5.0) -> dict[str, Any]:
        """Send a command and return its response (`ok`, `data`)."""
        token = str(next(self._tokens))
        msg: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            msg["params"] = params
        self.sock.sendall(netstring(json.dumps(msg).encode()))
        deadline = time.monotonic() + timeout
        while token not in self._responses:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BaresipError(f"baresip {self.name}: no response to {command} in "
                                   f"{timeout:.0f} s")
            if not self._pump(min(left, 0.2)):
                raise BaresipError(f"baresip {self.name}: ctrl connection closed during "
                                   f"{command}")
        return self._responses.pop(token)

    def poll(self, seconds: float = 0.0) -> None:
        """Take in events for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            if not self._pump(min(max(deadline - time.monotonic(), 0.0), 0.2)):
                return
            if time.monotonic() >= deadline:
                return

    def find_event(self, type_: str,
                   predicate: Callable[[BaresipEvent], bool] | None = None
                   ) -> BaresipEvent | None:
        for i, event in enumerate(self.events):
            if i in self._consumed or event.type != type_:
                continue
            if predicate is None or predicate(event):
                self._consumed.add(i)
                return event
        return None

    def wait_event(self, type_: str, timeout: float = 10.0,
                   predicate: Callable[[BaresipEvent], bool] | None = None) -> BaresipEvent:
        """The next unconsumed event of `type_` (matching `predicate`), waiting up to
        `timeout` seconds; raises BaresipError with the events seen otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_event(type_, predicate)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                seen = ", ".join(f"{e.type}({e.param})" for e in self.events[-20:])
                raise BaresipError(f"baresip {self.name}: no {type_} within {timeout:.1f} s; "
                                   f"last events: {seen}")
            if not self._pump(min(left, 0.2)):
                raise BaresipError(f"baresip {self.name}: ctrl connection closed while "
                                   f"waiting for {type_}")


@dataclass(frozen=True, slots=True)
class Recording:
    """One call's sndfile dumps."""

    enc: Path  # what this phone sent
    dec: Path  # what this phone heard


class Baresip:
    """One baresip instance on 127.0.0.1 with its own SIP, ctrl_tcp and RTP ports."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        user: str | None = None,
        source_wav: Path | None = None,
        tone_hz: float | None = None,
        codecs: Sequence[str] = DEFAULT_CODECS,
        answermode: str = "auto",
        registrar: str | None = None,
        outbound: str | None = None,
        auth_user: str | None = None,
        auth_pass: str | None = None,
        account_params: str = "",
        modules: Sequence[str] = (),
        extra_config: Sequence[str] = (),
        timeout_s: float = 120.0,
        sample_rate: int = 8000,
        channels: int | None = None,
        display_name: str | None = None,
    ) -> None:
        self.name = name
        self.user = user or name
        self.dir = workdir / f"baresip-{name}"
        self.rec_dir = self.dir / "rec"
        self.timeout_s = timeout_s
        self.sip_port = procs.free_port()
        self.ctrl_port = procs.free_port(kinds=("tcp",))
        self.rtp_low = procs.find_port_block(20, kinds=("udp",))
        self.rtp_high = self.rtp_low + 19
        self.source_wav = source_wav
        self.tone_hz = tone_hz
        self.codecs = tuple(codecs)
        self.answermode = answermode
        self.registrar = registrar
        self.outbound = outbound
        self.auth_user = auth_user
        self.auth_pass = auth_pass
        self.account_params = account_params
        self.modules = tuple(modules)
        self.extra_config = tuple(extra_config)
        self.sample_rate = sample_rate
        self.channels = channels
        self.display_name = display_name
        self.frozen = False
        self.proc: procs.ManagedProcess | None = None
        self.ctrl: CtrlClient | None = None

    # --- addresses ---

    @property
    def contact(self) -> str:
        """Where this phone can be called directly: sip:user@127.0.0.1:port."""
        return f"sip:{self.user}@{procs.LOOPBACK}:{self.sip_port}"

    @property
    def aor(self) -> str:
        host = self.registrar or f"{procs.LOOPBACK}:{self.sip_port}"
        return f"sip:{self.user}@{host}"

    # --- files ---

    def _account_line(self) -> str:
        params = [f"answermode={self.answermode}",
                  f"audio_codecs={','.join(self.codecs)}",
                  f"regint={60 if self.registrar else 0}"]
        if self.outbound:
            params.append(f'outbound="{self.outbound}"')
        if self.auth_user:
            params.append(f"auth_user={self.auth_user}")
        if self.auth_pass:
            params.append(f"auth_pass={self.auth_pass}")
        if self.account_params:
            params.append(self.account_params.lstrip(";"))
        display = f'"{self.display_name}" ' if self.display_name else ""
        return f"{display}<{self.aor}>;" + ";".join(params) + "\n"

    def _config(self, source: Path) -> str:
        # account.so reads the accounts file: it must come after the codecs, or the
        # account's audio_codecs list is ignored ("audio codec not found").
        modules = ["ctrl_tcp.so", "g711.so", "g722.so", "opus.so", "alsa.so", "aufile.so",
                   "sndfile.so", *self.modules, "account.so"]
        lines = [
            f"module_path {MODULE_PATH}",
            f"sip_listen {procs.LOOPBACK}:{self.sip_port}",
            f"net_interface {procs.LOOPBACK}",
            f"rtp_ports {self.rtp_low}-{self.rtp_high}",
            f"audio_source aufile,{source}",
            "audio_player alsa,null",
            "audio_alert alsa,null",
            f"ausrc_srate {self.sample_rate}",
            f"auplay_srate {self.sample_rate}",
            *([f"ausrc_channels {self.channels}", f"auplay_channels {self.channels}"]
              if self.channels else []),
            *[f"module {m}" for m in dict.fromkeys(modules)],
            "module_app menu.so",
            f"ctrl_tcp_listen {procs.LOOPBACK}:{self.ctrl_port}",
            f"snd_path {self.rec_dir}",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _source(self) -> Path:
        if self.source_wav is not None:
            return self.source_wav
        seconds = self.timeout_s + 30
        path = self.dir / "source.wav"
        rate, channels = self.sample_rate, self.channels or 1
        if self.tone_hz:
            return audio.make_tone_wav(path, self.tone_hz, seconds, rate=rate,
                                       channels=channels)
        return audio.write_wav(path, audio.tone(0, seconds, rate=rate), rate=rate,
                               channels=channels)

    # --- life cycle ---

    def start(self, ready_timeout: float = 10.0) -> Baresip:
        binary = shutil.which("baresip")
        if binary is None:
            raise RuntimeError("baresip is not installed: run scripts/install-peers.sh")
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(self._config(self._source()))
        (self.dir / "accounts").write_text(self._account_line())
        self.proc = procs.start_process([binary, "-f", str(self.dir)],
                                        name=f"baresip-{self.name}", log_dir=self.dir.parent,
                                        timeout_s=self.timeout_s, cwd=self.dir)
        deadline = time.monotonic() + ready_timeout
        while self.ctrl is None:
            if not self.proc.running():
                raise BaresipError(f"baresip {self.name} exited ({self.proc.returncode}):\n"
                                   f"{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip {self.name}: ctrl_tcp not up in "
                                   f"{ready_timeout:.0f} s:\n{self.proc.log_tail()}")
            if "baresip is ready" in self.proc.log_text():
                try:
                    self.ctrl = CtrlClient(self.ctrl_port, self.name)
                except OSError:
                    time.sleep(0.1)
            else:
                time.sleep(0.1)
        if "User Agents (0)" in str(self.command("reginfo").get("data", "")):
            raise BaresipError(f"baresip {self.name}: no user agent (accounts file?):\n"
                               f"{self.proc.log_tail()}")
        log.info("baresip %s up: %s (ctrl %d)", self.name, self.contact, self.ctrl_port)
        return self

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ctrl(self) -> CtrlClient:
        if self.ctrl is None:
            raise BaresipError(f"baresip {self.name} is not started")
        return self.ctrl

    def command(self, command: str, params: str | None = None,
                timeout: float = 5.0) -> dict[str, Any]:
        return self._ctrl().command(command, params, timeout)

    def _checked(self, command: str, params: str | None = None) -> dict[str, Any]:
        resp = self.command(command, params)
        if not resp.get("ok"):
            raise BaresipError(f"baresip {self.name}: {command} {params or ''} failed: "
                               f"{resp.get('data')}")
        return resp

    def registered(self) -> bool:
        """True when `reginfo` shows this phone's registration as OK."""
        data = re.sub(r"\x1b\[[0-9;]*m", "", str(self.command("reginfo").get("data", "")))
        return any(self.aor in line and " OK " in f"{line} " for line in data.splitlines())

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Wait for the REGISTER to succeed (it may have before ctrl_tcp was connected, so
        this asks `reginfo` rather than waiting for a REGISTER_OK event)."""
        deadline = time.monotonic() + timeout
        while not self.registered():
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip {self.name} not registered at {self.registrar} "
                                   f"within {timeout:.0f} s:\n{self.log_tail(20)}")
            self.poll(0.2)

    # --- calls ---

    def dial(self, uri: str) -> None:
        self._checked("dial", uri)

    def accept(self) -> None:
        self._checked("accept")

    def hangup(self) -> None:
        self._checked("hangup")

    def sndcode(self, key: str) -> None:
        """One DTMF key as RFC 2833 (`sndcode`, only valid during a call)."""
        self._checked("sndcode", key)

    def send_dtmf(self, digits: str, gap_s: float = 0.3) -> None:
        """Send each digit as RFC 2833 (`sndcode`, only valid during a call), `gap_s` apart."""
        for digit in digits:
            self.sndcode(digit)
            self._ctrl().poll(gap_s)

    def wait_event(self, type_: str, timeout: float = 10.0,
                   predicate: Callable[[BaresipEvent], bool] | None = None) -> BaresipEvent:
        return self._ctrl().wait_event(type_, timeout, predicate)

    def poll(self, seconds: float = 0.0) -> None:
        self._ctrl().poll(seconds)

    @property
    def events(self) -> list[BaresipEvent]:
        return self._ctrl().events

    def received_dtmf(self) -> str:
        """The digits of every CALL_DTMF_START event so far, in order (does not consume)."""
        return "".join(e.param for e in self.events if e.type == "CALL_DTMF_START")

    # --- recordings ---

    def recordings(self) -> list[Recording]:
        """One pair per call, oldest first."""
        out = []
        for dec in sorted(self.rec_dir.glob("dump-*-dec.wav")):
            enc = dec.with_name(dec.name.replace("-dec.wav", "-enc.wav"))
            out.append(Recording(enc=enc, dec=dec))
        return out

    def current_recording(self, timeout: float = 5.0) -> Recording:
        """The newest call's recording while the call may still be going (waits up to
        `timeout` for sndfile to create it)."""
        deadline = time.monotonic() + timeout
        while not self.recordings():
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip {self.name}: no recording in {self.rec_dir} "
                                   f"within {timeout:.0f} s")
            time.sleep(0.1)
        return self.recordings()[-1]

    def heard(self, seconds: float, *, skip_end_s: float = 0.2
              ) -> tuple[audio.Samples, int]:  # fmt: skip
        """The last `seconds` of what this phone heard so far in its current call (its
        `-dec.wav`, read while sndfile is still writing it), less the newest `skip_end_s`;
        and the recording's sample rate. Shorter when the recording is."""
        samples, rate = audio.read_wav(self.current_recording().dec)
        end = max(samples.size - round(skip_end_s * rate), 0)
        return samples[max(end - round(seconds * rate), 0):end], rate

    def last_recording(self, settle_s: float = 2.0) -> Recording:
        """The newest call's recording, after its files stop growing (at most `settle_s`)."""
        recs = self.recordings()
        if not recs:
            raise BaresipError(f"baresip {self.name}: no recordings in {self.rec_dir}")
        rec = recs[-1]
        last = (-1, -1)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            sizes = (_size(rec.enc), _size(rec.dec))
            if sizes == last:
                break
            last = sizes
            time.sleep(0.2)
        return rec

    # --- stopping ---

    def quit(self, timeout: float = 5.0) -> int | None:
        """Ask baresip to quit; stop it by PID if it does not exit within `timeout`."""
        if self.proc is None:
            return None
        if self.ctrl is not None and self.proc.running():
            with contextlib.suppress(BaresipError, OSError):
                self.ctrl.command("quit", timeout=2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        return self.stop()

    def freeze(self) -> None:
        """SIGSTOP baresip itself: its call stays up but it sends nothing any more (no RTP,
        no SIP), as when the phone's network is gone."""
        if self.proc is None or not self.proc.running():
            raise BaresipError(f"baresip {self.name} is not running")
        self.proc.signal(signal.SIGSTOP)
        self.frozen = True
        log.info("baresip %s (pid %d) stopped with SIGSTOP", self.name, self.proc.main_pid)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.proc is not None and self.frozen:
            self.proc.signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> int | None:
        if self.ctrl is not None:
            self.ctrl.close()
            self.ctrl = None
        if self.proc is None:
            return None
        if self.frozen:  # a stopped process would only see SIGTERM once continued
            self.thaw()
        return self.proc.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
