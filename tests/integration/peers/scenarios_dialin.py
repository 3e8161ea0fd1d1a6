"""More sipp scenarios for the dial-in acceptance tests (beside the generators in
`scenarios.py`, which they reuse):

- `with_sdp_media_port`: point the offer's `m=audio` at a port the test owns, so the test
  itself receives what the server sends (sipp keeps sending DTMF from its own -mp port);
- `info_pin_scenario`: the PIN as SIP INFO (`application/dtmf-relay`), one INFO per key;
- `request_scenario`: one out-of-dialog request (OPTIONS, an unknown method, a BYE for no
  dialog) and the responses it may get, with optional header checks;
- `rejected_invite_scenario`: an INVITE that must be refused with a given status (ACKed);
- `hold_reinvite_scenario`: a call with `X-Room-Name`, then a re-INVITE with a=sendonly that
  must be answered a=recvonly, then BYE; all in-dialog requests follow [routes];
- `codec_change_scenario`: a call with `X-Room-Name` on PCMU, then a re-INVITE offering
  PCMA only, then BYE.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .scenarios import _BYE, _HEAD, _INVITE, _TAIL, _headers, _pause, _xml_attr


def with_sdp_media_port(xml: str, port: int, *, offers: int = 1) -> str:
    """The scenario with the `m=audio [media_port]` of its `offers` SDP offers (the INVITE,
    and re-INVITEs) replaced by `port`."""
    needle = "m=audio [media_port] "
    if xml.count(needle) != offers:
        raise ValueError(f"expected {offers} {needle!r} in the scenario, "
                         f"found {xml.count(needle)}")
    return xml.replace(needle, f"m=audio {int(port)} ")


_INFO = """  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:{caller}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={signal}
      Duration=160

    ]]>
  </send>

  <recv response="200" crlf="true"/>
