"""The integration harness proves itself without the server: the real peers run against
each other on 127.0.0.1 (sipp against sipp, baresip against baresip, calls relayed by
kamailio), so a failure in a server test is about the server, not the harness."""

from __future__ import annotations

import struct
import sys
import tomllib
from pathlib import Path

import pytest
from peers import audio, procs
from peers.baresip import Baresip
from peers.kamailio import Kamailio
from peers.sipp import (
    SCENARIO_DIR,
    Sipp,
    options_scenario,
    room_direct_scenario,
    run_sipp,
    static_scenarios,
    uas_scenario,
    write_dtmf_pcaps,
    write_pin_dial,
    write_scenario,
    write_wrong_pin,
)

pytestmark = pytest.mark.integration


def test_sipp_uac_calls_sipp_uas(tmp_workdir: Path) -> None:
    uas = Sipp(tmp_workdir, "uas", "uas", calls=5, rtp_echo=True, timeout_s=30).start()
    uac = run_sipp(tmp_workdir, "uac", "uac", remote=uas.address, calls=5, rate=5,
                   timeout_s=20)
    server = uas.wait()
    assert uac.ok, uac.describe()
    assert (uac.successful, uac.failed, uac.created) == (5, 0, 5), uac.describe()
    assert server.ok and server.successful == 5, server.describe()
    assert uac.rows, "the -trace_stat CSV has rows"


def test_sipp_reports_failure_when_nobody_answers(tmp_workdir: Path) -> None:
    nobody = procs.free_port(kinds=("udp",))
    res = run_sipp(tmp_workdir, "uac", "uac", remote=f"127.0.0.1:{nobody}", calls=1,
                   timeout_s=3, extra_args=["-max_retrans", "1", "-recv_timeout", "1000"])
    assert not res.ok
    assert res.returncode != 0 and res.successful == 0, res.describe()


def test_baresip_calls_baresip_and_each_hears_the_other(tmp_workdir: Path) -> None:
    alice = Baresip(tmp_workdir, "alice", tone_hz=440, timeout_s=60).start()
    bob = Baresip(tmp_workdir, "bob", tone_hz=1000, timeout_s=60).start()
    try:
        alice.dial(bob.contact)
        alice.wait_event("CALL_ESTABLISHED", 10)
        bob.wait_event("CALL_ESTABLISHED", 10)
        alice.poll(3.0)
        alice.hangup()
        alice.wait_event("CALL_CLOSED", 10)
        bob.wait_event("CALL_CLOSED", 10)
    finally:
        alice.quit()
        bob.quit()
    for phone, own, other in ((alice, 440.0, 1000.0), (bob, 1000.0, 440.0)):
        rec = phone.last_recording()
        heard, rate = audio.read_wav(rec.dec)
        sent, _ = audio.read_wav(rec.enc)
        report = audio.analyse(heard, rate)
        assert report.active_seconds > 2.0, f"{phone.name} heard {report}"
        assert abs(report.dominant_hz - other) <= 0.05 * other, f"{phone.name} heard {report}"
        assert audio.hears_tone(heard, rate, other), f"{phone.name} heard {report}"
        assert not audio.hears_tone(heard, rate, own), f"{phone.name} heard itself: {report}"
        assert audio.hears_tone(sent, rate, own), f"{phone.name} sent {audio.analyse(sent, rate)}"


def test_baresip_dtmf_reaches_the_other_baresip(tmp_workdir: Path) -> None:
    alice = Baresip(tmp_workdir, "alice", timeout_s=60).start()
    bob = Baresip(tmp_workdir, "bob", timeout_s=60).start()
    try:
        alice.dial(bob.contact)
        alice.wait_event("CALL_ESTABLISHED", 10)
        bob.wait_event("CALL_ESTABLISHED", 10)
        alice.send_dtmf("159#*")
        digits = "".join(bob.wait_event("CALL_DTMF_START", 5).param for _ in range(5))
        assert digits == "159#*"
        alice.hangup()
        bob.wait_event("CALL_CLOSED", 10)
    finally:
        alice.quit()
        bob.quit()


