"""parse_message, StreamFramer and best_effort_response (RFC 3261 sections 7 and 18.3)."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.parser import (
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    StreamFramer,
    best_effort_response,
    parse_message,
)

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.20\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)
INVITE_HEAD = (
    "INVITE sip:1000@192.0.2.10:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:1000@192.0.2.10>\r\n"
    'From: "Alice" <sip:alice@192.0.2.20>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@192.0.2.20\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.20:5060;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    "Content-Type: application/sdp\r\n"
)
INVITE = (INVITE_HEAD + f"Content-Length: {len(SDP)}\r\n\r\n").encode() + SDP
RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.99\r\n"
    b"To: <sip:1000@192.0.2.10>;tag=as1\r\n"
    b'From: "Alice" <sip:alice@192.0.2.20>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.20\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)
FIXTURES = Path(__file__).parents[3] / "fixtures" / "rfc4475"


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


def _request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def _error(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    return info.value


# ---- requests and responses ---------------------------------------------------------------


def test_typical_invite() -> None:
    invite = _request(INVITE)
    assert invite.method == "INVITE"
    assert invite.uri.user == "1000"
    assert invite.uri.port == 5060
    assert invite.body == SDP
    assert invite.call_id == "a84b4c76e66710@192.0.2.20"
    assert invite.cseq == CSeq(314159, "INVITE")
    assert invite.top_via.branch == "z9hG4bK776asdhds"
    assert invite.top_via.port == 5060
    assert "rport" in invite.top_via.params
    assert invite.from_addr.display == "Alice"
    assert invite.from_tag == "1928301774"
    assert invite.to_tag is None
    assert invite.contacts[0].uri.params == {"transport": "udp"}
    assert invite.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]
    assert invite.content_type == "application/sdp"
    assert invite.max_forwards == 70


def test_response() -> None:
    response = parse_message(RESPONSE)
    assert isinstance(response, SipResponse)
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.top_via.received == "192.0.2.99"
    assert response.top_via.rport == 5060
    assert response.to_tag == "as1"
    assert response.body == b""


def test_reason_phrase_may_be_empty_or_unusual() -> None:
    for line, reason in [(b"SIP/2.0 100 ", ""), (b"SIP/2.0 100", ""),
                         (b"SIP/2.0 603 Nope, not  today", "Nope, not  today"),
                         ("SIP/2.0 200 Schön".encode(), "Schön")]:  # fmt: skip
        response = parse_message(_replace(RESPONSE, b"SIP/2.0 180 Ringing", line))
        assert isinstance(response, SipResponse)
        assert response.reason == reason


def test_compact_forms_folding_and_case() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h1.example.com;branch=z9hG4bK1,\r\n"
        b"\tSIP/2.0/TCP h2.example.com;branch=z9hG4bK2\r\n"
        b"f: <sip:b@example.com>\r\n  ;tag=1\r\n"
        b"t: sip:a@example.com\r\n"
        b"i: c1\r\n"
        b"cSeQ: 1\r\n OPTIONS\r\n"
        b"Subject: folded\r\n  over\r\n\tthree lines\r\n"
        b"l: 0\r\n\r\n"
    )
    request = _request(data)
    assert [v.host for v in request.vias] == ["h1.example.com", "h2.example.com"]
    assert request.from_tag == "1"
    assert request.cseq == CSeq(1, "OPTIONS")
    assert request.headers.get("subject") == "folded over three lines"
    assert [n for n, _ in request.headers.items()] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Subject", "Content-Length"]  # fmt: skip


def test_leading_crlf_and_bare_lf_line_ends_are_accepted() -> None:
    assert _request(b"\r\n\r\n" + INVITE).body == SDP
    lf_only = INVITE.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n") + b"\n\n" + SDP
    assert _request(lf_only).body == SDP
    mixed = INVITE.split(b"\r\n\r\n", 1)[0] + b"\r\n\n" + SDP  # CRLF lines, LF blank line
    assert _request(mixed).body == SDP


def test_ipv6_request_uri_and_via() -> None:
    data = (
        b"OPTIONS sip:[2001:db8::10]:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;received=[2001:db8::9:255]\r\n"
        b"From: <sip:a@[2001:db8::9:1]>;tag=1\r\nTo: <sip:[2001:db8::10]>\r\n"
        b"Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    request = _request(data)
    assert (request.uri.host, request.uri.port) == ("[2001:db8::10]", 5070)
    assert request.top_via.host == "[2001:db8::9:1]"
    assert request.top_via.received == "[2001:db8::9:255]"
    assert request.from_addr.uri.host == "[2001:db8::9:1]"


# ---- what makes a message invalid ---------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [b"Via: ", b"From: ", b"To: ", b"Call-ID: ", b"CSeq: "],
)
def test_missing_required_header_is_400(header: bytes) -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(header)]
    assert len(lines) == len(INVITE.split(b"\r\n")) - 1
    assert _error(b"\r\n".join(lines)).status == 400


def test_response_missing_required_header_raises() -> None:
    assert _error(_replace(RESPONSE, b"CSeq: 314159 INVITE\r\n", b"")).status == 400


def test_cseq_method_must_match() -> None:
    error = _error(_replace(INVITE, b"CSeq: 314159 INVITE", b"CSeq: 314159 OPTIONS"))
    assert error.status == 400
    assert "CSeq" in error.reason


@pytest.mark.parametrize("version", [b"SIP/3.0", b"SIP/1.0", b"SIP/2.1"])
def test_unsupported_version_is_505(version: bytes) -> None:
    assert _error(_replace(INVITE, b"SIP/2.0\r\n", version + b"\r\n")).status == 505
    status_line = _replace(RESPONSE, b"SIP/2.0 180", version + b" 180")
    assert _error(status_line).status == 505


@pytest.mark.parametrize(
    "line",
    [
        b"INVITE sip:1000@192.0.2.10 HTTP/1.1",
        b"INVITE sip:1000@192.0.2.10 SIP/2.0 ",
        b"INVITE  sip:1000@192.0.2.10 SIP/2.0",
        b"INVITE sip:1000@192.0.2.10",
        b"INVITE",
        b"IN(VITE sip:1000@192.0.2.10 SIP/2.0",
        b"INVITE <sip:1000@192.0.2.10> SIP/2.0",
        b"INVITE sip:1000@192.0.2.10?Subject=x SIP/2.0",
        b"",
    ],
)
def test_bad_request_line_is_400(line: bytes) -> None:
    data = INVITE.replace(INVITE.split(b"\r\n", 1)[0], line, 1)
    assert _error(data).status == 400


@pytest.mark.parametrize(
    "code", [b"099", b"700", b"20a", b"1000", b"42", b"", b"\xd9\xa1\xd9\xa0\xd9\xa0"]
)
def test_bad_status_code(code: bytes) -> None:
    _error(_replace(RESPONSE, b" 180 ", b" " + code + b" "))


def test_status_code_bounds() -> None:
    for code in (b"100", b"699"):
        response = parse_message(_replace(RESPONSE, b" 180 ", b" " + code + b" "))
        assert isinstance(response, SipResponse)
        assert response.status == int(code)


@pytest.mark.parametrize(
    "bad",
    [
        b"NoColonHere\r\n",
        b"Bad Name: x\r\n",
        b": novalue\r\n",
        b"  continuation-first\r\n",
        b"Sub\rject: x\r\n",
        b"Call-ID: again@x\r\n",
        b"To: <sip:other@x>\r\n",
        b"Max-Forwards: 256\r\n",
        b"Max-Forwards: -1\r\n",
        b"Contact: *\r\n",
        b"Via: SIP/2.0/UDP host;;\r\n",
    ],
)
def test_bad_header_lines_are_400(bad: bytes) -> None:
    if bad.startswith(b" "):
        data = INVITE.replace(b"\r\n", b"\r\n" + bad, 1)
    elif bad.startswith(b"Max-Forwards"):
        data = _replace(INVITE, b"Max-Forwards: 70\r\n", bad)
    else:
        data = _replace(INVITE, b"Content-Type:", bad + b"Content-Type:")
    assert _error(data).status == 400


def test_no_blank_line_after_headers() -> None:
    assert _error(INVITE.split(b"\r\n\r\n")[0] + b"\r\n").status == 400


# ---- body framing --------------------------------------------------------------------------


def test_body_longer_than_content_length_is_truncated() -> None:
    assert _request(INVITE + b"trailing junk").body == SDP


def test_body_shorter_than_content_length_is_400() -> None:
    assert _error(INVITE[:-5]).status == 400


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    data = _replace(INVITE, f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert _request(data).body == SDP


@pytest.mark.parametrize(
    "value", [b"-1", b"abc", b"1 2", b"", b"99999999999999999999", b"\xd9\xa1"]
)
def test_bad_content_length_is_400(value: bytes) -> None:
    data = _replace(INVITE, f"Content-Length: {len(SDP)}".encode(), b"Content-Length: " + value)
    assert _error(data).status == 400


def test_duplicate_content_length_must_agree() -> None:
    same = _replace(INVITE, b"Content-Type:", f"l: {len(SDP)}\r\nContent-Type:".encode())
    assert _request(same).body == SDP
    conflicting = _replace(INVITE, b"Content-Type:", b"l: 3\r\nContent-Type:")
    assert _error(conflicting).status == 400


# ---- limits --------------------------------------------------------------------------------


def test_oversized_message_is_513() -> None:
    big = b"x" * (MAX_MESSAGE_SIZE + 1 - len(INVITE))
    data = (
        _replace(
            INVITE,
            f"Content-Length: {len(SDP)}".encode(),
            f"Content-Length: {len(SDP) + len(big)}".encode(),
        )
        + big
    )
    assert len(data) > MAX_MESSAGE_SIZE
    assert _error(data).status == 513
    response = best_effort_response(data, 513, "Message Too Large")
    assert response is not None and response.startswith(b"SIP/2.0 513 Message Too Large\r\n")


def test_too_many_headers_is_513() -> None:
    own = len(_request(INVITE).headers)
    fits = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - own))
    full = _request(_replace(INVITE, b"Content-Type:", fits + b"Content-Type:"))
    assert len(full.headers) == MAX_HEADERS
    extra = fits + b"X-One-More: v\r\n"
    assert _error(_replace(INVITE, b"Content-Type:", extra + b"Content-Type:")).status == 513


def test_overlong_header_line_is_513() -> None:
    long_line = b"Subject: " + b"a" * MAX_HEADER_LINE + b"\r\n"
    assert _error(_replace(INVITE, b"Content-Type:", long_line + b"Content-Type:")).status == 513
    folded = (
        b"Subject: x\r\n" + b" " + b"a" * (MAX_HEADER_LINE - 10) + b"\r\n " + b"b" * 20 + b"\r\n"
    )
    assert _error(_replace(INVITE, b"Content-Type:", folded + b"Content-Type:")).status == 513


# ---- StreamFramer ---------------------------------------------------------------------------


def test_framer_splits_messages_and_skips_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(INVITE + b"\r\n" + RESPONSE + INVITE[:100]) == [INVITE, RESPONSE]
    assert framer.buffered() == 100
    assert framer.feed(INVITE[100:]) == [INVITE]
    assert framer.buffered() == 0


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    stream = RESPONSE + b"\r\n\r\n" + INVITE + RESPONSE
    for i in range(len(stream)):
        out.extend(framer.feed(stream[i : i + 1]))
    assert out == [RESPONSE, INVITE, RESPONSE]
    assert [type(parse_message(m)) for m in out] == [SipResponse, SipRequest, SipResponse]


def test_framer_compact_content_length_and_lf_only() -> None:
    framer = StreamFramer()
    lf = b"SIP/2.0 200 OK\nl: 3\n\nabcSIP/2.0 100 Trying\nl:0\n\n"
    assert framer.feed(lf) == [b"SIP/2.0 200 OK\nl: 3\n\nabc", b"SIP/2.0 100 Trying\nl:0\n\n"]


def test_framer_requires_content_length_and_stays_broken() -> None:
    framer = StreamFramer()
    no_length = _replace(INVITE, f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    with pytest.raises(RemoteProtocolError):
        framer.feed(no_length)
    with pytest.raises(RemoteProtocolError):
        framer.feed(RESPONSE)


@pytest.mark.parametrize("value", [b"-5", b"x", b"99999999999"])
def test_framer_bad_content_length(value: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(_replace(RESPONSE, b"Content-Length: 0", b"Content-Length: " + value))


def test_framer_size_limits() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(_replace(RESPONSE, b"Content-Length: 0", b"Content-Length: 70000"))
    assert info.value.status == 513
    endless = StreamFramer()
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            endless.feed(b"X-Header: " + b"a" * 1000 + b"\r\n")
    assert info.value.status == 513


# ---- best_effort_response -------------------------------------------------------------------


def test_best_effort_response_salvages_the_transaction_headers() -> None:
    broken = _replace(INVITE, b"CSeq: 314159 INVITE", b"CSeq: 314159 INVITE\r\nContact: <sip:x")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(broken)
    data = best_effort_response(broken, info.value.status, "Bad Request")
    assert data is not None
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    original = _request(INVITE)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.headers.get_all("Via") == original.headers.get_all("Via")
    assert response.from_addr == original.from_addr
    assert response.call_id == original.call_id
    assert response.cseq == original.cseq
    assert response.to_tag is not None
    assert best_effort_response(broken, 400, "Bad Request") == data  # same tag each time


def test_best_effort_response_keeps_an_existing_to_tag() -> None:
    data = _replace(INVITE, b"To: <sip:1000@192.0.2.10>", b"To: <sip:1000@192.0.2.10>;tag=zz")
    response = best_effort_response(data, 400, "Bad Request")
    assert response is not None
    assert parse_message(response).to_tag == "zz"


def test_best_effort_response_505() -> None:
    data = _replace(INVITE, b"SIP/2.0\r\n", b"SIP/7.0\r\n")
    error = _error(data)
    response = best_effort_response(data, error.status, error.reason)
    assert response is not None
    assert response.startswith(b"SIP/2.0 505 ")


@pytest.mark.parametrize(
    "data",
    [
        RESPONSE,
        _replace(INVITE, b"INVITE sip", b"ACK sip"),
        _replace(INVITE, b"Call-ID: a84b4c76e66710@192.0.2.20\r\n", b""),
        _replace(
            INVITE, b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds;rport", b"Via:"
        ),
        b"",
        b"garbage",
        b"\xff\xfe\x00",
    ],
)
def test_best_effort_response_gives_up(data: bytes) -> None:
    assert best_effort_response(data, 400, "Bad Request") is None


# ---- round trips -----------------------------------------------------------------------------


def _samples() -> list[bytes]:
    samples = [INVITE, RESPONSE]
    for path in sorted(FIXTURES.glob("*.dat")):
        try:
            parse_message(path.read_bytes())
        except RemoteProtocolError:
            continue
        samples.append(path.read_bytes())
    return samples


def _same(a: SipMessage, b: SipMessage) -> None:
    assert type(a) is type(b)
    assert a.body == b.body
    assert a.vias == b.vias
    assert (a.from_addr, a.to_addr, a.call_id, a.cseq) == (
        b.from_addr,
        b.to_addr,
        b.call_id,
        b.cseq,
    )
    assert a.contacts == b.contacts
    keys_a = [(n, v) for n, v in a.headers.items() if n != "Content-Length"]
    keys_b = [(n, v) for n, v in b.headers.items() if n != "Content-Length"]
    assert keys_a == keys_b
    if isinstance(a, SipRequest) and isinstance(b, SipRequest):
        assert (a.method, a.uri) == (b.method, b.uri)
    if isinstance(a, SipResponse) and isinstance(b, SipResponse):
        assert (a.status, a.reason) == (b.status, b.reason)


def test_serialize_parse_round_trip_is_stable() -> None:
    samples = _samples()
    assert len(samples) > 25
    for data in samples:
        first = parse_message(data)
        wire = first.serialize()
        second = parse_message(wire)
        _same(first, second)
        assert second.serialize() == wire


def test_round_trip_of_plain_messages_is_byte_exact() -> None:
    assert parse_message(INVITE).serialize() == INVITE
    assert parse_message(RESPONSE).serialize() == RESPONSE


# ---- fuzz ------------------------------------------------------------------------------------

_SPECIAL = [b":", b";", b",", b'"', b"\\", b"<", b">", b" ", b"\t", b"\r\n", b"\r\n ", b"\n",
            b"%", b"[", b"]", b"@", b"=", b"?", b"\x00", b"\xff", b"\xc3", b"9", b"0", b"\r",
            b"SIP/2.0", b"sip:", b"\xd9\xa1", b"Content-Length: 5\r\n",
            b"v: SIP/2.0/UDP ["]  # fmt: skip


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # insert a syntax character
            buf[pos:pos] = rng.choice(_SPECIAL)
        elif op == 2:  # delete a run
            del buf[pos : pos + rng.randint(1, 12)]
        elif op == 3:  # truncate
            del buf[pos:]
        elif op == 4:  # duplicate a run
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 40)]
        else:  # swap two lines
            lines = bytes(buf).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            buf = bytearray(b"\r\n".join(lines))
    return bytes(buf)


def _exercise(message: SipMessage) -> None:
    for accessor in ("vias", "top_via", "cseq", "call_id", "from_addr", "to_addr", "from_tag",
                     "to_tag", "contacts", "record_route", "route", "max_forwards",
                     "content_type"):  # fmt: skip
        with contextlib.suppress(RemoteProtocolError):
            getattr(message, accessor)


def test_fuzzed_messages_raise_only_remote_protocol_errors() -> None:
    rng = random.Random(4475)
    samples = _samples() + [path.read_bytes() for path in sorted(FIXTURES.glob("*.dat"))]
    parsed = rejected = 0
    for _ in range(4000):
        data = _mutate(rng, rng.choice(samples))
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            rejected += 1
            assert 400 <= exc.status <= 599
            response = best_effort_response(data, exc.status, exc.reason)
            if response is not None:
                # Via and CSeq are checked when salvaged; From and To are copied as they were.
                assert response.startswith(f"SIP/2.0 {exc.status} ".encode())
                salvaged = best_effort_response(data, exc.status, exc.reason)
                assert salvaged == response
            continue
        parsed += 1
        _exercise(message)
        # What parsed once must parse again after serialization, with the same meaning.
        again = parse_message(message.serialize())
        _same(message, again)
        with contextlib.suppress(RemoteProtocolError):
            StreamFramer().feed(data)
    assert parsed > 300 and rejected > 300  # both paths really exercised
