"""SipUri and NameAddr: RFC 3261 section 19.1 and 25.1 grammar, escaping, IPv6 references."""

from __future__ import annotations

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.uri import NameAddr, SipUri


def test_full_sip_uri() -> None:
    uri = SipUri.parse(
        "SIP:alice:secret@Example.COM:5070;Transport=TCP;lr?Subject=hi&Priority=urgent"
    )
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "Example.COM"
    assert uri.port == 5070
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == {"Subject": "hi", "Priority": "urgent"}
    assert (
        str(uri) == "sip:alice:secret@Example.COM:5070;transport=TCP;lr?Subject=hi&Priority=urgent"
    )


def test_minimal_uris() -> None:
    assert SipUri.parse("sip:example.com") == SipUri("sip", host="example.com")
    assert SipUri.parse("sips:192.0.2.4:5061") == SipUri("sips", host="192.0.2.4", port=5061)
    assert str(SipUri("sip", user="1000", host="192.0.2.10")) == "sip:1000@192.0.2.10"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:alice@[2001:db8::10]:5070;transport=udp", "[2001:db8::10]", 5070),
        ("sips:[::ffff:192.0.2.1]:5061", "[::ffff:192.0.2.1]", 5061),
    ],
)
def test_ipv6_references_keep_brackets(text: str, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert uri.host == host
    assert uri.port == port
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:2001:db8::10",  # IPv6 without brackets: the colons read as a port
        "sip:[2001:db8::10",
        "sip:[2001:db8::10]5060",
        "sip:[not-ipv6]",
        "sip:user@host:99999",
        "sip:user@host:50a",
        "sip:user@",
        "sip:@host",
        "sip:user@ host",
        "<sip:user@host>",
        "sip:user@host; lr",
        "nocolon",
        ":nothing",
        "1sip:host",
        "sip:host;=x",
        "sip:host?noequals",
        "tel:",
        "sip:us\x00er@host",
        'sip:"quoted"@host',
    ],
)
def test_malformed_uris_raise(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


def test_escapes_are_undone_and_redone() -> None:
    # RFC 4475 esc01: an escaped sips URI used as a user part.
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert uri.host == "example.net"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    spaces = SipUri.parse("sip:I%20have%20spaces@example.net")
    assert spaces.user == "I have spaces"
    assert str(spaces) == "sip:I%20have%20spaces@example.net"


def test_escaped_null_and_unusual_user_characters() -> None:
    assert SipUri.parse("sip:null-%00-null@example.com").user == "null-\x00-null"
    # RFC 4475 semiuri: ';' in the user part, an escaped '@' inside it.
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    again = SipUri.parse(str(uri))
    assert again == uri


def test_escaped_param_and_header_values() -> None:
    uri = SipUri.parse("sip:example.com;x=a%20b?Route=%3Csip:proxy.example.com%3E")
    assert uri.params == {"x": "a b"}
    assert uri.headers == {"Route": "<sip:proxy.example.com>"}
    assert SipUri.parse(str(uri)) == uri


def test_invalid_utf8_escape_round_trips() -> None:
    uri = SipUri.parse("sip:%FF%41@example.com")
    assert uri.user is not None and uri.user.endswith("A")
    assert str(uri) == "sip:%FFA@example.com"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel"
    assert uri.user == "+1-201-555-0123"
    assert uri.host == ""
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "isbn:2983792873",
        "http://www.example.com",
    ],
)
def test_other_schemes_are_opaque(text: str) -> None:
    uri = SipUri.parse(text)
    assert uri.scheme == text.split(":", 1)[0].lower()
    assert uri.host == text.split(":", 1)[1]
    assert uri.user is None
    assert str(uri) == text[: len(uri.scheme)].lower() + text[len(uri.scheme) :]


def test_host_port_helper() -> None:
    assert SipUri.parse("sip:a@[::1]:5080").host_port == "[::1]:5080"
    assert SipUri.parse("sip:a@host").host_port == "host"


# ---- NameAddr ----------------------------------------------------------------------------


def test_name_addr_quoted_display_and_params() -> None:
    addr = NameAddr.parse(
        '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=88sja8x;q=0.5'
    )
    assert addr.display == 'Alice "A" Smith'
    assert addr.uri.user == "alice"
    assert addr.uri.params == {"transport": "tcp"}
    assert addr.params == {"tag": "88sja8x", "q": "0.5"}
    assert addr.tag == "88sja8x"
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_unquoted_display() -> None:
    addr = NameAddr.parse("Bob  Smith <sip:bob@example.com>")
    assert addr.display == "Bob Smith"
    assert str(addr) == '"Bob Smith" <sip:bob@example.com>'
    no_space = NameAddr.parse("caller<sip:caller@example.com>;tag=323")  # RFC 4475 lwsdisp
    assert no_space.display == "caller"
    assert no_space.tag == "323"


def test_unquoted_utf8_display_name_is_tolerated() -> None:
    addr = NameAddr.parse("Jürgen Müller <sip:jm@example.com>")
    assert addr.display == "Jürgen Müller"
    assert str(addr) == '"Jürgen Müller" <sip:jm@example.com>'


def test_addr_spec_form_params_belong_to_the_header() -> None:
    addr = NameAddr.parse("sip:+12125551212@server.phone2net.com;tag=887s")
    assert addr.display is None
    assert addr.uri.params == {}
    assert addr.tag == "887s"
    assert str(addr) == "<sip:+12125551212@server.phone2net.com>;tag=887s"
    # LWS before ';' (RFC 4475 wsinv)
    spaced = NameAddr.parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert spaced.uri.host == "chair-dnrc.example.com"
    assert spaced.tag == "1918181833n"


def test_uri_params_inside_brackets_stay_on_the_uri() -> None:
    addr = NameAddr.parse("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert addr.uri.params == {"unknownparam": None}
    assert addr.params == {}


def test_quoted_param_values_are_kept_verbatim() -> None:
    addr = NameAddr.parse(
        '<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    )
    assert addr.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    assert NameAddr.parse(str(addr)) == addr


def test_no_tag() -> None:
    assert NameAddr.parse("<sip:bob@example.com>").tag is None


def test_empty_display_name() -> None:
    addr = NameAddr.parse('"" <sip:a@b>')
    assert addr.display == ""


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # quotbal: unterminated quoted string
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn: non-token display name
        '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec: spaces inside <>
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct: '?' needs <>
        "<sip:user@example.com",
        '"Joe" sip:joe@example.org',
        '"Joe" <sip:joe@example.org>;;;;',  # badinv01: empty parameters
        "<sip:a@b>;tag=1 junk",
        "<sip:a@b>;=x",
        "",
    ],
)
def test_malformed_name_addrs_raise(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        NameAddr.parse(text)


def test_display_name_with_escaped_controls_round_trips() -> None:
    # RFC 4475 intmeth: quoted-pairs of BEL, NUL and DEL in a display name.
    addr = NameAddr.parse('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@example.com>')
    assert addr.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert NameAddr.parse(str(addr)) == addr
