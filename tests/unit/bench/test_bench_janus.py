"""The Janus side of the side-by-side benchmark: its config folder, the AudioBridge API
messages and the answers Janus 1.1.2 gave (captured on this machine), and the receiver's
packet reading (tests/bench/janus.py, janus_load.py)."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from tests.bench import janus
from tests.bench.janus_load import SO_TIMESTAMPNS, read_packet

# Answers captured from Janus 1.1.2 (Debian) over its HTTP API, json = "plain".
CREATED_SESSION = {"janus": "success", "transaction": "t1", "data": {"id": 2411914992999297}}
ATTACHED = {"janus": "success", "session_id": 2411914992999297, "transaction": "t2",
            "data": {"id": 5599213121653095}}
ROOM_CREATED = {"janus": "success", "session_id": 2411914992999297, "transaction": "t3",
                "sender": 5599213121653095,
                "plugindata": {"plugin": "janus.plugin.audiobridge",
                               "data": {"audiobridge": "created", "room": 1001,
                                        "permanent": False}}}
JOIN_ACK = {"janus": "ack", "session_id": 3166613583279412, "transaction": "j1"}
# One long-poll answer: a notification to the first participant, then the join's answer.
POLLED = [
    {"janus": "event", "session_id": 3166613583279412, "sender": 5286387078389877,
     "plugindata": {"plugin": "janus.plugin.audiobridge",
                    "data": {"audiobridge": "joined", "room": 1002,
                             "participants": [{"id": 8505940405545253, "display": "p1",
                                               "setup": False, "muted": False}]}}},
    {"janus": "event", "session_id": 3166613583279412, "transaction": "j1",
     "sender": 8573373522627947,
     "plugindata": {"plugin": "janus.plugin.audiobridge",
                    "data": {"audiobridge": "joined", "room": 1002, "id": 8505940405545253,
                             "participants": [{"id": 1444417224091262, "display": "p0",
                                               "setup": False, "muted": False}],
                             "rtp": {"ip": "127.0.0.1", "port": 41002,
                                     "payload_type": 111}}}},
]
JOIN_REFUSED = {"janus": "event", "session_id": 2411914992999297, "transaction": "t5",
                "sender": 4269075000001344,
                "plugindata": {"plugin": "janus.plugin.audiobridge",
                               "data": {"audiobridge": "event", "error_code": 489,
                                        "error": "Plain RTP participants not allowed in "
                                                 "this room"}}}
SESSION_ERROR = {"janus": "error", "transaction": "x",
                 "error": {"code": 458, "reason": "No such session 1"}}


def test_requests() -> None:
    assert janus.create_session("t1") == {"janus": "create", "transaction": "t1"}
    assert janus.attach("t2") == {"janus": "attach", "plugin": "janus.plugin.audiobridge",
                                  "transaction": "t2"}
    body = janus.create_room("t3", 1001, 8000)["body"]
    assert body["request"] == "create" and body["room"] == 1001
    assert body["sampling_rate"] == 8000
    assert body["allow_rtp_participants"] is True  # else: error 489 at join (JOIN_REFUSED)
    assert body["permanent"] is False
    join = janus.join_rtp("t4", 1001, "p0", ip="127.0.0.1", port=5004, codec="opus")
    assert join["janus"] == "message" and join["transaction"] == "t4"
    assert join["body"] == {"request": "join", "room": 1001, "display": "p0", "codec": "opus",
                            "rtp": {"ip": "127.0.0.1", "port": 5004, "payload_type": 111}}
    assert janus.join_rtp("t", 1, "p", ip="127.0.0.1", port=1, codec="pcmu")["body"][
        "rtp"]["payload_type"] == 0


def test_bad_requests_are_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        janus.create_room("t", 1, 11025)
    with pytest.raises(ValueError):
        janus.join_rtp("t", 1, "p", ip="127.0.0.1", port=1, codec="g722")


def test_answers() -> None:
    assert janus.session_id(CREATED_SESSION) == 2411914992999297
    assert janus.handle_id(ATTACHED) == 5599213121653095
    assert janus.room_created(ROOM_CREATED) == 1001
    joined = janus.rtp_joined(janus.events_for(POLLED, "j1")[0])
    assert joined == janus.Joined(8505940405545253, "127.0.0.1", 41002, 111)


def test_events_for_skips_notifications_and_acks() -> None:
    assert janus.events_for(POLLED, "j1") == [POLLED[1]]
    assert janus.events_for([JOIN_ACK], "j1") == []
    assert janus.events_for(POLLED, "other") == []


def test_error_answers_raise_with_the_reason() -> None:
    with pytest.raises(janus.JanusError, match=r"489.*Plain RTP participants not allowed"):
        janus.rtp_joined(JOIN_REFUSED)
    with pytest.raises(janus.JanusError, match="458"):
        janus.session_id(SESSION_ERROR)
    with pytest.raises(janus.JanusError, match="unexpected"):
        janus.rtp_joined(POLLED[0])  # a notification, not a join's answer: no rtp
    with pytest.raises(janus.JanusError):
        janus.room_created(ATTACHED)


def test_config_folder_links_only_audiobridge_and_http(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for sub, so in (("plugins", janus.PLUGIN_SO), ("transports", janus.TRANSPORT_SO)):
        (lib / sub).mkdir(parents=True)
        (lib / sub / so).write_text("")
        (lib / sub / "libjanus_other.so").write_text("")
    root = tmp_path / "janus"
    cfg = janus.write_config(root, http_port=18088, rtp_low=20000, rtp_high=21999, libdir=lib)
    assert cfg == root / "janus.jcfg"
    assert [p.name for p in (root / "plugins").iterdir()] == [janus.PLUGIN_SO]
    assert [p.name for p in (root / "transports").iterdir()] == [janus.TRANSPORT_SO]
    text = cfg.read_text()
    assert f'plugins_folder = "{root / "plugins"}"' in text
    assert f'configs_folder = "{root}"' in text
    http = (root / "janus.transport.http.jcfg").read_text()
    assert 'ip = "127.0.0.1"' in http and "port = 18088" in http and "admin_http = false" in http
    bridge = (root / "janus.plugin.audiobridge.jcfg").read_text()
    assert 'local_ip = "127.0.0.1"' in bridge and 'rtp_port_range = "20100-21999"' in bridge
    # Written again over the old folder (a second run): no error.
    janus.write_config(root, http_port=18089, rtp_low=20000, rtp_high=21999, libdir=lib)


def _stamp(t: float) -> list[tuple[int, int, bytes]]:
    sec = int(t)
    return [(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("qq", sec, round((t - sec) * 1e9)))]


def test_read_packet() -> None:
    rtp = struct.pack("!BBHII", 0x80, 0, 7, 123456, 0xCAFE) + b"\xff" * 160
    p = read_packet(rtp, _stamp(1700000000.25))
    assert p is not None
    assert (p.ts, p.ssrc) == (123456, 0xCAFE)
    assert p.arrival == pytest.approx(1700000000.25)
    assert read_packet(rtp, []) is None                        # no kernel timestamp
    assert read_packet(rtp[:11], _stamp(1.0)) is None          # too short
    assert read_packet(b"\x80\xc8" + rtp[2:], _stamp(1.0)) is None  # RTCP sender report
    assert read_packet(b"\x40" + rtp[1:], _stamp(1.0)) is None      # not version 2


def test_kernel_receive_timestamps_on_loopback() -> None:
    """The receiver's clock: SO_TIMESTAMPNS gives each datagram the kernel's arrival time."""
    from tests.bench.janus_load import RtpParticipant, Voice

    p = RtpParticipant("p", "r", Voice([b"\xff" * 160], 0, 8000), 8000)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        p.recording = True
        for k in range(3):
            out.sendto(struct.pack("!BBHII", 0x80, 0, k, 160 * k, 9) + b"\xff" * 160,
                       ("127.0.0.1", p.port))
        out.sendto(b"not rtp", ("127.0.0.1", p.port))
        deadline = time.monotonic() + 2.0
        while len(p.packets) < 3 and time.monotonic() < deadline:
            p.drain()
            time.sleep(0.01)
        assert [q.ts for q in p.packets] == [0, 160, 320]
        assert all(abs(q.arrival - time.time()) < 5 for q in p.packets)
    finally:
        out.close()
        p.close()


def test_core_busy_seconds_reads_one_core() -> None:
    from tests.bench.janus_bench import TICKS_PER_S, core_busy_seconds

    stat = ("cpu  500 10 300 9000 5 0 40 0 0 0\n"
            "cpu0 200 10 100 4000 2 0 30 0 0 0\n"
            "cpu1 300 0 200 5000 3 0 10 0 0 0\n")
    assert core_busy_seconds(0, stat) == pytest.approx(310 / TICKS_PER_S)
    assert core_busy_seconds(1, stat) == pytest.approx(500 / TICKS_PER_S)
    assert core_busy_seconds(7, stat) == 0.0
