"""The aiohttp application: REST API (rooms, numbers, participants, stats, health) and the
Jitsi-compatible conference mapper and phone-number list.

`create_app(...)` returns a `web.Application`; the composition root may add more routes (the
browser client, signaling) before it starts. Shared state is one `ApiContext` under the typed
key `CONTEXT`.

Rules for everything under /api/:
- Errors are JSON: {"error": "..."} (the Jitsi-compatible endpoints keep Jitsi's own shape).
- Every path needs `Authorization: Bearer <admin token>` (compared in constant time) except
  GET of /api/health, /api/conference-mapper and /api/phone-numbers. An unknown /api/ path
  without the token is a 401, so the list of endpoints is not revealed.
- One room's own paths (GET and PATCH /api/rooms/{name}, GET /api/rooms/{name}/lobby, POST
  /api/rooms/{name}/lobby/{id}, GET and POST /api/rooms/{name}/recordings, DELETE
  /api/rooms/{name}/recordings/{id}) also take a token (JWT, focus/tokens.py) that makes its
  holder a moderator of that room: a refused token is a 401, a valid one without the
  moderator claim (or for another room) a 403; the log line names the reason, never the
  token.
- No access log is written (the composition root passes `access_log=None`): a page's
  `?jwt=` must never reach a log. Should one be turned on, `MaskingAccessLogger` writes the
  path with `jwt=` and `password=` values masked.
- Bodies above `client_max_size` (64 KiB) are refused with 413.

What an anonymous client can reach is limited (docs/security.md, "HTTP, WebSocket and the
conference mapper"): connections are capped and slow request heads closed before a request
exists (web/connections.py); the conference mapper is rate-limited per client address (429)
and answers by room name only when `WebSettings.mapper_by_name`; the mapper and the number
list carry `Access-Control-Allow-Origin` only for an origin in `WebSettings.cors_origins`
(echoed, with `Vary: Origin`), never `*`; /ws refuses a foreign Origin (web/signaling.py).
The client address is the peer's, or the last X-Forwarded-For entry when the peer is one of
`WebSettings.trusted_proxies` (`client_address`); a trusted proxy's X-Forwarded-Proto and
X-Forwarded-Host set the request's scheme and host (web/headers.py). Every response carries
the security headers of web/headers.py (CSP, X-Frame-Options, nosniff, Referrer-Policy, and
HSTS over HTTPS).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from dialplan.limits import Networks, RateLimiter
from dialplan.store import Store, StoreError
from dialplan.throttle import PinThrottle
from dialplan.trunks import TrunkRecord
from focus.lobby import Lobby
from focus.tokens import TokenRefused, TokenVerifier
from web.headers import add_security_headers, forwarded_middleware
from web.origins import origin_of

if TYPE_CHECKING:
    from web.dial_api import DialControl

__all__ = [
    "CONTEXT",
    "MAX_BODY",
    "PUBLIC_PATHS",
    "WEB",
    "ApiContext",
    "FocusView",
    "HealthSource",
    "MaskingAccessLogger",
    "ParticipantView",
    "StatsSource",
    "TrunkControl",
    "WebSettings",
    "client_address",
    "create_app",
    "json_error",
]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
PUBLIC_PATHS = frozenset({"/api/health", "/api/conference-mapper", "/api/phone-numbers"})
CORS_PATHS = frozenset({"/api/conference-mapper", "/api/phone-numbers"})


class ParticipantView(Protocol):
    """What the API shows of a participant (focus.ParticipantInfo satisfies it)."""

    @property
    def id(self) -> str: ...
    @property
    def room(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def muted(self) -> bool: ...


class TrunkControl(Protocol):
    """What the API needs of the trunks' registrations (the gateway implements it)."""

    def registration(self, name: str) -> tuple[str, str]: ...  # (state, detail)

    def trunk_added(self, trunk: TrunkRecord) -> None: ...

    def trunk_removed(self, trunk: TrunkRecord) -> None: ...


class FocusView(Protocol):
    """What the API needs from the focus (focus.Focus satisfies it)."""

    def participants(self, room: str) -> Sequence[ParticipantView]: ...
    def stats(self) -> Mapping[str, int]: ...


