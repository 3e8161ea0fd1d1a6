"""PortAllocator: random even ports, a quarantine for released ones, exhaustion."""

from __future__ import annotations

import itertools

import pytest

from gateway.rtp_ports import PortAllocator, PortsExhausted


def test_even_ports_with_their_rtcp_port_and_exhaustion() -> None:
    alloc = PortAllocator(10001, 10008)          # 10002, 10004, 10006 (10008 has no +1)
    ports = [alloc.take(), alloc.take(), alloc.take()]
    assert sorted(ports) == [10002, 10004, 10006]
    assert alloc.in_use == 3 and alloc.available == 0
    with pytest.raises(PortsExhausted):
        alloc.take()
    alloc.release(10004)
    alloc.release(10004)                          # twice: harmless
    alloc.release(5)                              # never taken: ignored
    assert alloc.in_use == 2
    assert alloc.take() == 10004                  # the only one left, quarantined or not
    with pytest.raises(ValueError):
        PortAllocator(10001, 10001)


def test_ports_are_not_predictable_from_the_ones_before() -> None:
    alloc = PortAllocator(20000, 29999)           # 5,000 pairs
    taken = [alloc.take() for _ in range(400)]
    assert len(set(taken)) == 400 and all(p % 2 == 0 for p in taken)
    steps = [b - a for a, b in itertools.pairwise(taken)]
    # in order (round robin) every step would be +2; at random almost none is
    assert sum(1 for s in steps if s == 2) < 10
    assert len(set(steps)) > 300
    # and the range is covered, not a corner of it
    assert min(taken) < 21000 and max(taken) > 29000


def test_two_allocators_draw_differently() -> None:
    first = [PortAllocator(20000, 29999).take() for _ in range(20)]
    assert len(set(first)) > 10                   # each a fresh allocator, first take


def test_a_released_port_is_held_back_while_others_are_free() -> None:
    alloc = PortAllocator(20000, 20199)           # 100 pairs, quarantine 25
    assert alloc.quarantine == 25
    port = alloc.take()
    alloc.release(port)
    assert alloc.in_use == 0 and alloc.available == 100
    following = []
    for _ in range(24):                            # 24 other releases: still held
        p = alloc.take()
        following.append(p)
        alloc.release(p)
    assert port not in following
    p = alloc.take()                               # the 25th newer release frees it again
    alloc.release(p)
    assert alloc.available == 100


def test_quarantined_ports_never_come_back_early_under_churn() -> None:
    alloc = PortAllocator(20000, 20399)           # 200 pairs, quarantine 50
    recent: list[int] = []
    for _ in range(3000):
        port = alloc.take()
        assert port not in recent[-alloc.quarantine:]
        alloc.release(port)
        recent.append(port)


def test_quarantine_gives_way_when_nothing_else_is_free() -> None:
    alloc = PortAllocator(20000, 20005, quarantine=10)   # 20000, 20002, 20004
    a, b, c = alloc.take(), alloc.take(), alloc.take()
    alloc.release(b)
    alloc.release(a)
    assert alloc.available == 2
    assert alloc.take() == b                       # the oldest held one first
    assert alloc.take() == a
    with pytest.raises(PortsExhausted):
        alloc.take()
    assert c in (20000, 20002, 20004)


def test_no_quarantine() -> None:
    alloc = PortAllocator(20000, 20001, quarantine=0)    # one pair
    port = alloc.take()
    alloc.release(port)
    assert alloc.take() == port
