"""The TLS settings of SIP over TLS (``sip.listen`` with ``tls:HOST:PORT``).

``server_context``: what peers connecting to us get (our certificate chain and key, TLS 1.2
or newer). ``client_context``: what we check when we connect (a peer's certificate must
chain to ``sip.tls_ca``, or to the system's CAs when none is given, and name the address we
connect to; a trunk's own ``tls_verify``/``tls_ca`` in gateway/trunk_tls.py). Both are made
once at start; a certificate file that cannot be read stops the start with a clear error
instead of a server that cannot speak TLS.
"""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str, keylog: str = "") -> ssl.SSLContext:
    """``keylog``: a file the TLS secrets are appended to (sip.tls_keylog, NSS key log
    format, for a packet capture's decryption while debugging; never in production)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if keylog:
        context.keylog_filename = keylog
    return context


def client_context(ca: str = "", keylog: str = "", *, verify: bool = True) -> ssl.SSLContext:
    """``verify`` false (a trunk's ``tls_verify = false``): encrypted, but neither the
    chain nor the name is checked."""
    if verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if keylog:
        context.keylog_filename = keylog
    return context
