"""The gateway's settings, built by the composition root from the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from gateway.conference_audio import AudioSettings
from gateway.ivr import IvrSettings
from gateway.shedding import SheddingSettings
from switchboard.config import Config
from switchboard.config_base import sip_dns_server

if TYPE_CHECKING:
    from dialplan.trunks import TrunkRecord

# Preference order: Opus (no transcoding towards the browsers), then wideband G.722, then G.711.
CODECS = ["opus/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000", "telephone-event/8000"]
STAR_WINDOW = 2.0  # seconds between '*' and '6' for the mute toggle


def trunk_codecs(trunk: TrunkRecord | None) -> list[str]:
    """The codecs a call through `trunk` negotiates, both ways (our dial-out offer, our
    answer to its inbound calls, re-offers): the trunk's list in our preference order, DTMF
    always; every codec we have for a trunk without a list, or a call that matched none."""
    if trunk is None or not trunk.codecs:
        return list(CODECS)
    wanted = {c.upper() for c in trunk.codecs}
    return [c for c in CODECS if c.split("/")[0].upper() in wanted
            or c.startswith("telephone-event")]


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    sip_listen: tuple[tuple[str, str, int], ...]
    sip_announce: str
    user_agent: str
    session_expires: int
    min_se: int
    tcp_idle_timeout: float
    max_tcp_connections: int
    media_address: str
    media_announce: str
    rtp_ports: tuple[int, int]
    media_timeout: float
    prompts_dir: str | None
    ivr: IvrSettings
    audio: AudioSettings = field(default_factory=AudioSettings)
    #: peers that may pick a room by header and send media from elsewhere (sip.trusted_peers)
    trusted_peers: tuple[str, ...] = ("127.0.0.0/8", "::1")
    #: participants per room, phones and browsers together (meetings.max_participants)
    max_participants: int | None = None
    #: strict RTP: quiet seconds and in-sequence packets before a leg's source may move
    media_relatch_after: float = 3.0
    media_relatch_packets: int = 5
    #: SIP load shedding ([sip.limits]) and the TCP connections one source may hold
    shedding: SheddingSettings = field(default_factory=SheddingSettings)
    reclaim_free_ports: float = 0.1
    max_finished_transactions: int = 20_000
    max_tcp_connections_per_source: int = 32
    #: trunks: 403 to calls matching none; digest realm and nonce lifetime; E.164 country
    require_trunk: bool = False
    digest_realm: str = "switchboard"
    nonce_lifetime: float = 300.0
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    default_country: str = ""
    #: SIP over TLS: the certificate and key of tls: listen addresses, the CAs for peers
    sip_tls_cert: str = ""
    sip_tls_key: str = ""
    sip_tls_ca: str = ""
    sip_tls_keylog: str = ""  # sip.tls_keylog: TLS secrets appended here (debugging)
    sip_dns_server: tuple[str, int] | None = None  # sip.dns_server (None: the system's)
    #: dial-out: ringing timeout (seconds) and how the called number shows (sip.dialout_*)
    dialout_ringing_timeout: float = 45.0
    dialout_display: str = "mask"
    #: seconds a caller may wait in a lobby (ivr.lobby_max_wait)
    lobby_max_wait: float = 1800.0

    @classmethod
    def from_config(cls, config: Config) -> GatewaySettings:
        ivr = config.ivr
        return cls(
            sip_listen=tuple((a.transport, a.host, a.port) for a in config.sip.listen_addresses),
            sip_tls_cert=config.sip.tls_cert,
            sip_tls_key=config.sip.tls_key,
            sip_tls_ca=config.sip.tls_ca,
            sip_tls_keylog=config.sip.tls_keylog,
            sip_dns_server=sip_dns_server(config.sip.dns_server),
            sip_announce=config.sip.announce or config.media.announce_address,
            user_agent=config.sip.user_agent,
            session_expires=config.sip.session_expires,
            min_se=config.sip.min_se,
            tcp_idle_timeout=config.sip.tcp_idle_timeout,
            max_tcp_connections=config.sip.max_tcp_connections,
            media_address=config.media.address,
            media_announce=config.media.announce_address,
            rtp_ports=config.media.port_range,
            media_timeout=config.media.timeout,
            prompts_dir=ivr.prompts_dir or None,
            ivr=IvrSettings(
                first_digit_timeout=ivr.first_digit_timeout,
                inter_digit_timeout=ivr.inter_digit_timeout,
                max_attempts=ivr.max_attempts,
                max_pin_length=ivr.max_pin_length,
            ),
            trusted_peers=config.sip.trusted_peers,
            max_participants=config.meetings.max_participants,
            media_relatch_after=config.media.relatch_after,
            media_relatch_packets=config.media.relatch_packets,
            shedding=_shedding(config),
            reclaim_free_ports=config.sip.limits.reclaim_free_ports,
            max_finished_transactions=config.sip.limits.max_finished_transactions,
            max_tcp_connections_per_source=config.sip.max_tcp_connections_per_source,
            require_trunk=config.sip.require_trunk,
            digest_realm=config.sip.digest_realm,
            nonce_lifetime=config.sip.nonce_lifetime,
            digest_algorithms=config.sip.digest_algorithms,
            dialout_ringing_timeout=config.sip.dialout_ringing_timeout,
            dialout_display=config.sip.dialout_display,
            default_country=config.dialplan.default_country,
            lobby_max_wait=ivr.lobby_max_wait,
            audio=AudioSettings(
                max_decoded=config.media.mixed_browser_streams,
                opus_complexity=config.media.opus_complexity,
                opus_complexity_wideband=config.media.opus_complexity_wideband,
            ),
        )


def _shedding(config: Config) -> SheddingSettings:
    """`[sip.limits]`'s knobs that the shedder takes, by name."""
    limits = config.sip.limits
    return SheddingSettings(**{f.name: getattr(limits, f.name) for f in fields(SheddingSettings)})
