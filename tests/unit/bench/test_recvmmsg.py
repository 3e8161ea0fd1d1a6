"""tests/bench/recvmmsg.py: the load generators' batched reads."""

from __future__ import annotations

import socket

from tests.bench.recvmmsg import MmsgReader


def test_reads_every_waiting_datagram_in_batches_and_nothing_when_empty() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        reader = MmsgReader(batch=4, size=64)
        assert reader.read(rx.fileno()) == 0  # empty: no exception, no datagram
        sent = [bytes([i]) * (10 + i) for i in range(6)]
        for d in sent:
            tx.sendto(d, rx.getsockname())
        got: list[bytes] = []
        for _ in range(3):
            n = reader.read(rx.fileno())
            got += [reader.datagram(i) for i in range(n)]
            assert n <= 4
        assert got == sent
        assert reader.length(1) == len(sent[5]) and reader.offset(1) == 64
        assert reader.read(-1) == -1 and reader.errno != 0  # EBADF
    finally:
        rx.close()
        tx.close()
