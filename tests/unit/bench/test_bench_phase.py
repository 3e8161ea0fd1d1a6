"""The receiver-side yardstick of the side-by-side benchmark (tests/bench/phase.py)."""

from __future__ import annotations

import pytest

from tests.bench.phase import (
    Packet,
    Receiver,
    by_stream,
    judge,
    phase_report,
    stream_phase,
    ts_positions,
    unwrap_seq,
)


def steady(n: int, *, t0: float = 100.0, ts0: int = 1234, step: int = 160,
           jitter: list[float] | None = None, ssrc: int = 7) -> list[Packet]:
    jitter = jitter or [0.0] * n
    return [Packet(t0 + k * 0.020 + jitter[k], (ts0 + k * step) & 0xFFFFFFFF, ssrc)
            for k in range(n)]


def test_a_steady_stream_has_no_late_packet() -> None:
    phase = stream_phase(steady(500), 8000)
    assert (phase.packets, phase.late, phase.segments) == (500, 0, 1)
    assert phase.worst_s == pytest.approx(0.0, abs=1e-9)


def test_packets_more_than_10ms_behind_are_late_and_jitter_below_is_not() -> None:
    jitter = [0.0] * 100
    jitter[10], jitter[20], jitter[30] = 0.011, 0.009, 0.025
    phase = stream_phase(steady(100, jitter=jitter), 8000)
    assert phase.late == 2
    assert phase.worst_s == pytest.approx(0.025)


def test_a_late_first_packet_does_not_make_the_rest_early() -> None:
    jitter = [0.0] * 50
    jitter[0] = 0.015
    phase = stream_phase(steady(50, jitter=jitter), 8000)
    # Not the 49 after it; nor the first itself: read forward, it was the phase when it came.
    assert phase.late == 0


def test_a_burst_after_a_stall_is_late_until_the_stream_catches_up() -> None:
    # Packets 20..24 held 30 ms and sent together (a tick's sends spread over a long stretch).
    jitter = [0.0] * 60
    for k, extra in zip(range(20, 25), (0.030, 0.030 - 0.02 + 0.02, 0.012, 0.011, 0.0),
                        strict=True):
        jitter[k] = extra
    phase = stream_phase(steady(60, jitter=jitter), 8000)
    assert phase.late == 4


def test_the_timestamp_counts_not_the_arrival_order_a_lost_packet_is_not_late() -> None:
    packets = steady(100)
    del packets[40:45]  # lost (or a skipped tick: the timestamp jumps)
    phase = stream_phase(packets, 8000)
    assert (phase.packets, phase.late) == (95, 0)


def test_opus_clock_and_timestamp_wrap() -> None:
    packets = steady(200, ts0=0xFFFFFFFF - 960 * 50, step=960)
    assert stream_phase(packets, 48000).late == 0


def test_a_restart_re_anchors_instead_of_counting_everything_late() -> None:
    first = steady(100)
    # The stream restarts 7 ms out of phase with a new timestamp base (a new source).
    second = steady(100, t0=first[-1].arrival + 0.027, ts0=999_999)
    phase = stream_phase(first + second, 8000)
    assert (phase.late, phase.segments) == (0, 2)
    # The same restart with a new SSRC and with a long silence.
    third = steady(100, t0=first[-1].arrival + 0.027, ssrc=8, ts0=first[-1].ts + 160)
    assert stream_phase(first + third, 8000).segments == 2
    fourth = steady(100, t0=first[-1].arrival + 2.5, ts0=first[-1].ts + 160)
    assert stream_phase(first + fourth, 8000).segments == 2


def test_a_slow_drift_costs_a_glitch_not_the_rest_of_the_window() -> None:
    jitter = [0.000101 * k for k in range(150)]  # 15 ms behind by the end
    phase = stream_phase(steady(150, jitter=jitter), 8000)
    assert phase.late == 1 and phase.segments == 2


def test_a_steady_phase_shift_re_anchors_after_one_glitch() -> None:
    # What Switchboard did under a busy core: one tick 24 ms late, and every tick after it.
    jitter = [0.0] * 100 + [0.024] * 150
    phase = stream_phase(steady(250, jitter=jitter), 8000)
    assert phase.late == 1 and phase.segments == 2
    # Shorter than SHIFT_RUN: all of them late.
    jitter = [0.0] * 100 + [0.024] * 20 + [0.0] * 100
    assert stream_phase(steady(220, jitter=jitter), 8000).late == 20


def test_spread_lateness_is_never_a_shift() -> None:
    # Packets leaving anywhere 11-40 ms after their tick (a tick's sends spread out).
    jitter = [0.0] * 50 + [0.011 + 0.029 * ((7 * k) % 13) / 12 for k in range(200)]
    phase = stream_phase(steady(250, jitter=jitter), 8000)
    assert phase.late == 200 and phase.segments == 1


