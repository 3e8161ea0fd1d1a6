"""AcmeManager without a network: an issuer that fails, then writes a certificate; a fake
clock. What is served, when the next attempt is, and how loudly a failure is logged."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import MutableMapping
from pathlib import Path

import pytest

from web.acme_client import AcmeFiles, AcmeManager, AcmeSettings, self_signed
from web.tls import RenewalSchedule

SETTINGS = AcmeSettings(domains=("meet.example.org",), directory="https://ca.test/dir")


class Issuer:
    """Fails `failures` times, then writes a certificate valid for `days` days."""

    def __init__(self, failures: int, days: float = 90.0) -> None:
        self.failures = failures
        self.days = days
        self.calls = 0

    def __call__(self, settings: AcmeSettings, tokens: MutableMapping[str, str],
                 files: AcmeFiles) -> None:  # fmt: skip
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("ca.test: connection refused")
        files.save(*self_signed(settings.domains, days=self.days))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_stand_in_then_failures_backing_off_then_a_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    issuer = Issuer(failures=2)
    manager = AcmeManager(SETTINGS, tmp_path, clock=clock, issue=issuer,
                          schedule=RenewalSchedule(first_retry=60.0))  # fmt: skip
    manager.files.prepare()
    manager.start()
    try:
        assert manager.stand_in and manager.not_after is None
        await manager.stop()  # drive attempts by hand, not by the task's timer
        with caplog.at_level(logging.WARNING, logger="web.acme_client"):
            assert await manager.attempt() is False
            assert manager.schedule.next_attempt() == pytest.approx(clock.now + 60)
            clock.now += 60
            assert await manager.attempt() is False
            assert manager.schedule.next_attempt() == pytest.approx(clock.now + 120)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2  # only a stand-in is served: ERROR
        assert "attempt 2" in errors[1].getMessage()
        assert "retrying in 120 s" in errors[1].getMessage()
        clock.now += 120
        assert await manager.attempt() is True
        assert not manager.stand_in
        assert manager.not_after is not None
        assert manager.schedule.failures == 0
        lifetime = manager.not_after - manager.schedule.not_before  # type: ignore[operator]
        assert manager.schedule.next_attempt() == pytest.approx(
            manager.schedule.not_before + lifetime * 2 / 3)  # type: ignore[operator]
        for path in (manager.files.cert, manager.files.key, manager.files.account_key):
            if path.exists():
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(manager.files.dir).st_mode) == 0o700
    finally:
        await manager.stop()


async def test_a_failed_renewal_while_the_certificate_is_valid_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = AcmeFiles(tmp_path)
    files.prepare()
    files.save(*self_signed(SETTINGS.domains, days=90))
    clock = Clock()
    manager = AcmeManager(SETTINGS, tmp_path, clock=clock, issue=Issuer(failures=1))
    manager.start()
    await manager.stop()
    assert not manager.stand_in  # the certificate on disk is served at once
    assert not manager.schedule.due(clock.now)
    with caplog.at_level(logging.WARNING, logger="web.acme_client"):
        assert await manager.attempt() is False
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "ConnectionError" in record.getMessage()
