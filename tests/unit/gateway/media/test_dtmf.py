"""RFC 4733 receiver and sender, and SIP INFO DTMF bodies."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.media.dtmf import (
    DtmfEnded,
    DtmfEvent,
    DtmfInfo,
    DtmfReceiver,
    DtmfStarted,
    TelephoneEvent,
    digit_to_event,
    dtmf_packets,
    parse_dtmf,
    parse_dtmf_relay,
    parse_info_body,
)
from gateway.media.rtp import RtpPacket

FIXTURES = Path(__file__).parents[3] / "fixtures" / "rtp"


def load(name: str) -> list[RtpPacket]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [RtpPacket.parse(bytes.fromhex(x)) for x in lines if x and not x.startswith("#")]


def drain(rx: DtmfReceiver) -> list[DtmfEvent]:
    out = []
    while (event := rx.next_event()) is not None:
        out.append(event)
    return out


def digits(events: list[DtmfEvent]) -> str:
    return "".join(e.digit for e in events if isinstance(e, DtmfStarted))


@pytest.mark.parametrize(("name", "digit"), [("dtmf_2833_1.hex", "1"),
                                             ("dtmf_2833_pound.hex", "#"),
                                             ("dtmf_2833_star.hex", "*")])
def test_captured_digit_reported_once(name: str, digit: str) -> None:
    rx = DtmfReceiver()
    packets = load(name)
    for i, p in enumerate(packets):
        rx.receive_packet(p, 0.02 * i)
    events = drain(rx)
    assert events == [
        DtmfStarted(digit, packets[0].timestamp),
        DtmfEnded(digit, packets[0].timestamp, 2240 * 1000 // 8000, True),
    ]


def test_first_packets_lost() -> None:
    rx = DtmfReceiver()
    packets = load("dtmf_2833_1.hex")
    for i, p in enumerate(packets[4:]):                 # marker and 3 updates lost
        rx.receive_packet(p, 0.02 * i)
    assert digits(drain(rx)) == "1"


def test_only_an_end_packet_arrives() -> None:
    rx = DtmfReceiver()
    rx.receive_packet(load("dtmf_2833_1.hex")[-1], 0.0)
    events = drain(rx)
    assert [type(e) for e in events] == [DtmfStarted, DtmfEnded]


def test_all_end_packets_lost_then_next_digit() -> None:
    rx = DtmfReceiver()
    first = dtmf_packets("4")
    second = dtmf_packets("4")
    t = 0.0
    for p in first:
        if not p.end:
            rx.receive(8000, p.marker, p.payload, t)
            t += 0.02
    for p in second:
        rx.receive(8000 + 4000, p.marker, p.payload, t)
        t += 0.02
    events = drain(rx)
    assert digits(events) == "44"                       # same digit twice: two events
    ended = [e for e in events if isinstance(e, DtmfEnded)]
    assert [e.confirmed for e in ended] == [False, True]


def test_unterminated_event_ends_at_timer() -> None:
    rx = DtmfReceiver(timeout=2.0)
    rx.receive(100, True, TelephoneEvent(7, False, 10, 160).serialize(), 5.0)
    assert rx.get_timer() == 7.0
    rx.handle_timer(6.9)
    assert digits(drain(rx)) == "7"
    rx.handle_timer(7.0)
    events = drain(rx)
    assert events == [DtmfEnded("7", 100, 20, False)]
    assert rx.get_timer() is None
    # a late update of that event after it was closed is ignored
    rx.receive(100, False, TelephoneEvent(7, False, 10, 320).serialize(), 7.1)
    assert drain(rx) == []


def test_reordered_and_duplicated_packets() -> None:
    rx = DtmfReceiver()
    packets = dtmf_packets("9")
    order = list(range(len(packets)))
    rng = random.Random(1)
    for _ in range(3):
        order.insert(rng.randrange(len(order)), rng.randrange(len(packets)))
    order[1], order[2] = order[2], order[1]
    for i in order:
        rx.receive(4242, packets[i].marker, packets[i].payload, 0.0)
    events = drain(rx)
    assert digits(events) == "9"
    assert sum(isinstance(e, DtmfEnded) for e in events) == 1


def test_late_packet_of_earlier_event_is_ignored() -> None:
    rx = DtmfReceiver()
    for p in dtmf_packets("1"):
        rx.receive(1000, p.marker, p.payload, 0.0)
    upd = dtmf_packets("2")
    rx.receive(3000, True, upd[0].payload, 0.1)
    rx.receive(1000, False, dtmf_packets("1")[2].payload, 0.1)    # stale, old timestamp
    rx.receive(2000, True, dtmf_packets("3")[0].payload, 0.1)     # older than current
    assert digits(drain(rx)) == "12"


def test_garbage_and_non_digit_events() -> None:
    rx = DtmfReceiver()
    rx.receive(1, True, b"\x01", 0.0)
    rx.receive(2, True, TelephoneEvent(16, False, 10, 160).serialize(), 0.0)   # flash
    assert drain(rx) == [] and rx.garbage == 1


def test_long_event_segments_are_one_digit() -> None:
    rx = DtmfReceiver()
    rx.receive(0, True, TelephoneEvent(5, False, 10, 160).serialize(), 0.0)
    rx.receive(0, False, TelephoneEvent(5, False, 10, 0xFFFF).serialize(), 8.0)
    rx.receive(0xFFFF, False, TelephoneEvent(5, False, 10, 800).serialize(), 8.1)
    rx.receive(0xFFFF, False, TelephoneEvent(5, True, 10, 1600).serialize(), 8.2)
    events = drain(rx)
    assert digits(events) == "5"
    assert events[-1] == DtmfEnded("5", 0xFFFF, (0xFFFF + 1600) * 1000 // 8000, True)


# --- sender ---------------------------------------------------------------------------


def test_sender_packet_sequence() -> None:
    packets = dtmf_packets("#", duration_ms=160)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert len(packets) == 10
    assert [p.marker for p in packets] == [True] + [False] * 9
    assert [p.end for p in packets] == [False] * 7 + [True] * 3
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 960, 1120] + [1280] * 3
    assert {e.event for e in events} == {11} and {e.volume for e in events} == {10}
    assert [round(p.offset, 3) for p in packets] == [round(0.02 * k, 3) for k in range(10)]


def test_sender_to_receiver_round_trip_all_digits() -> None:
    rx = DtmfReceiver()
    ts = 0
    t = 0.0
    for digit in "0123456789*#ABCD":
        for p in dtmf_packets(digit, duration_ms=100):
            rx.receive(ts, p.marker, p.payload, t + p.offset)
        ts += 8000
        t += 1.0
    events = drain(rx)
    assert digits(events) == "0123456789*#ABCD"
    assert all(e.duration_ms == 100 for e in events if isinstance(e, DtmfEnded))


def test_digit_validation() -> None:
    assert digit_to_event("a") == 12
    for bad in ["", "E", "10", "x"]:
        with pytest.raises(ValueError):
            digit_to_event(bad)
    with pytest.raises(ValueError):
        dtmf_packets("?")


# --- SIP INFO -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=160\r\n", DtmfInfo("5", 160)),
        (b"Signal=5\r\nDuration=160", DtmfInfo("5", 160)),
        (b"signal= *\nduration = 250\n", DtmfInfo("*", 250)),
        (b"Signal=#\r\n", DtmfInfo("#", None)),
        (b"Signal=11\r\nDuration=100\r\n", DtmfInfo("#", 100)),
        (b"Signal=d\r\nDuration=x\r\n", DtmfInfo("D", None)),
        (b"", None),
        (b"Duration=160\r\n", None),
        (b"Signal=\r\n", None),
        (b"Signal=55\r\n", None),
        (b"Signal=16\r\n", None),
        (b"Signal=\xff\r\n", None),
        (b"garbage", None),
        (b"Signal=1" + b"\r\nX=y" * 1000, None),
    ],
)
def test_dtmf_relay(body: bytes, expected: DtmfInfo | None) -> None:
    assert parse_dtmf_relay(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"5", "5"), (b" 7\r\n", "7"), (b"#", "#"), (b"b", "B"), (b"10", "*"),
     (b"", None), (b"55", None), (b"x", None), (b"\xff", None), (b"1" * 100, None)],
)
def test_application_dtmf(body: bytes, expected: str | None) -> None:
    info = parse_dtmf(body)
    assert (info.digit if info else None) == expected


def test_parse_info_body_dispatch() -> None:
    assert parse_info_body("application/dtmf-relay", b"Signal=3\r\nDuration=100") == DtmfInfo(
        "3", 100)
    assert parse_info_body("Application/DTMF-Relay; charset=utf-8", b"Signal=3") == DtmfInfo("3")
    assert parse_info_body("application/dtmf", b"9") == DtmfInfo("9")
    assert parse_info_body("application/sdp", b"Signal=3") is None
    assert parse_info_body(None, b"9") is None


def test_info_parsers_never_raise_on_random_bytes() -> None:
    rng = random.Random(2976)
    for _ in range(3000):
        body = rng.randbytes(rng.randrange(0, 40))
        for parse in (parse_dtmf_relay, parse_dtmf):
            result = parse(body)
            assert result is None or result.digit in "0123456789*#ABCD"
