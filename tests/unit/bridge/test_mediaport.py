"""The shared media port's demultiplexer (bridge/mediaport.py), without sockets: STUN
requests find their endpoint by ICE ufrag, responses by transaction id, everything else by
the address latched after a successful check; the rest is dropped and counted."""

from __future__ import annotations

import os
from typing import Any

import pytest
from aioice import stun

from bridge.mediaport import (
    MAX_LATCHED,
    TRANSACTION_TTL,
    Demux,
    is_request,
    is_response,
    stun_type,
    stun_username,
)

BROWSER = ("198.51.100.7", 50000)
OTHER = ("198.51.100.8", 50001)


class Sink:
    def __init__(self, name: str) -> None:
        self.name = name

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        raise AssertionError("the demultiplexer only routes")

    def __repr__(self) -> str:
        return self.name


def request(username: str | None, txid: bytes | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST,
                           transaction_id=txid or os.urandom(12))  # fmt: skip
    if username is not None:
        message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1
    message.add_message_integrity(b"p" * 22)
    message.add_fingerprint()
    return bytes(message)


def response(txid: bytes, cls: stun.Class = stun.Class.RESPONSE) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=cls,
                           transaction_id=txid)  # fmt: skip
    message.attributes["XOR-MAPPED-ADDRESS"] = BROWSER
    return bytes(message)


SRTP = b"\x80\x6f" + bytes(40)
DTLS = b"\x16\xfe\xfd" + bytes(20)


def test_stun_header_helpers() -> None:
    req = request("ours:theirs")
    assert is_request(stun_type(req)) and not is_response(stun_type(req))
    assert stun_username(req) == "ours:theirs"
    ok = response(os.urandom(12))
    assert stun_type(ok) == 0x0101 and is_response(stun_type(ok))
    err = response(os.urandom(12), stun.Class.ERROR)
    assert is_response(stun_type(err)) and not is_request(stun_type(err))
    assert stun_type(SRTP) == stun_type(DTLS) == stun_type(b"\x00\x01") == -1
    assert stun_username(request(None)) is None
    broken = bytearray(req)
    broken[22:24] = b"\x04\x00"  # USERNAME says 1,024 bytes
    with pytest.raises(ValueError):
        stun_username(bytes(broken))


def test_requests_route_by_ufrag_and_unknown_credentials_are_dropped() -> None:
    demux = Demux()
    a, b = Sink("a"), Sink("b")
    demux.attach("ufragA", a)
    demux.attach("ufragB", b)
    assert demux.route(request("ufragA:browser"), BROWSER) is a
    assert demux.route(request("ufragB:browser"), OTHER) is b
    assert demux.route(request("guess:browser"), BROWSER) is None
    assert demux.route(request(None), BROWSER) is None
    assert demux.counters.unknown_credentials == 2
    with pytest.raises(ValueError):
        demux.attach("ufragA", Sink("c"))


def test_media_needs_a_latched_address() -> None:
    """DTLS and SRTP from an address that has not passed an ICE check go nowhere; after our
    success response to its check they reach that endpoint only."""
    demux = Demux()
    a, b = Sink("a"), Sink("b")
    demux.attach("ufragA", a)
    demux.attach("ufragB", b)
    assert demux.route(DTLS, BROWSER) is None
    assert demux.route(SRTP, BROWSER) is None
    assert demux.counters.unknown_address == 2
    txid = os.urandom(12)
    assert demux.route(request("ufragA:browser", txid), BROWSER) is a
    # an error response (aioice's 401 for a bad MESSAGE-INTEGRITY) latches nothing
    demux.observe_sent(a, response(txid, stun.Class.ERROR), BROWSER, 0.0)
    assert demux.route(SRTP, BROWSER) is None
    demux.observe_sent(a, response(txid), BROWSER, 0.0)
    assert demux.latched(a) == (BROWSER,)
    assert demux.route(SRTP, BROWSER) is a
    assert demux.route(DTLS, BROWSER) is a
    assert demux.route(SRTP, OTHER) is None  # another port of the same host: no
    assert demux.counters.latched == 1 and demux.counters.unknown_address == 4


def test_responses_route_by_transaction_and_expire() -> None:
    demux = Demux()
    a = Sink("a")
    demux.attach("ufragA", a)
    txid = os.urandom(12)
    demux.observe_sent(a, request("browser:ufragA", txid), BROWSER, 0.0)
    assert demux.route(response(txid), BROWSER) is a
    assert demux.route(response(txid), BROWSER) is a  # the answer to a retransmission
    assert demux.route(response(os.urandom(12)), BROWSER) is None
    assert demux.counters.unknown_transaction == 1
    old = os.urandom(12)
    demux.observe_sent(a, request("browser:ufragA", old), BROWSER, 0.0)
    demux.observe_sent(a, request("browser:ufragA"), BROWSER, TRANSACTION_TTL + 1)
    assert demux.route(response(old), BROWSER) is None


def test_a_request_goes_by_ufrag_even_from_anothers_address() -> None:
    """A browser that rejoins from the same address and port: its checks with the new
    endpoint's ufrag reach the new endpoint, and the new latch moves the address."""
    demux = Demux()
    old, new = Sink("old"), Sink("new")
    demux.attach("ufragOld", old)
    demux.observe_sent(old, response(os.urandom(12)), BROWSER, 0.0)
    demux.attach("ufragNew", new)
    assert demux.route(request("ufragNew:browser"), BROWSER) is new
    assert demux.route(SRTP, BROWSER) is old
    demux.observe_sent(new, response(os.urandom(12)), BROWSER, 1.0)
    assert demux.route(SRTP, BROWSER) is new
    assert demux.latched(old) == () and demux.counters.relatched == 1


def test_detach_forgets_everything_and_latches_are_bounded() -> None:
    demux = Demux()
    a = Sink("a")
    demux.attach("ufragA", a)
    for i in range(MAX_LATCHED + 2):
        demux.observe_sent(a, response(os.urandom(12)), ("198.51.100.9", 1000 + i), 0.0)
    assert len(demux.latched(a)) == MAX_LATCHED
    assert demux.route(SRTP, ("198.51.100.9", 1000)) is None  # the oldest went
    assert demux.route(SRTP, ("198.51.100.9", 1000 + MAX_LATCHED + 1)) is a
    txid = os.urandom(12)
    demux.observe_sent(a, request("browser:ufragA", txid), BROWSER, 0.0)
    demux.detach(a)
    assert len(demux) == 0
    assert demux.route(SRTP, ("198.51.100.9", 1000 + MAX_LATCHED + 1)) is None
    assert demux.route(request("ufragA:browser"), BROWSER) is None
    assert demux.route(response(txid), BROWSER) is None
    demux.observe_sent(a, response(os.urandom(12)), BROWSER, 0.0)  # late: latches nothing
    assert demux.route(SRTP, BROWSER) is None
    demux.attach("ufragA", a)  # the ufrag is free again


def test_malformed_stun_is_counted_not_raised() -> None:
    demux = Demux()
    demux.attach("ufragA", Sink("a"))
    broken = bytearray(request("ufragA:browser"))
    broken[22:24] = b"\xff\xff"
    assert demux.route(bytes(broken), BROWSER) is None
    bad_utf8 = bytearray(request("ufragA:browser"))
    bad_utf8[24] = 0xFF
    assert demux.route(bytes(bad_utf8), BROWSER) is None
    assert demux.route(b"", BROWSER) is None
    assert demux.counters.malformed == 2 and demux.counters.unknown_address == 1
