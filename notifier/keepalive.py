"""Keep-alive HTTP under apprise: one pooled requests session per sending thread.

apprise's HTTP plugins call requests' module-level functions (`requests.post(...)`), and each
such call builds a throwaway session: a new TCP (and TLS) connection per alert, closed right
after it. apprise keeps no connections by design (caronc/apprise#735). For a daemon sending
alert after alert to the same few hosts that handshake is most of a send: about half of it to
a loopback webhook, a round trip or two more to Slack or Telegram over TLS.

`install()` (the daemon's CLI calls it, once, like it configures logging) puts a function
behind `requests.request` that runs the call on a session kept per thread, so a worker's next
send to the same host reuses the open connection. Each call otherwise behaves as the stock
function: the session never keeps cookies, and its headers, auth and hooks are never touched.
A session idle for `REUSE_WITHIN` seconds is closed before its next call: servers drop idle
connections after a few seconds (Apache after 5), and a reused connection the server closes
just as the request leaves fails that attempt; a NAT that drops it silently would hold the
send until its read timeout. Between alerts further apart, a send costs a handshake, as before.

What requests reads from the environment on every call (proxies and NO_PROXY, the CA bundle,
~/.netrc: about 0.2 ms, as much as the rest of a loopback send) is read once per host and
read again whenever one of those variables changes. Differences from the stock function: a
redirect to another host keeps the first host's proxy choice, and an edited ~/.netrc is seen
after a restart. A call that passes its own `proxies` runs on a fresh session, as before.
"""

from __future__ import annotations

import http.cookiejar
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.api
from requests.utils import get_environ_proxies, get_netrc_auth

_local = threading.local()
_stock = requests.api.request
_lock = threading.Lock()

# What requests' trust_env reads, in the names it accepts (urllib reads either case).
_PROXY_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_ENV_NAMES = (
    *_PROXY_NAMES,
    *(name.upper() for name in _PROXY_NAMES),
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
    "HOME",
)
_MAX_HOSTS = 256  # remembered environments; past this the table starts over
REUSE_WITHIN = 4.0  # seconds a connection may sit idle and still be reused
_monotonic = time.monotonic  # replaced by tests


@dataclass(frozen=True, slots=True)
class _Environment:
    """What the environment says for one host: as requests would work it out per call."""

    proxies: dict[str, str]
    ca_bundle: str | None
    netrc: tuple[str, str] | None


_environments: dict[tuple[object, ...], _Environment] = {}


def _environment(url: str) -> _Environment:
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc, *map(os.environ.get, _ENV_NAMES))
    found = _environments.get(key)
    if found is None:
        if len(_environments) >= _MAX_HOSTS:
            _environments.clear()
        found = _environments[key] = _Environment(
            proxies=get_environ_proxies(url, no_proxy=None),
            ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"),
            netrc=get_netrc_auth(url),
        )
    return found


def _session() -> requests.Session:
    """This thread's session: built on first use, and again after `REUSE_WITHIN` idle."""
    session: requests.Session | None = getattr(_local, "session", None)
    now = _monotonic()
    if session is not None and now - _local.used >= REUSE_WITHIN:
        session.close()
        session = None
    _local.used = now
    if session is None:
        session = requests.Session()
        # Like a fresh session per call: a response's cookies are never sent with a later call.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.trust_env = False  # the environment is applied per call below, from _environment
        _local.session = session
    return session


def request(method: str, url: str | bytes, **kwargs: Any) -> requests.Response:
    """`requests.request`, on this thread's keep-alive session."""
    if "proxies" in kwargs:
        return _stock(method, url, **kwargs)
    text = url.decode("utf-8") if isinstance(url, bytes) else url
    env = _environment(text)
    if env.proxies:
        kwargs["proxies"] = dict(env.proxies)  # requests may edit it on a redirect
    if env.ca_bundle and kwargs.get("verify", True) in (True, None):
        kwargs["verify"] = env.ca_bundle
    if env.netrc and not kwargs.get("auth"):
        kwargs["auth"] = env.netrc
    return _session().request(method=method, url=text, **kwargs)


def install() -> None:
    """Route requests' module-level functions through the per-thread sessions (idempotent).

    `requests.get/post/put/...` call `requests.api.request` by its global name, so replacing
    that one name and its re-export `requests.request` covers all of them.
    """
    with _lock:
        requests.api.request = request
        requests.request = request


def uninstall() -> None:
    """Restore requests' own functions (for tests); open sessions close as their threads end."""
    with _lock:
        requests.api.request = _stock
        requests.request = _stock
        _environments.clear()


def installed() -> bool:
    """Whether `install()` is in effect."""
    return requests.api.request is request
