"""The config's `feed` section: the venue's URL, the API key, and backfill's windows.

Apart from `config.py` since these checks are the feed's own: a base URL that could not be
connected to, a key an HTTP header cannot carry, windows that would recover nothing.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from notifier.config_problems import Problems
from notifier.configvalues import (
    QUOTED,
    Parser,
    as_duration,
    as_int,
    as_nonempty_str,
    as_seconds,
    key_line,
    quoted,
    section,
)
from notifier.durations import format_duration
from notifier.settings import DEFAULT_BASE_URL, FeedSettings
from notifier.yamltree import Node, Scalar, describe

API_KEY_ENV = "POLYSIM_API_KEY"
BASE_URL_ENV = "POLYSIM_BASE_URL"
_BEARER = re.compile(r"bearer\s", re.IGNORECASE)  # `Bearer ps_live_...`, the header's form
_HOSTLIKE = re.compile(r"[A-Za-z0-9.-]{1,253}(?::\d{1,5})?")  # a host name and maybe a port


def _url_problem(text: str) -> str | None:
    """Why `text` cannot be the venue's base URL, or None; caught here, not at connect time
    (a port past 65535 was an OverflowError deep in the feed, exit 70, restarted in a loop).

    The last check is httpx's own parse, the client that uses the URL: what it refuses
    (junk after an IPv6 host's `]`) would otherwise pass here and stop `run`.
    """
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text):
        return "must not hold spaces or control characters"
    try:
        parts = urlsplit(text)
    except ValueError:  # an IPv6 host's "[" without its "]"
        return "is not a URL (an IPv6 host needs both [ and ])"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    try:
        parts.port  # noqa: B018 -- reading it is the check: ValueError when out of range
    except ValueError:
        return "has a port that is not 1 to 65535"
    if parts.port == 0:
        return "has a port that is not 1 to 65535"
    if not parts.hostname:
        return "names no host"
    if parts.query or parts.fragment:
        return "must not have a ?query or #fragment (the paths are appended to it)"
    if "v1" in parts.path.lower().split("/"):
        # `https://api.polysimulator.com/v1`, as API documents write a base: every request
        # went to /v1/v1/..., a 404 the feed retried for ever.
        return (
            "must end before /v1: the paths appended to it (/v1/keys/ws-token, "
            "/v1/account/history) begin with it"
        )
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password (the API key is what authenticates)"
    if parts.scheme == "http" and not _on_this_machine(parts.hostname):
        return (
            "must be https:// unless the venue runs on this machine (over http:// the API key "
            "and the feed's tokens would cross the network unencrypted)"
        )
    try:
        httpx.URL(text)
    except httpx.InvalidURL:
        return "is not a URL the HTTP client can use (check the host and port)"
    return None


def _on_this_machine(host: str) -> bool:
    """localhost, or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _got(text: str) -> str:
    """What a problem says it got: the URL's scheme, host and port only. A path or query may
    hold a key (`?api_key=...`), a user:password@ a password (even one with a `/` in it), and
    text with no scheme may be anything (the API key, set in the wrong place). Of another
    scheme, only the scheme: a channel URL set in the wrong variable carries its token where
    a host would be (`tgram://BOT_TOKEN/...`)."""
    head, sep, _ = text.strip().partition("://")
    if not sep:
        if _HOSTLIKE.fullmatch(text.strip()):
            return f", got {text.strip()!r}"  # `localhost:8000`: the scheme is what is missing
        return (
            f" (the value, not shown, has no scheme:// and is no host name: {len(text)} characters)"
        )
    if head.lower() not in ("http", "https"):
        if head.isascii() and head.isalnum() and len(head) <= 16:
            return f", got a URL starting {head}:// (the rest not shown)"
        return ", got a URL of another scheme (not shown)"
    return f", got {shown_url(text.strip())!r}"


def shown_url(text: str) -> str:
    """An http(s) URL as logs and errors show it: scheme, host and port, `/…` for any path,
    query or fragment, `***@` for any user or password."""
    head, sep, rest = text.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    return f"{head}{sep}{host}{'/…' if tail.strip('/') else tail}"


def _url(node: Node, path: str, problems: Problems) -> str | None:
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    problem = _url_problem(text.strip())
    if problem is not None:
        problems.add(node.line, path, f"{problem}{_got(text)}")
        return None
    return text.strip().rstrip("/")


def _secret(node: Node, path: str, problems: Problems) -> str | None:
    """A string that is never echoed back (describe() names only its type)."""
    if isinstance(node, Scalar) and node.kind in ("str", "number", "yaml11_bool", "null"):
        return node.text if node.kind != "null" else ""
    problems.add(node.line, path, f"must be a string, got {describe(node)}")
    return None


_FEED: dict[str, Parser] = {
    "base_url": _url,
    "api_key": _secret,
    "catch_up": as_duration,
    "backfill_overlap": as_duration,
    "backfill_horizon": as_duration,
    "ping_interval": as_seconds,
    "ping_timeout": as_seconds,
    "stable_after": lambda n, p, pr: as_seconds(n, p, pr, positive=False),
    "request_timeout": as_seconds,
    "max_frame_bytes": lambda n, p, pr: as_int(n, p, pr, minimum=1024),
}


def parse_feed(
    node: Node | None, problems: Problems, env: Mapping[str, str], *, require_api_key: bool
) -> FeedSettings:
    defaults = FeedSettings(
        base_url=env.get(BASE_URL_ENV, "").rstrip("/") or DEFAULT_BASE_URL,
        api_key=env.get(API_KEY_ENV, ""),
    )
    feed = section(node, "feed", problems, defaults, _FEED)
    problem = _url_problem(feed.base_url)
    said = any(p.path == "feed.base_url" for p in problems.items)  # `${POLYSIM_BASE_URL}` there
    if feed.base_url == defaults.base_url and problem is not None and not said:
        # From the environment, so `check-config` refuses it too, not `run` at connect time.
        message = f"{BASE_URL_ENV} {problem}{_got(feed.base_url)}"
        problems.add(None, "feed.base_url", message)
    _check_look_back(node, feed, problems)
    reported = any(p.path == "feed.api_key" for p in problems.items)
    where = key_line(node, "api_key")
    if require_api_key and not feed.api_key.strip() and not reported:
        message = f"no API key: set {API_KEY_ENV} in the environment or feed.api_key"
        if where is not None and defaults.api_key.strip():
            message = (
                f"empty here, and a key in the file overrides {API_KEY_ENV}: "
                "remove feed.api_key to use the environment's, or fill it in"
            )
        problems.add(where, "feed.api_key", message)
    odd = next((i for i, c in enumerate(feed.api_key) if not "!" <= c <= "~"), None)
    if _BEARER.match(feed.api_key) and not reported and require_api_key:
        # Copied with its header's scheme from an API document or curl line: the space after
        # it is what the character check would name, and "copy the key again" copies it again.
        problems.add(
            where,
            "feed.api_key",
            'starts with "Bearer ", which belongs to an Authorization header, not to the key '
            "(the key is sent alone, as X-API-Key): remove the Bearer prefix (in feed.api_key "
            f"or {API_KEY_ENV})",
        )
    elif odd is not None and not reported and require_api_key:  # only a command that sends it
        # Refused here, not at connect: httpx would put the whole key in its encoding error.
        char = feed.api_key[odd]
        name = unicodedata.name(char, "a control character")
        problems.add(
            where,
            "feed.api_key",
            f"character {odd + 1} (U+{ord(char):04X}, {name}) cannot travel in an HTTP "
            f"header: copy the key again (from feed.api_key or {API_KEY_ENV})",
        )
    elif require_api_key and not reported and quoted(feed.api_key):
        problems.add(where, "feed.api_key", f"the key {QUOTED}")
    return feed


def _check_look_back(node: Node | None, feed: FeedSettings, problems: Problems) -> None:
    """Backfill's windows must fit each other, or fills missed while away are not recovered:
    a horizon within the overlap looks back at nothing past the watermark, and a catch-up
    past the horizon is cut to it."""
    horizon, overlap = feed.backfill_horizon, feed.backfill_overlap
    if horizon <= overlap:
        problems.add(
            key_line(node, "backfill_horizon") or key_line(node, "backfill_overlap"),
            "feed.backfill_horizon",
            f"must be longer than backfill_overlap ({format_duration(overlap)}), got "
            f"{format_duration(horizon)}: fills missed while the feed was down would not be "
            "recovered",
        )
    elif feed.catch_up > horizon:
        problems.add(
            key_line(node, "catch_up"),
            "feed.catch_up",
            f"{format_duration(feed.catch_up)} reaches back past backfill_horizon "
            f"({format_duration(horizon)}), which bounds every look back: raise "
            f"feed.backfill_horizon to at least {format_duration(feed.catch_up)}",
        )
