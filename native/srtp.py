"""libsrtp for the bridge's hot paths: pylibsrtp's own libsrtp, called from C.

pylibsrtp (through aiortc) owns the SRTP contexts that DTLS keys; its ``Session`` methods
wrap each libsrtp call in Python (a buffer copy, a length cell, an error check), which cost
more than the cryptography itself at the bridge's packet rates. ``srtp(session)`` gives a
``native._egress.Srtp`` on the same libsrtp context: the same functions of the same
library, called from C (native/_egress.c). The session object is kept alive by it.

This is the only module that reads pylibsrtp's internals (``_binding``, ``Session._srtp``,
pylibsrtp 1.0); tests/unit/native/test_egress.py fails the day they change.
"""

from __future__ import annotations

import pylibsrtp
from pylibsrtp._binding import ffi, lib

from native._egress import Srtp, SrtpError, bind_libsrtp

__all__ = ["Srtp", "SrtpError", "srtp"]


def _address(function: object) -> int:
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, function)))


bind_libsrtp(_address("srtp_protect"), _address("srtp_protect_rtcp"),
             _address("srtp_unprotect"), _address("srtp_unprotect_rtcp"))


def srtp(session: pylibsrtp.Session) -> Srtp:
    """The C view of a pylibsrtp session (the same context: either may be used)."""
    return Srtp(session, int(ffi.cast("uintptr_t", session._srtp[0])))
