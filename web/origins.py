"""Web origins ("https://meet.example.org"), as browsers write them in `Origin`. No aiohttp
here: the configuration loader checks `http.public_urls` with the same function."""

from __future__ import annotations

import re

__all__ = ["origin_of", "request_origin"]

_ORIGIN = re.compile(r"^(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
                     r"(?::(?P<port>\d{1,5}))?/?$", re.IGNORECASE)


def origin_of(url: str) -> str | None:
    """"https://Meet.Example.org:443/" -> "https://meet.example.org" (the browser's `Origin`
    form: lower case, default port dropped, no path); None when `url` is not of that shape."""
    m = _ORIGIN.match(url.strip())
    if m is None:
        return None
    scheme, host, port = m.group("scheme").lower(), m.group("host").lower(), m.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    if port is None or int(port) == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{int(port)}"


def request_origin(scheme: str, host_header: str) -> str | None:
    """The origin of a page served on this request: its scheme and its Host header."""
    return origin_of(f"{scheme}://{host_header}") if host_header else None
