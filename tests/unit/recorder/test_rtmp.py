"""Live stream targets (recorder/rtmp.py): the allow-list, YouTube keys, the key kept out of
what is shown."""

from __future__ import annotations

import pytest

from recorder.rtmp import StreamRefused, host_allowed, redact, stream_target

ALLOW = ("*.rtmp.youtube.com", "ingest.example.org", "127.0.0.1")


def test_a_youtube_key_becomes_jibris_url() -> None:
    assert stream_target(None, "abcd-1234-efgh", ALLOW) == \
        "rtmp://a.rtmp.youtube.com/live2/abcd-1234-efgh"


def test_allowed_hosts_and_patterns() -> None:
    assert host_allowed("a.rtmp.youtube.com", ALLOW)
    assert host_allowed("B.RTMP.YOUTUBE.COM.", ALLOW)
    assert not host_allowed("rtmp.youtube.com", ALLOW)  # "*." needs a label in front
    assert not host_allowed("evilrtmp.youtube.com.attacker.net", ALLOW)
    assert not host_allowed("ingest.example.org.attacker.net", ALLOW)
    assert stream_target("rtmp://127.0.0.1:1935/live/key1", None, ALLOW) == \
        "rtmp://127.0.0.1:1935/live/key1"
    assert stream_target("rtmps://ingest.example.org/app/k", None, ALLOW)


@pytest.mark.parametrize(("url", "key", "forbidden"), [
    ("rtmp://10.0.0.5/live/k", None, True),  # not allowed
    ("rtmp://127.0.0.1/live/k", None, False),  # (allowed: the control case below)
    ("http://127.0.0.1/live/k", None, False),
    ("rtmp://user:pw@127.0.0.1/live/k", None, False),
    ("rtmp://127.0.0.1/live/k?x=1", None, False),
    ("rtmp://127.0.0.1/k", None, False),  # no application
    ("rtmp://127.0.0.1:99999/live/k", None, False),
    ("rtmp:///live/k", None, False),
    ("rtmp://127.0.0.1/live/k", "s3cr3t", False),  # both
    (None, "bad key!", False),
    (None, None, False),
])
def test_refusals(url: str | None, key: str | None, forbidden: bool) -> None:
    if url == "rtmp://127.0.0.1/live/k" and key is None:
        assert stream_target(url, key, ALLOW)
        return
    with pytest.raises(StreamRefused) as info:
        stream_target(url, key, ALLOW)
    assert info.value.forbidden is forbidden
    if key:
        assert key not in str(info.value)


def test_no_allow_list_means_no_streaming() -> None:
    with pytest.raises(StreamRefused) as info:
        stream_target(None, "abcd", ())
    assert info.value.forbidden


def test_redact_hides_the_key() -> None:
    assert redact("rtmp://a.rtmp.youtube.com/live2/secret-key") == \
        "rtmp://a.rtmp.youtube.com/live2/***"
    assert "k3y" not in redact("rtmp://127.0.0.1:1935/live/k3y")