def test_call_through_kamailio_includes_bye(tmp_workdir: Path) -> None:
    uas = Sipp(tmp_workdir, "uas", "uas", calls=3, timeout_s=30).start()
    with Kamailio(tmp_workdir, trunk_uri=f"sip:{uas.address}") as kam:
        uac = run_sipp(tmp_workdir, "uac", "uac", remote=kam.address, service="1000",
                       calls=3, rate=3, hold_ms=300, timeout_s=20)
        server = uas.wait()
        kam_log = kam.log_text()
    assert uac.ok and uac.successful == 3, uac.describe()
    assert server.ok and server.successful == 3, server.describe()
    assert "relay INVITE to sip:1000@" + uas.address in kam_log
    assert "relay BYE" in kam_log


def test_kamailio_sets_the_room_header(tmp_workdir: Path) -> None:
    checker = write_scenario(tmp_workdir / "uas_room.xml",
                             uas_scenario(expect_headers={"X-Room-Name": "^ *proxyroom *$"}))
    uas = Sipp(tmp_workdir, "uas", checker, calls=1, timeout_s=20, trace_logs=True).start()
    caller = write_scenario(tmp_workdir / "room.xml", room_direct_scenario())
    with Kamailio(tmp_workdir, trunk_uri=f"sip:{uas.address}", room_name="proxyroom") as kam:
        uac = run_sipp(tmp_workdir, "uac", caller, remote=kam.address, service="1000",
                       keys={"room": "callerroom"}, hold_ms=200, timeout_s=15)
        server = uas.wait()
    assert uac.ok, uac.describe()
    assert server.ok, server.describe()
    assert uas.logs_path is not None
    assert "X-Room-Name: proxyroom" in uas.logs_path.read_text()


def test_room_header_from_the_caller_is_relayed_and_checked(tmp_workdir: Path) -> None:
    checker = write_scenario(tmp_workdir / "uas_room.xml",
                             uas_scenario(expect_headers={"X-Room-Name": "^ *blue$"}))
    # Two calls: the first carries the expected room; the second another one, which the
    # stand-in counts as a failed call (the caller still sees a complete call).
    uas = Sipp(tmp_workdir, "uas", checker, calls=2, timeout_s=20).start()
    with Kamailio(tmp_workdir, trunk_uri=f"sip:{uas.address}") as kam:
        good = run_sipp(tmp_workdir, "good", SCENARIO_DIR / "room_direct.xml",
                        remote=kam.address, service="1000", keys={"room": "blue"},
                        hold_ms=200, timeout_s=15)
        bad = run_sipp(tmp_workdir, "bad", SCENARIO_DIR / "room_direct.xml",
                       remote=kam.address, service="1000", keys={"room": "red"},
                       hold_ms=200, timeout_s=8)
        server = uas.wait()
    assert good.ok, good.describe()
    assert bad.successful == 1, bad.describe()
    assert server.successful == 1 and server.failed == 1, server.describe()
    assert "looking in ' red'" in server.error_path.read_text()


def test_options_scenario_gets_200_from_kamailio(tmp_workdir: Path) -> None:
    scenario = write_scenario(tmp_workdir / "options.xml",
                              options_scenario(request_uri="sip:[remote_ip]:[remote_port]"))
    with Kamailio(tmp_workdir, trunk_uri="sip:127.0.0.1:9") as kam:
        res = run_sipp(tmp_workdir, "options", scenario, remote=kam.address, calls=3,
                       rate=10, timeout_s=10)
        kam_log = kam.log_text()
    assert res.ok and res.successful == 3, res.describe()
    assert f"request OPTIONS sip:{kam.address} from" in kam_log


def test_baresip_registers_at_kamailio_and_takes_a_call(tmp_workdir: Path) -> None:
    with Kamailio(tmp_workdir, trunk_uri="sip:127.0.0.1:9") as kam:
        bob = Baresip(tmp_workdir, "bob", registrar=kam.address, timeout_s=60).start()
        try:
            bob.wait_registered(10)
            uac = run_sipp(tmp_workdir, "uac", "uac", remote=kam.address, service="bob",
                           calls=1, hold_ms=1000, timeout_s=15)
            bob.wait_event("CALL_ESTABLISHED", 5)
            bob.wait_event("CALL_CLOSED", 5)
        finally:
            bob.quit()
    assert uac.ok, uac.describe()


