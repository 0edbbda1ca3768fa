"""The proxies the environment names for the venue, checked before the first request.

httpx reads HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (either case) when the client is built, but
a proxy it cannot use fails only later: an unknown scheme as a ValueError from the client's
constructor, a port past 65535 as an OverflowError at the first connect. Both are the
environment's mistake and never clear, so they end the run with a line saying which variable
to fix (exit 1), not a traceback (exit 70, restarted by systemd in a loop). The proxy's URL is
never shown: it may carry a user and password.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

_USABLE = ("http", "https", "socks5", "socks5h")  # what httpx (with socksio for socks) takes


def proxy_problem() -> str | None:
    """Why a proxy the environment names cannot be used, or None."""
    for scheme, value in sorted(urllib.request.getproxies_environment().items()):
        if scheme not in ("http", "https", "all") or not value:
            continue
        name = f"{scheme.upper()}_PROXY"
        url = value if "://" in value else f"http://{value}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return f"{name} (or its lower-case form) has a port that is not 1 to 65535"
        if parts.scheme.lower() not in _USABLE:
            return f"{name} (or its lower-case form) is no {', '.join(_USABLE)} URL"
        if port == 0 or not parts.hostname:
            return f"{name} (or its lower-case form) names no host and port to connect to"
    return None
