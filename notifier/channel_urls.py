"""A channel URL as an apprise object, or the reason apprise will not take it.

Apart from channels.py, which builds and sends through these objects: `check-config` asks the
same question of every URL, and the answer must say what is wrong (a mistyped scheme, a part
missing, several recipients in one URL) without quoting the URL, whose parts are secrets.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Container
from typing import Any, cast

from apprise import Apprise, AppriseAsset, NotificationManager, NotifyBase

import notifier.console  # noqa: F401  (registers console:// with apprise)
from notifier.channel_privacy import LOG_GUARD
from notifier.errors import URL_SCHEME

# apprise's plugin registry (a singleton); its constructor is untyped.
_PLUGINS = cast("Callable[[], Container[str]]", NotificationManager)()
_SCHEME = re.compile(rf"^\s*({URL_SCHEME})://")


@functools.cache
def _schemes() -> tuple[str, ...]:
    """The schemes apprise's plugins take, for a suggestion when one is mistyped."""
    return tuple(sorted(cast("Any", NotificationManager)().schemas()))


# What apprise wanted, for the schemes whose refusal is common and whose reason apprise only
# logs (with the URL's addresses in it, which a config error must not quote).
_EMAIL_HINT = (
    ": is the sender one it can form? A server named by IP address has no domain to form it"
    " with: add ?from=alerts@example.com"
)
_REJECTED_HINTS = {"mailto": _EMAIL_HINT, "mailtos": _EMAIL_HINT}


def _unencoded_in_userinfo(rest: str) -> str | None:
    """Why the part before the host (after `scheme://`) cannot be read as written, or None.

    A password's own `@` or `#` must be percent-encoded: unencoded, the host is read from
    what follows it, and the rest of the password is shown as the host wherever the URL is
    (privacy form included: `mailtos://bot:****@RestOfPassword/...`).
    """
    authority = rest[: min((i for i in (rest.find(c) for c in "/?") if i >= 0), default=len(rest))]
    if authority.count("@") > 1:
        return (
            "more than one @ before the host: an @ in a user name or password must be "
            "written %40 (apprise would read the rest of the password as the host)"
        )
    hashed = authority.find("#")
    if hashed >= 0 and "@" in authority[hashed:]:
        return (
            "a # before the host's @: a # in a user name or password must be written %23 "
            "(apprise would read the rest of the URL as a fragment)"
        )
    return None


def check_url(url: str) -> str | None:
    """None if apprise can build this URL; else why not, without the URL's secrets."""
    return instantiate(url, AppriseAsset())[1]


def instantiate(url: str, asset: AppriseAsset) -> tuple[NotifyBase | None, str | None]:
    """apprise's object for `url`, or None and why not (never quoting the URL's secrets)."""
    match = _SCHEME.match(url)
    if match is None:
        # Not written `scheme://...`: problems cut every URL-like text to its scheme, and this
        # one lost its ellipsis and its closing parenthesis.
        return None, "not an apprise URL, which starts with a scheme such as json:// or tgram://"
    scheme = match.group(1).lower()
    native = scheme in ("http", "https")  # a service's own URL, as Slack or Discord give it
    if scheme not in _PLUGINS and not native:
        close = difflib.get_close_matches(scheme, _schemes(), n=1, cutoff=0.75)
        hint = f" (did you mean '{close[0]}://'?)" if close else ""
        return None, f"apprise does not recognise the scheme '{scheme}://'{hint}"
    unencoded = _unencoded_in_userinfo(url[match.end() :])
    if unencoded is not None:
        return None, unencoded
    with LOG_GUARD.parsing():
        plugin = Apprise.instantiate(url, asset=asset)
    if plugin is None and native:
        return None, (
            f"apprise recognises no service at this {scheme}:// URL: a service's own webhook "
            "URL (Slack's, Discord's, ntfy.sh's) is recognised only whole, as the service gave "
            "it (is a part missing?); for a plain webhook write json:// or jsons://"
        )
    if plugin is None:
        return None, f"apprise rejected the URL ({scheme}){_REJECTED_HINTS.get(scheme, '')}"
    port = getattr(plugin, "port", None)
    if isinstance(port, int) and not 0 < port < 65536:  # apprise takes any number
        return None, f"port {port} is out of range (1 to 65535)"
    # len() counts the requests a send makes, apprise's own retries included (we turn those off).
    recipients = len(plugin) // (int(getattr(plugin, "retry", 0) or 0) + 1)
    if recipients > 1:
        # apprise reports one pass/fail for them all: one recipient refusing would make every
        # retry send the alert again to the others (hundreds of copies over max_age).
        return None, (
            f"sends to {recipients} recipients as one ({scheme}): if one refuses, every retry "
            "repeats the alert to the others; write one URL per recipient in `urls: [...]`"
        )
    return plugin, None