def test_pin_dial_scenario_sends_the_pin_as_rfc2833(tmp_workdir: Path) -> None:
    """The generated dial-in scenario against a baresip that answers: it hears each digit
    (a repeated digit too) and the call ends with the caller's BYE. Then the checked-in
    pin_dial.xml (shipped pcaps, PIN 1234)."""
    bob = Baresip(tmp_workdir, "bob", timeout_s=60).start()
    try:
        scenario = write_pin_dial(tmp_workdir, "1123", prompt_wait_ms=1000, hold_ms=500)
        res = run_sipp(tmp_workdir, "pin", scenario, remote=f"127.0.0.1:{bob.sip_port}",
                       service="bob", timeout_s=20)
        bob.wait_event("CALL_CLOSED", 5)
        generated = bob.received_dtmf()
        res2 = run_sipp(tmp_workdir, "pin2", SCENARIO_DIR / "pin_dial.xml",
                        remote=f"127.0.0.1:{bob.sip_port}", service="bob", timeout_s=20)
        bob.wait_event("CALL_CLOSED", 5)
        shipped = bob.received_dtmf()[len(generated):]
    finally:
        bob.quit()
    assert res.ok, res.describe()
    assert generated == "1123#"
    assert res2.ok, res2.describe()
    assert shipped == "1234#"


def test_wrong_pin_scenario_needs_the_servers_bye(tmp_workdir: Path) -> None:
    wrong = write_wrong_pin(tmp_workdir, ("12", "12", "34"), prompt_wait_ms=300,
                            retry_wait_ms=300, digit_gap_ms=250, bye_timeout_ms=3000)
    # The stand-in hangs up after the third PIN (about 3.2 s after the ACK): success.
    hangs_up = write_scenario(tmp_workdir / "bye.xml", uas_scenario(bye_after_ms=4500))
    uas = Sipp(tmp_workdir, "uas", hangs_up, calls=1, timeout_s=20).start()
    res = run_sipp(tmp_workdir, "wrong", wrong, remote=uas.address, service="1000",
                   timeout_s=15)
    server = uas.wait()
    assert res.ok, res.describe()
    assert server.ok, server.describe()
    # A stand-in that never hangs up: the scenario fails when the BYE does not come.
    waits = write_scenario(tmp_workdir / "nobye.xml", uas_scenario())
    uas2 = Sipp(tmp_workdir, "uas2", waits, calls=1, timeout_s=12,
                timeout_error=False).start()
    res2 = run_sipp(tmp_workdir, "wrong2", wrong, remote=uas2.address, service="1000",
                    timeout_s=12)
    uas2.stop()
    assert not res2.ok and res2.failed == 1, res2.describe()


def test_dtmf_pcaps_are_a_real_phones_key_presses(tmp_path: Path) -> None:
    """Per-press pcaps: one SSRC, sequence numbers that keep growing, a new timestamp per
    press, so '11' is two events (the shipped pcaps would make it one)."""
    pcaps = write_dtmf_pcaps("11#", tmp_path, gap_ms=400)
    seen = []
    for pcap in pcaps:
        data = pcap.read_bytes()
        assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
        offset = 24
        while offset < len(data):
            length = struct.unpack("<I", data[offset + 8:offset + 12])[0]
            rtp = data[offset + 16 + 42:offset + 16 + length]
            _, pt, seq, ts, ssrc, event = struct.unpack("!BBHIIB", rtp[:13])
            seen.append((pt & 0x7F, seq, ts, ssrc, event))
            offset += 16 + length
    assert {s[0] for s in seen} == {101} and len({s[3] for s in seen}) == 1
    seqs = [s[1] for s in seen]
    assert seqs == sorted(seqs)
    assert sorted({s[2] for s in seen}) == [16000, 19200, 22400]
    assert (seen[0][4], seen[-1][4]) == (1, 11)


def test_checked_in_scenarios_match_the_templates() -> None:
    for name, xml in static_scenarios().items():
        path = SCENARIO_DIR / name
        assert path.read_text(encoding="iso-8859-1") == xml, (
            f"{path} differs from peers/scenarios.py: regenerate it with "
            f"write_static_scenarios()")


