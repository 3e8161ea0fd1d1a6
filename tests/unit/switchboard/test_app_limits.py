"""The open-file limit at start, and the HTTP connection caps derived from it."""

from __future__ import annotations

import resource
import stat
from pathlib import Path

import pytest

from switchboard.app import admin_token, http_connection_settings, raise_open_file_limit
from switchboard.config import parse_config


def test_the_soft_limit_is_raised_to_the_hard_limit(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lowered = min(soft, 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        with caplog.at_level("INFO", logger="switchboard"):
            now = raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
        if hard != resource.RLIM_INFINITY:
            assert now == hard
        assert f"open files: limit {now}" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("http", "open_files", "total"),
    [
        ({}, 1024, 512),  # half the limit: the rest is for SIP, media and the database
        ({}, 1_048_576, 10_000),
        ({"max_connections": 300}, 1024, 300),
    ],
)
def test_the_connection_total(http: dict[str, int], open_files: int, total: int) -> None:
    settings = http_connection_settings(parse_config({"http": http}), open_files)
    assert settings.max_connections == total
    assert settings.max_per_source == 64 and settings.header_timeout == 10.0


def test_the_generated_admin_token_is_private(tmp_path: Path) -> None:
    """With the database elsewhere (store.url), the data directory is still made 0700 and
    the generated token 0600; a second start reads the same token."""
    data = tmp_path / "data"
    config = parse_config({"store": {"path": str(data),
                                     "url": f"sqlite:///{tmp_path / 'db' / 'x.db'}"}})
    token = admin_token(config)
    assert len(token) >= 16
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "admin-token").stat().st_mode) == 0o600
    assert admin_token(config) == token
