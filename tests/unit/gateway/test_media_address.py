"""The c= address of a phone leg: usable as it is, hold, a host name resolved once, or 488."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from gateway import media_address
from gateway.media_address import MediaAddressResolver
from gateway.sip.sdp import media_host_kind


@pytest.mark.parametrize(
    ("host", "ipv4", "ipv6"),
    [
        ("127.0.0.1", "ip", "bad"),
        ("192.0.2.10", "ip", "bad"),
        ("::1", "bad", "ip"),
        ("2001:db8::7", "bad", "ip"),
        ("0.0.0.0", "hold", "hold"),
        ("::", "hold", "hold"),
        ("127.0.0.999", "bad", "bad"),
        ("256.1.2.3", "bad", "bad"),
        ("1.2.3", "bad", "bad"),
        ("224.0.0.1", "bad", "bad"),
        ("255.255.255.255", "bad", "bad"),
        ("ff02::1", "bad", "bad"),
        ("fe80::1%eth0", "bad", "bad"),
        ("pbx.example.com", "name", "name"),
        ("pbx.example.com.", "name", "name"),
        ("localhost", "name", "name"),
        ("bad..name", "bad", "bad"),
        ("-pbx.example", "bad", "bad"),
        ("pbx_1.example", "bad", "bad"),
        ("!!garbage", "bad", "bad"),
        ("", "bad", "bad"),
        ("a" * 64 + ".example", "bad", "bad"),
    ],
)
def test_media_host_kind(host: str, ipv4: str, ipv6: str) -> None:
    assert media_host_kind(host, False) == ipv4
    assert media_host_kind(host, True) == ipv6


async def test_numeric_addresses_and_hold_need_no_lookup() -> None:
    r = MediaAddressResolver(ipv6=False)
    assert r.usable_now("127.0.0.1") == "127.0.0.1"
    assert r.usable_now("0.0.0.0") == "0.0.0.0"
    assert r.usable_now("pbx.example") is None and r.needs_lookup("pbx.example")
    assert await r.resolve("127.0.0.1") == "127.0.0.1"
    assert await r.resolve("127.0.0.999") is None
    assert await r.resolve("::1") is None
    v6 = MediaAddressResolver(ipv6=True)
    assert await v6.resolve("2001:DB8:0::7") == "2001:db8::7"     # one spelling


async def test_a_host_name_is_resolved_once_and_invalid_names_never() -> None:
    r = MediaAddressResolver(ipv6=False)
    try:
        assert await r.resolve("localhost") == "127.0.0.1"          # from /etc/hosts
        assert await r.resolve("pbx.invalid") is None               # RFC 6761: not asked
    finally:
        r.close()


async def test_lookups_are_capped_and_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    asked: list[str] = []

    def slow_getaddrinfo(host: str, *args: object) -> list[object]:
        asked.append(host)
        release.wait(5)
        raise socket.gaierror(socket.EAI_NONAME, "not known")

    monkeypatch.setattr(media_address.socket, "getaddrinfo", slow_getaddrinfo)
    r = MediaAddressResolver(ipv6=False, timeout=0.2, max_pending=2)
    try:
        results = await asyncio.gather(*(r.resolve(f"pbx{k}.example") for k in range(5)))
        assert results == [None] * 5
        assert len(asked) == 2                   # three refused at once, nothing queued
        assert await r.resolve("pbx9.example") is None      # both threads still stuck
        assert len(asked) == 2
        release.set()
        await asyncio.sleep(0.1)
        assert await r.resolve("pbx10.example") is None     # a thread is free again
        assert len(asked) == 3
    finally:
        release.set()
        r.close()