def test_audio_measurements(tmp_path: Path) -> None:
    wav = audio.make_tone_wav_sox(tmp_path / "t.wav", 1000, 1.0)
    samples, rate = audio.read_wav(wav)
    assert rate == 8000
    assert abs(audio.dominant_frequency(samples, rate) - 1000) < 5
    assert audio.hears_tone(samples, rate, 1000)
    assert not audio.hears_tone(samples, rate, 440)
    assert audio.tone_ratio(samples, rate, 1000) > 0.9
    assert audio.tone_ratio(samples, rate, 1500) < 0.05
    assert 0.3 < audio.rms(samples) < 0.4
    ulaw = audio.make_tone_ulaw(tmp_path / "t.ulaw", 440, 0.5)
    assert ulaw.stat().st_size == 4000
    assert audio.hears_tone(audio.read_ulaw(ulaw), 8000, 440, min_active_s=0.3)
    silent = audio.tone(0, 1.0)
    assert not audio.hears_tone(silent, 8000, 440)
    assert audio.analyse(silent, 8000).active_seconds == 0.0


def test_switchboard_server_fixture_with_a_stand_in(switchboard_server, tmp_path: Path) -> None:
    """The server fixture's config, ports, health wait, API helper and stop, exercised with
    a small stand-in HTTP server in place of `switchboard serve`."""
    stub = tmp_path / "stub_server.py"
    stub.write_text(_STUB_SERVER)
    server = switchboard_server({"gateway": {"pin_attempts": 3}},
                                command=lambda cfg: [sys.executable, str(stub), str(cfg)])
    config = tomllib.loads(server.config_path.read_text())
    assert config["sip"]["listen"] == [f"udp:127.0.0.1:{server.sip_port}",
                                       f"tcp:127.0.0.1:{server.sip_port}"]
    assert config["http"]["listen"] == f"127.0.0.1:{server.http_port}"
    assert config["media"] == {"address": "127.0.0.1",
                               "rtp_ports": f"{server.rtp_low}-{server.rtp_high}"}
    assert config["store"]["path"] == str(server.data_dir)
    assert config["admin"]["token"] == server.token
    assert config["gateway"]["pin_attempts"] == 3
    assert server.api("GET", "/api/health").status == 200
    assert server.api("GET", "/api/whoami").json() == {"token_ok": True}
    assert server.api("GET", "/api/whoami", auth=False).status == 401
    assert server.api("POST", "/api/echo", json={"a": 1}).json() == {"a": 1}
    assert server.pid != server.proc.pid  # the server itself, not its timeout wrapper


_STUB_SERVER = '''
import json, signal, socket, sys, tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer

cfg = tomllib.load(open(sys.argv[1], "rb"))
host, port = cfg["http"]["listen"].rsplit(":", 1)
sip_port = int(cfg["sip"]["listen"][0].rsplit(":", 1)[1])
held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()]
for s in held:
    s.bind(("127.0.0.1", sip_port))
token = cfg["admin"]["token"]

class H(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/api/health":
            return self.reply(200, {"ok": True})
        if self.headers.get("Authorization") != "Bearer " + token:
            return self.reply(401, {"error": "unauthorized"})
        self.reply(200, {"token_ok": True})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(200, json.loads(self.rfile.read(n)))
    def log_message(self, *args):
        pass

def stop(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)
HTTPServer((host, int(port)), H).serve_forever()
'''


def test_port_blocks_are_found_again_after_the_range_is_used_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole suite's servers hand out more than the range holds: the record of handed-out
    ports is forgotten once (stopped servers' ports are free again) instead of failing."""
    monkeypatch.setattr(procs, "_BLOCK_LOW", 30000)
    monkeypatch.setattr(procs, "_BLOCK_HIGH", 30400)
    monkeypatch.setattr(procs, "_handed_out", set())
    bases = {procs.find_port_block(100, kinds=("udp",)) for _ in range(12)}
    assert all(30000 <= b <= 30300 for b in bases)
    assert len(procs._handed_out) <= 400  # (forgotten at least once on the way)
