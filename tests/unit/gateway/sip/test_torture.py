"""RFC 4475 SIP torture test messages against the message layer.

The fixtures in tests/fixtures/rfc4475/ are the RFC's own files, bit-exact, named as in its
archive (they are byte-identical in two independent SIP stacks that vendor the archive).

Decisions. "parse" means ``parse_message`` returns a message; "400"/"505" means it raises
``RemoteProtocolError`` with that status; "answer" says whether ``best_effort_response`` can
still build a response (it never answers a response or an ACK).

| section  | file       | decision | answer | why (RFC 4475's text)                               |
|----------|------------|----------|--------|-----------------------------------------------------|
| 3.1.1.x  | 13 valid   | parse    | -      | valid messages: must be accepted                    |
| 3.1.2.1  | badinv01   | 400      | yes    | ";;,;,," in Via, ";;;;" in Contact: empty params    |
| 3.1.2.2  | clerr      | 400      | yes    | Content-Length larger than the datagram's body      |
| 3.1.2.3  | ncl        | 400      | yes    | negative Content-Length                             |
| 3.1.2.4  | scalar02   | 400      | yes    | CSeq > 2**32-1 (the RFC asks 400 for the CSeq error)|
| 3.1.2.5  | scalarlg   | 400      | no     | response, CSeq > 2**32-1: "simply discard it"       |
| 3.1.2.6  | quotbal    | 400      | yes    | unterminated quoted string in To                    |
| 3.1.2.7  | ltgtruri   | 400      | yes    | Request-URI enclosed in <>                          |
| 3.1.2.8  | lwsruri    | 400      | yes    | LWS inside the Request-URI (four start-line elements)|
| 3.1.2.9  | lwsstart   | 400      | yes    | several SP between start-line elements: may reject  |
| 3.1.2.10 | trws       | 400      | yes    | SP after SIP-Version; rejecting is acceptable       |
| 3.1.2.11 | escruri    | 400      | yes    | escaped headers in the Request-URI; 400 acceptable  |
| 3.1.2.12 | baddate    | parse    | -      | semantically invalid: non-GMT Date. The RFC says not|
|          |            |          |        | to reject unless the Date matters; we never read Date|
| 3.1.2.13 | regbadct   | 400      | yes    | Contact URI with '?' not in <> ("reasonable" to 400)|
| 3.1.2.14 | badaspec   | 400      | yes    | spaces inside <> in To; 400 is reasonable           |
| 3.1.2.15 | baddn      | 400      | yes    | unquoted display names with ','; "always reject"    |
| 3.1.2.16 | badvers    | 505      | yes    | SIP/7.0: 505 Version Not Supported                  |
| 3.1.2.17 | mismatch01 | 400      | yes    | CSeq method differs from the request method         |
| 3.1.2.18 | mismatch02 | 400      | yes    | unknown method, CSeq mismatch: 400 or 501; we say 400|
| 3.1.2.19 | bigcode    | 400      | no     | response with status 4294967301: discard            |
| 3.2.1    | badbranch  | parse    | -      | branch "z9hG4bK" alone: a transaction-layer matter  |
| 3.3.1    | insuf      | 400      | no     | no Call-ID, From, To: no response can be formed     |
| 3.3.2    | unkscm     | parse    | -      | unknown Request-URI scheme: opaque URI, UA says 416 |
| 3.3.3    | novelsc    | parse    | -      | "soap.beep" scheme: opaque URI                      |
| 3.3.4    | unksm2     | parse    | -      | isbn/http/name URIs in To, From, Contact: opaque URIs|
| 3.3.5    | bext01     | parse    | -      | unknown Require: the UA answers 420                 |
| 3.3.6    | invut      | parse    | -      | unknown Content-Type: the UA answers 415            |
| 3.3.7    | regaut01   | parse    | -      | unknown Authorization scheme: header kept as text   |
| 3.3.8    | multi01    | 400      | yes    | two Call-ID/To/From/CSeq/Max-Forwards: "respond 400"|
| 3.3.9    | mcl01      | 400      | yes    | conflicting Content-Length values: framing is corrupt|
| 3.3.10   | bcast      | parse    | -      | broadcast address in a Via of a response            |
| 3.3.11   | zeromf     | parse    | -      | Max-Forwards: 0 (the UA still answers an OPTIONS)   |
| 3.3.12   | cparam01   | parse    | -      | addr-spec Contact: ";unknownparam" is a header param|
| 3.3.13   | cparam02   | parse    | -      | <...;unknownparam>: a URI param                     |
| 3.3.14   | regescrt   | parse    | -      | escaped Route header inside <> in Contact is legal  |
| 3.3.15   | sdp01      | parse    | -      | Accept the UA cannot satisfy: the UA answers 406/415|
| 3.4.1    | inv2543    | parse    | -      | RFC 2543 syntax: no branch, tags or Content-Length  |
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.parser import StreamFramer, best_effort_response, parse_message

FIXTURES = Path(__file__).parents[3] / "fixtures" / "rfc4475"

VALID = ["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
         "semiuri", "transports", "mpart01", "unreason", "noreason"]  # fmt: skip
# file -> (status, whether best_effort_response can answer)
INVALID: dict[str, tuple[int, bool]] = {
    "badinv01": (400, True), "clerr": (400, True), "ncl": (400, True),
    "scalar02": (400, True), "scalarlg": (400, False), "quotbal": (400, True),
    "ltgtruri": (400, True), "lwsruri": (400, True), "lwsstart": (400, True),
    "trws": (400, True), "escruri": (400, True), "regbadct": (400, True),
    "badaspec": (400, True), "baddn": (400, True), "badvers": (505, True),
    "mismatch01": (400, True), "mismatch02": (400, True), "bigcode": (400, False),
    "insuf": (400, False), "multi01": (400, True), "mcl01": (400, True),
}  # fmt: skip
SEMANTIC_PARSEABLE = ["baddate", "badbranch", "unkscm", "novelsc", "unksm2", "bext01", "invut",
                      "regaut01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01",
                      "inv2543"]  # fmt: skip


def _load(name: str) -> bytes:
    return (FIXTURES / f"{name}.dat").read_bytes()


def _parse(name: str) -> SipMessage:
    return parse_message(_load(name))


def _req(name: str) -> SipRequest:
    message = _parse(name)
    assert isinstance(message, SipRequest)
    return message


def test_fixture_set_is_complete() -> None:
    names = {p.stem for p in FIXTURES.glob("*.dat")}
    assert names == set(VALID) | set(INVALID) | set(SEMANTIC_PARSEABLE)
    assert len(names) == 49


@pytest.mark.parametrize("name", VALID + SEMANTIC_PARSEABLE)
def test_message_parses(name: str) -> None:
    message = _parse(name)
    # Every accessor the upper layers rely on works on what parse_message accepts.
    assert message.call_id
    assert message.vias
    assert isinstance(message.cseq, CSeq)
    _ = (message.from_addr, message.to_addr, message.contacts, message.max_forwards)
    again = parse_message(message.serialize())
    assert again.serialize() == message.serialize()
    assert again.vias == message.vias
    assert (again.from_addr, again.to_addr) == (message.from_addr, message.to_addr)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_raises(name: str) -> None:
    status, answerable = INVALID[name]
    data = _load(name)
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status == status
    response = best_effort_response(data, info.value.status, info.value.reason)
    if not answerable:
        assert response is None
        return
    assert response is not None
    assert response.startswith(f"SIP/2.0 {status} ".encode())
    # The salvaged Via, Call-ID and CSeq are the request's own.
    text = data.decode("utf-8", "replace")
    for line in response.decode().split("\r\n")[1:]:
        if line.startswith(("Via: ", "Call-ID: ", "CSeq: ")):
            value = line.split(": ", 1)[1]
            assert value in text
    assert b"\r\nContent-Length: 0\r\n\r\n" in response


def test_valid_bodies_match_content_length() -> None:
    for name in VALID:
        message = _parse(name)
        length = message.headers.get("Content-Length")
        if length is not None:
            assert len(message.body) == int(length), name


# ---- the specific points RFC 4475 calls out --------------------------------------------------


def test_wsinv_unusual_whitespace_folding_and_compact_forms() -> None:
    m = _req("wsinv")
    assert m.method == "INVITE"
    assert m.uri.host == "chair-dnrc.example.com"
    assert m.uri.params == {"unknownparam": None}
    assert m.to_addr.uri.user == "vivekg"
    assert m.to_tag == "1918181833n"
    assert m.from_addr.display == 'J Rosenberg \\"'
    assert m.from_addr.uri.user == "jdrosen"
    assert m.from_tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [str(r.uri) for r in m.route] == [
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"]  # fmt: skip
    (contact,) = m.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.content_type == "application/sdp"
    assert len(m.body) == 150


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = _req("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to_addr.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.to_addr.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_addr.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_addr.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01_escapes_in_uris() -> None:
    m = _req("esc01")
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert m.to_addr.uri.user == "user"
    assert m.from_addr.uri.user == "I have spaces"
    (contact,) = m.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert m.content_type == "application/sdp"


def test_escnull_escaped_nulls() -> None:
    m = _req("escnull")
    assert m.to_addr.uri.user == "null-\x00-null"
    assert [c.uri.user for c in m.contacts] == ["\x00", "\x00\x00"]
    assert b"sip:null-%00-null@example.com" in m.serialize()


def test_esc02_percent_that_is_not_an_escape() -> None:
    m = _req("esc02")
    assert m.method == "RE%47IST%45R"  # a token: '%' is a plain character here
    assert m.to_addr.display == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    # "C%6Fntact" is another (extension) header, not Contact.
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_before_angle_bracket() -> None:
    m = _req("lwsdisp")
    assert m.from_addr.display == "caller"
    assert m.from_tag == "323"


def test_longreq_long_values() -> None:
    m = _req("longreq")
    assert m.to_addr.display is not None
    assert m.to_addr.display.startswith("I have a user name of extremeextreme")
    assert m.to_addr.display.endswith("proportion")
    assert m.to_addr.uri.port == 6000
    assert len(m.to_addr.uri.params) == 3
    assert m.to_addr.uri.params["unknownparam1"] == "very" + "long" * 20 + "value"
    assert m.to_addr.uri.params["longparam" + "name" * 25] == "shortvalue"
    assert "very" + "long" * 25 + "parameternamewithnovalue" in m.to_addr.uri.params
    assert m.from_addr.uri.user == "amazinglylongcallername" * 5
    assert m.from_tag is not None and len(m.from_tag) == 155 and m.from_tag.startswith("1298298")
    assert m.from_addr.params["unknownvaluelessparamname" + "paramname" * 9] is None
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    unknown = m.headers.get("unknown-" + "long" * 20 + "-name")  # any case finds it
    assert unknown is not None and unknown.startswith("unknown-" + "long" * 20 + "-value;")
    raw_via_lines = [line for line in _load("longreq").split(b"\r\n")
                     if line.split(b":")[0].strip().lower() in (b"v", b"via")]  # fmt: skip
    assert len(m.vias) == len(raw_via_lines) == 34
    assert m.vias[-1].received == "192.0.2.5"
    assert m.vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert m.contacts[0].uri.user == "amazinglylongcallername" * 5
    assert len(m.body) == 150


def test_dblreq_extra_octets_in_a_datagram_are_ignored() -> None:
    m = _req("dblreq")
    assert m.method == "REGISTER"
    assert m.body == b""
    # The noise is not even a well-framed INVITE (its body is 155 octets, not 150): on a
    # stream the REGISTER frames alone and the noise is a framing error, reported after the
    # REGISTER is handed out (so it still gets its answer) and raised by the next feed.
    data = _load("dblreq")
    register_end = data.index(b"\r\n\r\n") + 4
    assert StreamFramer().feed(data[: register_end + 2]) == [data[:register_end]]
    framer = StreamFramer()
    assert framer.feed(data)[0] == data[:register_end]
    assert framer.failed is not None
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"")


def test_semiuri_semicolons_in_the_user_part() -> None:
    m = _req("semiuri")
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com"
    assert m.uri.params == {}
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]  # fmt: skip


def test_transports_varied_and_unknown() -> None:
    m = _req("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body() -> None:
    m = _req("mpart01")
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553
    assert m.body == _load("mpart01")[-553:]
    assert m.serialize().endswith(m.body)


def test_unusual_and_empty_reason_phrases() -> None:
    unreason = _parse("unreason")
    assert isinstance(unreason, SipResponse)
    assert unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 \u043d\u043e ")
    noreason = _parse("noreason")
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")


def test_ipv6_references() -> None:
    # RFC 4475 has no IPv6 message; this is the RFC 5118 shape (section 4.1 and 4.5).
    data = _load("zeromf").replace(
        b"sip:user@example.com SIP/2.0", b"sip:user@[2001:db8::10]:5070 SIP/2.0"
    )
    data = data.replace(
        b"SIP/2.0/UDP host1.example.com;",
        b"SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];",
    )
    m = parse_message(data)
    assert isinstance(m, SipRequest)
    assert (m.uri.host, m.uri.port) == ("[2001:db8::10]", 5070)
    assert (m.top_via.host, m.top_via.port) == ("[2001:db8::9:1]", 5060)
    assert m.top_via.received == "[2001:db8::9:255]"


# ---- sections 3.2 to 3.4: parse, and the UA has what it needs to decide -------------------------


def test_semantic_cases_expose_what_the_ua_decides_on() -> None:
    assert _req("badbranch").top_via.branch == "z9hG4bK"
    assert _req("unkscm").uri.scheme == "nobodyknowsthisscheme"
    assert str(_req("unkscm").uri) == "nobodyknowsthisscheme:totallyopaquecontent"
    assert _req("novelsc").uri.scheme == "soap.beep"
    unksm2 = _req("unksm2")
    assert unksm2.to_addr.uri.scheme == "isbn"
    assert unksm2.from_addr.uri.scheme == "http"
    assert unksm2.contacts[0].uri.scheme == "name"
    assert _req("bext01").headers.get_all("Require") == [
        "nothingSupportsThis", "nothingSupportsThisEither"]  # fmt: skip
    assert _req("invut").content_type == "application/unknownformat"
    assert _req("regaut01").headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    bcast = _parse("bcast")
    assert [v.host for v in bcast.vias] == ["192.0.2.198", "255.255.255.255"]
    assert _req("zeromf").max_forwards == 0
    cparam01 = _req("cparam01").contacts[0]
    assert cparam01.params == {"unknownparam": None}
    assert cparam01.uri.params == {}
    cparam02 = _req("cparam02").contacts[0]
    assert cparam02.params == {}
    assert cparam02.uri.params == {"unknownparam": None}
    assert _req("regescrt").contacts[0].uri.headers == {"Route": "<sip:sip.example.com>"}
    assert _req("sdp01").headers.get("Accept") == "text/nobodyKnowsThis"
    assert _req("baddate").headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_inv2543_rfc_2543_syntax() -> None:
    m = _req("inv2543")
    assert m.top_via.branch is None
    assert m.from_tag is None and m.to_tag is None
    assert m.to_addr.params == {"user": "phone"}  # addr-spec form: a header parameter
    assert m.from_addr.uri.params == {"user": "phone"}
    assert "Content-Length" not in m.headers
    assert m.body.startswith(b"v=0\r\n")  # no Content-Length over UDP: the rest of the datagram
    assert m.max_forwards is None
    with pytest.raises(RemoteProtocolError):  # a stream transport needs Content-Length
        StreamFramer().feed(_load("inv2543"))


def test_valid_messages_frame_on_a_stream() -> None:
    for name in VALID:
        if name == "dblreq":
            continue
        data = _load(name)
        framer = StreamFramer()
        out: list[bytes] = []
        for i in range(0, len(data), 7):
            out.extend(framer.feed(data[i : i + 7]))
        assert out == [data], name
