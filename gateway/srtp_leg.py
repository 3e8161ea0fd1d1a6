"""SDES-SRTP on a phone leg: which policy applies, what to answer and offer, and the keys.

The rules (gateway/media/sdes.py decides one offer; this applies them to calls):

1. The policy is the trunk's `media_encryption` ("off", "optional", "required"); a call
   that matches no trunk gets "optional" (SRTP when it is offered over TLS, plain RTP
   otherwise).
2. Keys travel in the SDP, so SRTP is only ever agreed over TLS signalling (the INVITE
   came over TLS, or we send it over TLS). Over plain UDP or TCP an `RTP/SAVP` offer is
   refused with 488, a plain offer with `a=crypto` is answered with plain RTP (without
   crypto), and a trunk whose policy is "required" cannot be called at all.
3. Inbound: `decide_inbound` gives 488 or the `Decision` whose `ours` goes into the answer
   (`add_crypto`) and whose two keys make the leg's sessions (`sessions`).
4. Outbound: `offer_for` gives the crypto lines we offer (both suites, fresh keys) when the
   policy is not "off" and the trunk's transport is TLS; `answer_keys` checks the 200's
   answer: a crypto line naming one of our tags and suites, or (policy "optional" only) a
   plain `RTP/AVP` answer. Under "optional" a 488/415 to our SRTP offer is followed by
   the same INVITE once more with a plain offer (`plain_fallback`, gateway/dialout.py).
5. A re-offer on an SRTP leg must keep SRTP (`rekey`): same policy, our key stays, theirs
   may change (the leg's inbound session is made again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dialplan.trunks import TrunkRecord
from gateway.media.sdes import (
    Crypto,
    Decision,
    Encryption,
    SdesError,
    decide,
    parse_crypto,
    srtp_sessions,
)
from gateway.media.sdes import offer as sdes_offer
from gateway.sip.sdp import MediaDescription, SessionDescription

__all__ = [
    "Encryption",
    "LegSrtp",
    "add_crypto",
    "answer_keys",
    "crypto_values",
    "decide_inbound",
    "encryption_for",
    "offer_for",
    "plain_fallback",
    "rekey",
]

log = logging.getLogger(__name__)


@dataclass
class LegSrtp:
    """A leg's SRTP: our attribute (its key protects what we send) and theirs."""

    ours: Crypto
    theirs: Crypto

    @property
    def suite(self) -> str:
        return self.ours.suite

    def sessions(self) -> tuple[object, object]:
        return srtp_sessions(self.ours, self.theirs)


def encryption_for(trunk: TrunkRecord | None) -> Encryption:
    return Encryption(trunk.media_encryption) if trunk is not None else Encryption.OPTIONAL


def crypto_values(media: MediaDescription) -> list[str]:
    return [value for name, value in media.attributes if name == "crypto" and value]


def decide_inbound(offer: SessionDescription, media_index: int, policy: Encryption,
                   secure: bool) -> Decision:
    media = offer.media[media_index]
    return decide(media.proto, crypto_values(media), policy, secure_signalling=secure)


def add_crypto(description: SessionDescription, cryptos: list[Crypto],
               profile: str | None = None) -> None:
    """Put `a=crypto` lines (and the profile, when given) on the audio m= line in use."""
    for media in description.media:
        if media.media == "audio" and not media.rejected:
            if profile is not None:
                media.proto = profile
            media.attributes = [a for a in media.attributes if a[0] != "crypto"]
            media.attributes.extend(("crypto", c.value()) for c in cryptos)
            return


def offer_for(trunk: TrunkRecord) -> list[Crypto] | None:
    """Our crypto lines for an INVITE through `trunk` (None: plain RTP). SdesError when the
    trunk requires SRTP and its transport cannot carry keys (not TLS)."""
    policy = encryption_for(trunk)
    if policy is Encryption.OFF:
        return None
    if trunk.transport != "tls":
        if policy is Encryption.REQUIRED:
            raise SdesError(f"trunk {trunk.name}: media_encryption is required but its "
                            "transport is not tls (SRTP keys only travel over TLS)")
        return None
    return sdes_offer()


def plain_fallback(trunk: TrunkRecord, cryptos: list[Crypto] | None) -> bool:
    """Whether a dial-out through `trunk` that offered `cryptos` may call again with plain
    RTP after a 488/415 to them: only under "optional" ("required" never falls back, "off"
    and a plain offer have nothing to fall back from)."""
    return bool(cryptos) and encryption_for(trunk) is Encryption.OPTIONAL


def answer_keys(answer: SessionDescription, offered: list[Crypto] | None,
                policy: Encryption) -> LegSrtp | None:
    """The SRTP of a 2xx answer to our offer; None: plain RTP. SdesError when the answer
    is not acceptable (the call is then ended)."""
    media = next((m for m in answer.media if m.media == "audio" and not m.rejected), None)
    if media is None:
        raise SdesError("no audio in the answer")
    values = crypto_values(media)
    if not offered:
        if values or media.proto.upper() == "RTP/SAVP":
            raise SdesError("SRTP in the answer to a plain offer")
        return None
    if not values:
        if policy is Encryption.REQUIRED or media.proto.upper() == "RTP/SAVP":
            raise SdesError("the answer has no a=crypto")
        return None
    theirs = parse_crypto(values[0])
    ours = next((c for c in offered if c.tag == theirs.tag and c.suite == theirs.suite), None)
    if ours is None or theirs.mki is not None:
        raise SdesError("the answer's a=crypto matches none we offered")
    return LegSrtp(ours, theirs)


def rekey(current: LegSrtp, offer: SessionDescription, media_index: int, policy: Encryption,
          secure: bool) -> LegSrtp | None:
    """A re-offer on an SRTP leg: the leg's new SRTP (our key kept, the offer's tag), or
    None: refuse it with 488 (the call goes on as it was)."""
    decision = decide_inbound(offer, media_index, policy, secure)
    if decision.ours is None or decision.theirs is None:
        return None
    theirs = decision.theirs
    if theirs.suite != current.suite:
        return None
    ours = Crypto(theirs.tag, current.suite, current.ours.key_salt)
    return LegSrtp(ours, theirs)