HealthSource = Callable[[], Mapping[str, bool]]
StatsSource = Callable[[], Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What the web edge lets anonymous clients do (from the [http] and [meetings] keys)."""

    public_origins: frozenset[str] = frozenset()  # http.public_urls, as origins
    cors_origins: frozenset[str] = frozenset()  # these and http.cors_origins
    trusted_proxies: Networks = field(default_factory=Networks)
    mapper_by_name: bool = True  # meetings.mapper_by_name
    mapper_lookups_per_minute: int = 60  # per client address, in bursts of as many
    hsts_max_age: int = 31_536_000  # http.hsts_max_age; sent on HTTPS responses only

    @classmethod
    def build(
        cls,
        *,
        public_urls: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        mapper_by_name: bool = True,
        mapper_lookups_per_minute: int = 60,
        hsts_max_age: int = 31_536_000,
    ) -> WebSettings:
        """From configured URLs ("https://meet.example.org"); ValueError names a bad one."""

        def origins(urls: Iterable[str]) -> frozenset[str]:
            out = set()
            for url in urls:
                origin = origin_of(url)
                if origin is None:
                    raise ValueError(f"expected a URL like 'https://meet.example.org', "
                                     f"got {url!r}")  # fmt: skip
                out.add(origin)
            return frozenset(out)

        public = origins(public_urls)
        return cls(public_origins=public, cors_origins=public | origins(cors_origins),
                   trusted_proxies=Networks(trusted_proxies), mapper_by_name=mapper_by_name,
                   mapper_lookups_per_minute=mapper_lookups_per_minute,
                   hsts_max_age=hsts_max_age)  # fmt: skip


WEB = web.AppKey("switchboard_web", WebSettings)


def client_address(request: web.Request) -> str:
    """The client's address for per-source limits: the peer's, or, when the peer is a
    trusted proxy, the last X-Forwarded-For entry (the one that proxy added)."""
    remote = request.remote or "unknown"
    settings = request.app.get(WEB)
    if settings is None or remote not in settings.trusted_proxies:
        return remote
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    last = forwarded.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return remote


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    focus: FocusView
    admin_token: str
    health: HealthSource | None
    stats: StatsSource | None
    mapper_domain: str | None  # "conference.example.com": completes room names in ?id= answers
    clock: Callable[[], float]  # monotonic seconds, for the lookup throttle
    lookup_throttle: PinThrottle  # failed ?id= lookups per client address
    settings: WebSettings
    mapper_limit: RateLimiter  # every mapper lookup, per client address
    mapper_log_limit: RateLimiter  # one "refused" log line per address a minute
    trunks: TrunkControl | None = None  # registrations (the gateway), for /api/trunks
    default_country: str = ""  # dialplan.default_country, for trunks' numbers
    tokens: TokenVerifier | None = None  # room moderators' tokens on the room's own paths
    lobby: Lobby | None = None  # who waits to get into each room
    policy_changed: Callable[[str], None] | None = None  # a room's policy changed (PATCH)
    dialout: DialControl | None = None  # calls out to phones (the gateway), web/dial_api.py


CONTEXT = web.AppKey("switchboard_api", ApiContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _is_api(request: web.Request) -> bool:
    path = request.rel_url.path
    return path == "/api" or path.startswith("/api/")


def _is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD", "OPTIONS") and request.rel_url.path in PUBLIC_PATHS


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own errors (404 route, 405, 413 body) under /api/ into JSON."""
    if not _is_api(request):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"request body too large (at most {request.client_max_size} bytes)"
        else:
            message = exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(exc.status, message, headers)
    except StoreError as exc:  # the database is unreachable (PostgreSQL down, say)
        log.error("%s %s: %s", request.method, request.rel_url.path, exc)
        return json_error(503, "the database is unavailable; try again shortly")
    except Exception:
        log.exception("%s %s: unhandled error", request.method, request.rel_url.path)
        return json_error(500, "internal error")


# A room's own paths, where a moderator's token for that room is as good as the admin token.
_ROOM_PATHS = (
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})"), ("GET", "HEAD", "PATCH")),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/lobby"), ("GET", "HEAD")),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/lobby/[^/]{1,64}"), ("POST",)),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/recordings"), ("GET", "HEAD", "POST")),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/recordings/[^/]{1,128}"), ("DELETE",)),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/recordings/[^/]{1,128}/files/[^/]{1,64}"),
     ("GET", "HEAD")),
    (re.compile(r"/api/rooms/([A-Za-z0-9._-]{1,64})/dial"), ("GET", "HEAD", "POST")),
)
_CALL_PATH = re.compile(r"/api/calls/([A-Za-z0-9]{1,64})")  # scoped to the call's room


