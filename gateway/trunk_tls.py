"""Per-trunk TLS verification: the context and the name a TLS connection we open to a trunk
is checked with (the transport asks through ``SipTransport.tls_for``).

- A trunk with ``tls_verify`` true (the default) has its certificate checked against its
  ``tls_ca`` bundle, else sip.tls_ca, else the system's CAs; the name checked is the trunk's
  configured host (a host name, even when SRV or A records gave another address; or its IP
  address). ``tls_verify`` false: no check at all (a test carrier with a self-made
  certificate; never for a carrier on the internet).
- The addresses a trunk's requests go to are bound to the trunk (``bind``: the registration
  and each dial-out, once resolved); a connection to any other address uses the global
  context (``None``). The trunk is looked up again at connect time, so a trunk changed or
  removed through the API takes effect on the next connection.
- A CA bundle that cannot be read fails that connection with a reason ("TLS: ...") instead
  of falling back to another bundle; contexts are made once per (verify, bundle).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from dialplan.trunks import TrunkRecord
from gateway.sip.peer import Peer
from gateway.sip_tls import client_context

__all__ = ["TrunkTls"]

log = logging.getLogger(__name__)


class TrunkTls:
    def __init__(self, trunk: Callable[[str], TrunkRecord | None], global_ca: str = "",
                 keylog: str = "") -> None:
        self._trunk = trunk
        self._global_ca = global_ca
        self._keylog = keylog
        self._contexts: dict[tuple[bool, str], ssl.SSLContext] = {}
        self._peers: dict[Peer, str] = {}  # a TLS address -> the trunk whose it is

    def bind(self, trunk: TrunkRecord, dest: Peer) -> None:
        """Connections to `dest` are `trunk`'s (its verification applies)."""
        if dest.transport == "tls":
            self._peers[dest] = trunk.name

    def unbind(self, trunk: TrunkRecord) -> None:
        for dest in [d for d, name in self._peers.items() if name == trunk.name]:
            del self._peers[dest]

    def for_peer(self, dest: Peer) -> tuple[ssl.SSLContext, str] | None:
        """(context, name to check) for a connection to `dest`; None: the global ones.
        ValueError ("TLS: ...") when the trunk's CA bundle cannot be read."""
        name = self._peers.get(dest)
        trunk = self._trunk(name) if name is not None else None
        if trunk is None or trunk.transport != "tls":
            return None
        return self.context(trunk), trunk.address.host

    def context(self, trunk: TrunkRecord) -> ssl.SSLContext:
        ca = trunk.tls_ca or self._global_ca
        key = (trunk.tls_verify, ca if trunk.tls_verify else "")
        context = self._contexts.get(key)
        if context is None:
            try:
                context = client_context(key[1], self._keylog, verify=trunk.tls_verify)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"TLS: trunk {trunk.name}: the CA bundle {ca} cannot be "
                                 f"read ({exc})") from None
            self._contexts[key] = context
            log.info("trunk %s: TLS %s", trunk.name,
                     f"verified against {ca or 'the system CAs'}" if trunk.tls_verify
                     else "NOT verified (tls_verify false)")
        return context
