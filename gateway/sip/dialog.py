"""SIP dialogs (RFC 3261 section 12): the state two user agents share for one call.

A `Dialog` is pure data plus the rules of section 12: creating it from the INVITE (UAS) or
from a response (UAC), checking the remote CSeq of in-dialog requests, numbering our own
requests, refreshing the remote target, and building in-dialog requests with the route set
(loose routing, or strict routing when the first route lacks `lr`). It does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import RemoteProtocolError
from .headers import CSeq, Via
from .message import Headers, SipRequest, SipResponse
from .peer import DEFAULT_PORTS, Peer
from .uri import NameAddr, SipUri

__all__ = ["Dialog", "DialogId", "DialogState", "secure_request", "uri_destination"]


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_request(cls, request: SipRequest) -> DialogId | None:
        """The id of the dialog an incoming request belongs to (None: no To tag)."""
        to_tag, from_tag = request.to_tag, request.from_tag
        if not to_tag:
            return None
        return cls(request.call_id, to_tag, from_tag or "")

    @classmethod
    def of_response(cls, response: SipResponse) -> DialogId | None:
        """The id of the dialog a response to our request belongs to (None: no To tag)."""
        to_tag, from_tag = response.to_tag, response.from_tag
        if not to_tag or not from_tag:
            return None
        return cls(response.call_id, from_tag, to_tag)


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"

    def __str__(self) -> str:
        return self.value


def uri_destination(uri: SipUri, default_transport: str = "udp") -> Peer:
    """Where a request for `uri` goes (RFC 3263 without DNS: the host must be an address).

    `maddr` overrides the host; `transport` the transport; the port defaults by transport.
    """
    transport = (uri.params.get("transport") or default_transport or "udp").lower()
    if uri.scheme == "sips" and transport == "udp":
        transport = "tls"
    host = uri.params.get("maddr") or uri.host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = uri.port if uri.port is not None else DEFAULT_PORTS.get(transport, 5060)
    return Peer(transport, host, port)


def secure_request(request: SipRequest) -> bool:
    """The request asks for sips end to end (RFC 3261 12.1.1): its Request-URI is a sips:
    URI, or its top Record-Route is, or (without Record-Route) its Contact is. Our Contact
    in the answer (and in the dialog's requests) is sips: then."""
    if request.uri.scheme == "sips":
        return True
    routes = request.headers.get_all("Record-Route")
    if not routes:
        contact = _contact_uri(request)
        return contact is not None and contact.scheme == "sips"
    try:
        return NameAddr.parse(routes[0].split(",")[0]).uri.scheme == "sips"
    except RemoteProtocolError:
        return False


def _contact_uri(message: SipRequest | SipResponse) -> SipUri | None:
    value = message.headers.get("Contact")
    if value is None:
        return None
    try:
        return NameAddr.parse(value).uri
    except RemoteProtocolError:
        return None


def _record_route(message: SipRequest | SipResponse) -> list[NameAddr]:
    return [NameAddr.parse(value) for value in message.headers.get_all("Record-Route")]


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr  # our From (UAC) or To (UAS) value, with our tag
    remote_uri: NameAddr  # theirs, with their tag
    remote_target: SipUri
    route_set: list[NameAddr] = field(default_factory=list)
    local_cseq: int = 0  # 0: empty (no request sent yet)
    remote_cseq: int | None = None  # None: empty
    transport: str = "udp"  # transport of the request that created the dialog
    secure: bool = False
    state: DialogState = DialogState.EARLY
    # Where the dialog-creating request came from. With no route set, in-dialog requests go
    # back there rather than to the Contact: a phone behind NAT puts its private address in
    # Contact, and only the address its packets came from reaches it (symmetric signalling,
    # as RFC 3581 does for responses and as proxies' NAT helpers do for requests).
    source: Peer | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # --- creation (RFC 3261 12.1) -----------------------------------------------------

    @classmethod
    def create_uas(
        cls, request: SipRequest, local_tag: str, transport: str = "udp",
        source: Peer | None = None,
    ) -> Dialog:
        """The UAS side, from the dialog-creating request (12.1.1).

        Raises RemoteProtocolError when the request has no usable Contact.
        """
        target = _contact_uri(request)
        if target is None:
            raise RemoteProtocolError("dialog-creating request without a valid Contact")
        local = request.to_addr
        local_uri = NameAddr(local.uri, local.display, dict(local.params))
        local_uri.params["tag"] = local_tag
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=local_uri,
            remote_uri=request.from_addr,
            remote_target=target,
            route_set=_record_route(request),
            remote_cseq=request.cseq.number,
            transport=transport,
            secure=secure_request(request),
            source=source,
        )

    @classmethod
    def create_uac(
        cls, request: SipRequest, response: SipResponse, transport: str = "udp"
    ) -> Dialog:
        """The UAC side, from our request and a 1xx/2xx with a To tag (12.1.2)."""
        target = _contact_uri(response) or request.uri
        to_tag = response.to_tag
        if not to_tag:
            raise RemoteProtocolError("dialog-creating response without a To tag")
        dialog = cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=to_tag,
            local_uri=request.from_addr,
            remote_uri=response.to_addr,
            remote_target=target,
            route_set=list(reversed(_record_route(response))),
            local_cseq=request.cseq.number,
            transport=transport,
            secure=request.uri.scheme == "sips",
        )
        dialog.state = (
            DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        )
        return dialog

    # --- in-dialog requests we receive (12.2.2) ---------------------------------------

    def accept_remote_cseq(self, request: SipRequest) -> bool:
        """Check and record the CSeq of an in-dialog request (not ACK or CANCEL).

        False: lower than the last one seen, the request is out of order (answer 500).
        """
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """A target refresh request or its 2xx may carry a new Contact (12.2.1.2, 12.2.2)."""
        target = _contact_uri(message)
        if target is not None:
            self.remote_target = target

    def confirm(self, response: SipResponse | None = None) -> None:
        """The 2xx to the INVITE: the dialog is confirmed (the UAC takes the route set and
        target from the 2xx, 13.2.2.4)."""
        if response is not None and self.state is DialogState.EARLY:
            self.route_set = list(reversed(_record_route(response)))
            self.refresh_target(response)
        self.state = DialogState.CONFIRMED

    # --- in-dialog requests we send (12.2.1) ------------------------------------------

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def next_hop(self) -> Peer:
        """Where in-dialog requests go: the first route, else where the dialog's first request
        came from (see `source`), else the remote target."""
        if self.route_set:
            return uri_destination(self.route_set[0].uri, self.transport)
        if self.source is not None:
            return self.source
        return uri_destination(self.remote_target, self.transport)

    def create_request(
        self,
        method: str,
        via: Via,
        *,
        cseq: int | None = None,
        contact: NameAddr | None = None,
        max_forwards: int = 70,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        """An in-dialog request: Request-URI and Route from the route set (12.2.1.1).

        `cseq` defaults to the next local CSeq (ACK and CANCEL pass the INVITE's number).
        """
        number = cseq if cseq is not None else self.next_cseq()
        headers = Headers()
        headers.add("Via", str(via))
        if self.route_set and "lr" not in self.route_set[0].uri.params:
            # Strict routing: the first route becomes the Request-URI and the remote
            # target goes last in Route.
            request_uri = _strip_uri_for_request(self.route_set[0].uri)
            routes = [str(r) for r in self.route_set[1:]]
            routes.append(str(NameAddr(self.remote_target)))
        else:
            request_uri = self.remote_target
            routes = [str(r) for r in self.route_set]
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", str(self.local_uri))
        headers.add("To", str(self.remote_uri))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(number, method)))
        if contact is not None:
            headers.add("Contact", str(contact))
        for name, value in extra or []:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method=method, uri=request_uri, headers=headers, body=body)


def _strip_uri_for_request(uri: SipUri) -> SipUri:
    """A Request-URI taken from a route: no method or header parts (RFC 3261 19.1.1)."""
    params = {k: v for k, v in uri.params.items() if k not in ("method", "ttl")}
    return SipUri(
        scheme=uri.scheme,
        user=uri.user,
        password=uri.password,
        host=uri.host,
        port=uri.port,
        params=params,
    )