def _room_scope(request: web.Request) -> str | None:
    path = request.rel_url.path
    call = _CALL_PATH.fullmatch(path)
    dialout = request.app[CONTEXT].dialout
    if call is not None and request.method in ("GET", "HEAD", "DELETE") and dialout is not None:
        room = dialout.call_room(call.group(1))
        return room.lower() if room is not None else None
    for pattern, methods in _ROOM_PATHS:
        m = pattern.fullmatch(path)
        if m is not None and request.method in methods:
            return m.group(1).lower()
    return None


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api(request) or _is_public(request):
        return await handler(request)
    token = _bearer(request)
    context = request.app[CONTEXT]
    expected = context.admin_token
    path = request.rel_url.path
    if token is not None and hmac.compare_digest(token.encode(), expected.encode()):
        return await handler(request)
    room = _room_scope(request)
    if token is not None and room is not None and context.tokens is not None and \
            context.tokens.configured:  # fmt: skip
        try:
            identity = await context.tokens.verify_async(token, room)
        except TokenRefused as exc:
            log.info("%s %s: refused, token not accepted (%s)", request.method, path,
                     exc.reason)  # fmt: skip
            return json_error(401, f"token refused: {exc.message}",
                              {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not identity.moderator:
            log.info("%s %s: refused, the token is not a moderator's", request.method, path)
            return json_error(403, "a moderator's token for this room is required")
        return await handler(request)
    log.info("%s %s: refused, no valid admin token", request.method, path)
    return json_error(401, "admin token required", {"WWW-Authenticate": "Bearer"})


_SECRET_QUERY = re.compile(r"((?:^|[?&;])(?:jwt|token|password)=)[^&;#]*", re.IGNORECASE)


def mask_secrets(target: str) -> str:
    """A request target with the values of jwt=, token= and password= masked."""
    return _SECRET_QUERY.sub(r"\1***", target)


class MaskingAccessLogger(AbstractAccessLogger):
    """An access log line per request: address, method, path with secrets masked, status.
    Not used by default (no access log at all); for operators who want one."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.3f", request.remote, request.method,
                         mask_secrets(request.rel_url.raw_path_qs), response.status,
                         time)  # fmt: skip


async def _cors(request: web.Request, response: web.StreamResponse) -> None:
    """Jitsi Meet pages on another origin fetch the mapper and the number list: an origin
    listed in `cors_origins` is echoed back; any other gets no CORS header (never `*`)."""
    if request.rel_url.path not in CORS_PATHS:
        return
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("Origin", "")
    if origin and origin_of(origin) in request.app[WEB].cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin


def create_app(
    store: Store,
    focus: FocusView,
    *,
    admin_token: str,
    health: HealthSource | None = None,
    stats: StatsSource | None = None,
    mapper_domain: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    lookup_throttle: PinThrottle | None = None,
    client_max_size: int = MAX_BODY,
    settings: WebSettings | None = None,
    trunks: TrunkControl | None = None,
    default_country: str = "",
    tokens: TokenVerifier | None = None,
    lobby: Lobby | None = None,
    policy_changed: Callable[[str], None] | None = None,
    dialout: DialControl | None = None,
) -> web.Application:
    """The application. `health()` gives {component: healthy}; `stats()` live counts, merged
    with the focus's and the store's. `lookup_throttle` limits wrong-PIN lookups on the public
    conference mapper per client address (default: 10 misses in 600 s block for 900 s);
    `settings` the rest of what anonymous clients may do (default: `WebSettings()`)."""
    from web.api import add_api_routes  # here: both modules import this one
    from web.dial_api import add_dial_routes
    from web.mapper import add_mapper_routes
    from web.recordings_api import add_recording_routes
    from web.trunks_api import add_trunk_routes

    if len(admin_token) < 16:
        raise ValueError("admin token: expected at least 16 characters")
    settings = settings if settings is not None else WebSettings()
    forwarded = forwarded_middleware(settings.trusted_proxies)
    app = web.Application(middlewares=[forwarded, _errors, _auth],
                          client_max_size=client_max_size)  # fmt: skip
    add_security_headers(app, settings.hsts_max_age)
    per_minute = settings.mapper_lookups_per_minute
    app[WEB] = settings
    app[CONTEXT] = ApiContext(
        store=store, focus=focus, admin_token=admin_token, health=health, stats=stats,
        mapper_domain=mapper_domain, clock=clock,
        lookup_throttle=lookup_throttle if lookup_throttle is not None else PinThrottle(),
        settings=settings, mapper_limit=RateLimiter(per_minute / 60.0, per_minute),
        mapper_log_limit=RateLimiter(1 / 60.0, 1, max_keys=1000),
        trunks=trunks, default_country=default_country,
        tokens=tokens, lobby=lobby, policy_changed=policy_changed, dialout=dialout,
    )  # fmt: skip
    app.on_response_prepare.append(_cors)
    add_api_routes(app)
    add_mapper_routes(app)
    add_trunk_routes(app)
    add_recording_routes(app)
    add_dial_routes(app)
    return app