def test_bad_clock_rate() -> None:
    with pytest.raises(ValueError):
        stream_phase(steady(3), 0)


def test_judge_passes_a_good_step() -> None:
    receivers = [Receiver(f"p{i}", steady(500), 8000, 500) for i in range(10)]
    v = judge(receivers)
    assert v.ok and v.reasons == []
    assert (v.participants, v.packets, v.expected, v.late) == (10, 5000, 5000, 0)


def test_judge_fails_one_participant_short_of_90_percent() -> None:
    receivers = [Receiver(f"p{i}", steady(500), 8000, 500) for i in range(9)]
    receivers.append(Receiver("starved", steady(449), 8000, 500))
    v = judge(receivers)
    assert not v.ok
    assert v.short == ["starved"]
    assert "under 90%" in v.reasons[0]


def test_judge_fails_at_1_percent_late_of_all_packets() -> None:
    jitter = [0.0] * 500
    for k in range(0, 500, 100):
        jitter[k + 1] = 0.02  # 5 late packets per stream of 500: exactly 1%
    v = judge([Receiver("a", steady(500, jitter=jitter), 8000, 500),
               Receiver("b", steady(500, jitter=jitter), 8000, 500)])
    assert v.late == 10 and v.late_fraction == pytest.approx(0.01)
    assert not v.ok and "behind their stream's phase" in v.reasons[0]
    jitter[401] = 0.0
    assert judge([Receiver("a", steady(500, jitter=jitter), 8000, 500)]).ok


def test_judge_with_no_receiver_fails() -> None:
    assert not judge([]).ok


def test_by_stream_groups_forwarded_streams() -> None:
    mixed = sorted(steady(10, ssrc=1) + steady(10, ssrc=2, t0=100.005), key=lambda p: p.arrival)
    groups = by_stream(mixed)
    assert sorted(groups) == [1, 2] and all(len(g) == 10 for g in groups.values())
    assert all(stream_phase(g, 8000).late == 0 for g in groups.values())


def grid(n: int, offset: float = 0.0037) -> list[float]:
    return [100.0 + offset + i * 0.020 for i in range(n)]


def test_phase_report_by_position_a_lost_packet_is_not_late() -> None:
    t = grid(100)
    idx = list(range(100))
    del t[40], idx[40]
    assert phase_report([(t, idx)]).late == 0
    # by arrival order alone the gap looks like a late packet, then a shifted phase
    assert phase_report([(t, None)]).late >= 1


def test_phase_report_totals_a_spread_tick() -> None:
    # every 5th packet leaves 12 ms behind (the tail of a slowly mixed tick)
    t = [x + (0.012 if i % 5 == 0 and i else 0.0) for i, x in enumerate(grid(500))]
    report = phase_report([(t, None), (grid(500), None), ([], None)])
    assert report.streams == 2 and report.packets == 1000 and report.late == 99
    assert report.fraction == pytest.approx(0.099)
    assert report.worst == pytest.approx(0.012)
    assert "9.90%" in report.summary()
    assert phase_report([]).summary() == "no packets observed"


def test_unwrap_seq() -> None:
    assert unwrap_seq([65534, 65535, 0, 2, 1]) == [0, 1, 2, 4, 3]
    assert unwrap_seq([]) == []


def test_a_stall_burst_does_not_hide_the_shift_after_it() -> None:
    # a stall of 150 ms: the next two packets come in a burst, then the stream goes on 140 ms
    # later than before (a sender that counts by position, not by timestamp): one glitch
    # and the burst, not the rest of the stream
    t = grid(300)
    shifted = t[:100] + [t[100] + 0.164, t[101] + 0.145] + [x + 0.140 for x in t[102:]]
    report = phase_report([(shifted, None)])
    assert report.late <= 3, report
    assert report.worst == pytest.approx(0.164)


def test_positions_from_timestamps_make_a_skipped_tick_a_gap() -> None:
    stamps = [(4294967000 + 160 * k) & 0xFFFFFFFF for k in range(10)]  # wraps
    assert ts_positions(stamps) == list(range(10))
    skipped = stamps[:5] + [(s + 7 * 160) & 0xFFFFFFFF for s in stamps[5:]]
    positions = ts_positions(skipped)
    assert positions == [0, 1, 2, 3, 4, 12, 13, 14, 15, 16]
    # arriving on the 20 ms grid after the stall: nothing late by timestamp
    t = grid(5) + [x + 0.140 for x in grid(10)[5:]]
    assert phase_report([(t, positions)]).late == 0
    assert ts_positions([]) == []