"""


def info_pin_scenario(pin: str, *, pound: bool = True, prompt_wait_ms: int = 3000,
                      digit_gap_ms: int = 300, hold_ms: int = 3000,
                      caller: str = "sipp-info") -> str:
    """INVITE [service], 200, ACK; wait `prompt_wait_ms`; one INFO per key of the PIN (and
    '#'), each answered 200; hold `hold_ms`; BYE (CSeq after the INFOs), 200."""
    keyed = pin + ("#" if pound else "")
    if not re.fullmatch(r"[0-9*#A-D]+", keyed):
        raise ValueError(f"not DTMF keys: {keyed!r}")
    body = [_HEAD.format(name=f"pin by INFO {keyed}", generator="info_pin_scenario"),
            _INVITE.format(caller=caller, headers=""),
            _pause(prompt_wait_ms, "Receive the PIN prompt.")]
    cseq = 2
    for key in keyed:
        body.append(_INFO.format(caller=caller, cseq=cseq, signal=key))
        body.append(_pause(digit_gap_ms))
        cseq += 1
    body.append(_pause(hold_ms, "In the room: hold the call."))
    body.append(_BYE.format(caller=caller).replace("CSeq: 2 BYE", f"CSeq: {cseq} BYE"))
    body.append(_TAIL)
    return "".join(body)


def request_scenario(method: str, statuses: Sequence[int], *,
                     request_uri: str = "sip:[service]@[remote_ip]:[remote_port]",
                     to_tag: str | None = None,
                     expect_headers: Mapping[str, str] | None = None,
                     caller: str = "sipp") -> str:
    """One out-of-dialog `method` request; the call succeeds when the response has one of
    `statuses` (any other final response fails it). `to_tag` makes it look in-dialog (a BYE
    for a dialog the server does not know). `expect_headers` maps a header name to a POSIX
    regexp its value must match (checked on the response)."""
    if not re.fullmatch(r"[A-Z]+", method):
        raise ValueError(f"bad method {method!r}")
    if not statuses:
        raise ValueError("no expected status")
    to = f"<{request_uri}>" + (f";tag={to_tag}" if to_tag else "")
    checks = []
    for i, (name, regexp) in enumerate((expect_headers or {}).items()):
        if not re.fullmatch(r"[A-Za-z0-9-]+", name) or '"' in regexp:
            raise ValueError(f"bad header check {name!r}: {regexp!r}")
        checks.append(f'      <ereg regexp="{_xml_attr(regexp)}" search_in="hdr" '
                      f'header="{name}:" check_it="true" assign_to="h{i}"/>\n'
                      f'      <log message="{name}:[$h{i}]"/>\n')
    action = f"    <action>\n{''.join(checks)}    </action>\n" if checks else ""
    body = [_HEAD.format(name=f"{method} -> {statuses}", generator="request_scenario"),
            f"""  <send retrans="500">
    <![CDATA[

      {method} {request_uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: {to}
      Call-ID: [call_id]
      CSeq: 1 {method}
      Contact: <sip:{caller}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

"""]
    for i, status in enumerate(statuses):
        last = i == len(statuses) - 1
        nxt = "" if last else ' optional="true" next="done"'
        body.append(f'  <recv response="{int(status)}"{nxt}>\n{action}  </recv>\n')
    body.append('  <label id="done"/>\n')
    body.append(_TAIL)
    return "".join(body)


def rejected_invite_scenario(status: int, *, caller: str = "sipp") -> str:
    """An INVITE (PCMU + telephone-event) that must get final response `status`; the ACK
    for it reuses the INVITE's Via (same transaction)."""
    invite = _INVITE.format(caller=caller, headers="")
    invite = invite.split('  <recv response="200"', 1)[0]
    return (_HEAD.format(name=f"INVITE refused {status}", generator="rejected_invite_scenario")
            + invite + f"""  <recv response="{int(status)}"/>

  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
""" + _TAIL)


_REINVITE = """  <send retrans="500">
    <![CDATA[

      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:{caller}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a=sendonly

    ]]>
  </send>

  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a=recvonly" search_in="body" check_it="true" assign_to="hold"/>
      <log message="re-INVITE answer: [$hold]"/>
    </action>
  </recv>

  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Contact: <sip:{caller}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def hold_reinvite_scenario(room: str = "[room]", *, before_ms: int = 1500,
                           after_ms: int = 1000, caller: str = "sipp-hold") -> str:
    """INVITE with `X-Room-Name: <room>`, 200, ACK; after `before_ms` a re-INVITE that puts
    the call on hold (a=sendonly) and must be answered with a=recvonly, ACK; after
    `after_ms` BYE, 200. In-dialog requests go to [next_url] along [routes]."""
    body = [_HEAD.format(name="hold re-INVITE", generator="hold_reinvite_scenario"),
            _INVITE.format(caller=caller, headers=_headers({"X-Room-Name": room})),
            _pause(before_ms, "In the room."),
            _REINVITE.format(caller=caller),
            _pause(after_ms, "On hold."),
            _BYE.format(caller=caller).replace("CSeq: 2 BYE", "CSeq: 3 BYE"),
            _TAIL]
    return "".join(body)


def codec_change_scenario(room: str = "[room]", *, before_ms: int = 1000,
                          after_ms: int = 3000, caller: str = "sipp-recodec") -> str:
    """INVITE with `X-Room-Name: <room>` offering PCMU, 200, ACK; after `before_ms` a
    re-INVITE offering PCMA only (the answer must take it), ACK; after `after_ms` BYE."""
    reinvite = _REINVITE.format(caller=caller)
    for old, new in (("RTP/AVP 0 101", "RTP/AVP 8 101"), ("a=rtpmap:0 PCMU/8000",
                     "a=rtpmap:8 PCMA/8000"), ("a=sendonly", "a=sendrecv"),
                     ('regexp="a=recvonly"', 'regexp="m=audio [0-9]+ RTP/AVP 8 "')):
        assert old in reinvite, old
        reinvite = reinvite.replace(old, new)
    body = [_HEAD.format(name="codec change", generator="codec_change_scenario"),
            _INVITE.format(caller=caller, headers=_headers({"X-Room-Name": room})),
            _pause(before_ms, "In the room, on PCMU."),
            reinvite,
            _pause(after_ms, "On PCMA."),
            _BYE.format(caller=caller).replace("CSeq: 2 BYE", "CSeq: 3 BYE"),
            _TAIL]
    return "".join(body)


def plain_call_scenario(*, hold_ms: int = 3000, caller: str = "sipp",
                        headers: Mapping[str, str] | None = None) -> str:
    """INVITE [service] (no room header unless given), 200, ACK; hold `hold_ms`; BYE, 200."""
    return "".join([_HEAD.format(name="plain call", generator="plain_call_scenario"),
                    _INVITE.format(caller=caller, headers=_headers(headers)),
                    _pause(hold_ms, "Hold the call."),
                    _BYE.format(caller=caller),
                    _TAIL])
