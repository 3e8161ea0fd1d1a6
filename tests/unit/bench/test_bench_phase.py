"""The receiver-side yardstick (tests/bench/phase.py): lateness against a stream's phase."""

from __future__ import annotations

import pytest

from tests.bench.phase import late_count, lateness, phase_report, unwrap_seq


def grid(n: int, offset: float = 0.0037) -> list[float]:
    return [100.0 + offset + i * 0.020 for i in range(n)]


def test_a_steady_stream_has_nothing_late_whatever_its_offset() -> None:
    assert late_count(grid(200)) == 0
    assert late_count(grid(200, offset=0.019)) == 0
    assert max(abs(x) for x in lateness(grid(200))) < 1e-9


def test_packets_behind_by_more_than_10_ms_are_counted() -> None:
    t = grid(200)
    t[10] += 0.011       # late
    t[20] += 0.009       # within the buffer's reach
    t[30] -= 0.015       # early is not late
    assert late_count(t) == 1
    assert lateness(t)[10] == pytest.approx(0.011)


def test_the_first_packet_being_late_does_not_make_the_rest_early() -> None:
    t = grid(100)
    t[0] += 0.015
    assert late_count(t) == 1


def test_a_lost_packet_with_indices_is_not_a_shift() -> None:
    t = grid(100)
    idx = list(range(100))
    del t[40], idx[40]
    assert late_count(t, idx) == 0
    # without indices every later packet would look 20 ms late until the reference moves
    assert late_count(t) > 0


def test_a_stream_that_jumps_phase_is_judged_against_its_new_phase() -> None:
    t = grid(300)
    t[150:] = [x + 0.020 for x in t[150:]]  # a skipped tick: the sender's phase moves
    assert late_count(t, list(range(300))) <= 50


def test_a_spread_tick_makes_a_share_of_packets_late() -> None:
    # every 5th packet leaves 12 ms behind (the tail of a slowly mixed tick)
    t = [x + (0.012 if i % 5 == 0 else 0.0) for i, x in enumerate(grid(500))]
    report = phase_report([(t, None), (grid(500), None), ([], None)])
    assert report.streams == 2 and report.packets == 1000 and report.late == 100
    assert report.fraction == pytest.approx(0.1)
    assert report.worst == pytest.approx(0.012)
    assert "10.00%" in report.summary()


def test_unwrap_seq() -> None:
    assert unwrap_seq([65534, 65535, 0, 2, 1]) == [0, 1, 2, 4, 3]
    assert unwrap_seq([]) == []
