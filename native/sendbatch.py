"""The packets of one mix tick, sent together.

During a tick the mixer hands every leg's encoded frame to its ``RtpSession``, which builds
the RTP packet and, when the session has a batch (the service gives every phone leg the
same one), queues it here instead of sending it. When the tick is mixed, :meth:`flush`
sends the whole queue with one call into C (``native._fastsend.send_batch``: one
``sendmmsg`` per run of packets on one socket, the loop over sockets without the GIL), so
every phone's packet of a tick leaves within the same fraction of a millisecond, in the
mixer's order (rooms in creation order, listeners in joining order), the same every tick.

The queue holds the sender, not its file descriptor: a session closed since its packet was
queued (a BYE handled between two slices of the tick) is skipped at the flush, so a closed
socket's descriptor, maybe reused meanwhile, is never written to. A datagram the kernel
will not take at once (a full socket buffer) is dropped and counted: the loop never waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from native._fastsend import send_batch

log = logging.getLogger(__name__)

Addr = tuple[str, int]
SendFn = Callable[[list[tuple[int, bytes, Addr]]], tuple[int, int, int]]


class BatchSender(Protocol):
    """What queues into a batch: a session with its socket's descriptor."""

    @property
    def closed(self) -> bool: ...

    @property
    def fileno(self) -> int: ...


class SendBatch:
    """``add(sender, datagram, addr)`` during a tick, ``flush()`` at its end."""

    def __init__(self, send: SendFn = send_batch, *,
                 flush_soon: Callable[[Callable[[], object]], object] | None = None) -> None:
        """``flush_soon``: given (e.g. ``loop.call_soon``), the first add() after a flush
        schedules the next flush with it: the batch of one event-loop turn (the bridge);
        without it the owner calls flush() (the mixer, at the end of a tick)."""
        self._send = send  # injectable for tests: (items) -> (sent, dropped, failed)
        self._flush_soon = flush_soon
        self._pending: list[tuple[BatchSender, bytes, Addr]] = []
        self.flushes = 0
        self.sent = 0
        self.dropped = 0       # the kernel would not take them at once (EAGAIN, ENOBUFS)
        self.failed = 0        # refused by the kernel for another reason
        self.skipped = 0       # their session closed before the flush
        self.max_batch = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, sender: BatchSender, datagram: bytes, addr: Addr) -> None:
        if not self._pending and self._flush_soon is not None:
            self._flush_soon(self.flush)
        self._pending.append((sender, datagram, addr))

    def flush(self) -> int:
        """Send everything queued, in order; the number of datagrams the kernel took."""
        pending = self._pending
        if not pending:
            return 0
        self._pending = []
        items = [(s.fileno, data, addr) for s, data, addr in pending if not s.closed]
        self.skipped += len(pending) - len(items)
        self.flushes += 1
        if len(items) > self.max_batch:
            self.max_batch = len(items)
        try:
            sent, dropped, failed = self._send(items)
        except (OSError, ValueError, TypeError):
            log.exception("send batch: %d datagrams not sent", len(items))
            self.failed += len(items)
            return 0
        self.sent += sent
        if dropped and not self.dropped:
            log.warning("send batch: %d datagrams dropped (socket buffers full)", dropped)
        self.dropped += dropped
        self.failed += failed
        return sent

    def stats(self) -> dict[str, int]:
        return {"flushes": self.flushes, "sent": self.sent, "dropped": self.dropped,
                "failed": self.failed, "skipped": self.skipped, "max_batch": self.max_batch}
