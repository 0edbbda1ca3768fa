"""Channel secrets kept out of every text: URL displays, error messages and apprise's logs.

apprise's privacy form of a URL masks the tokens and passwords a plugin declares; `privacy_url`
also masks custom headers, query parameters, payload fields and webhook path tokens. What a
display hides is a secret (`url_secrets`): `scrub` replaces it in error texts, the log guard in
every apprise record, and `logs.hide` in any other library's line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from apprise import NotifyBase

_URL_SEPARATORS = re.compile(r"[/:@?&=#,;+\s]+")


class _AppriseLogGuard(logging.Filter):
    """Keeps channel secrets out of apprise's own log lines.

    While a URL is being parsed, apprise warns with the raw token ("An invalid Slack Token
    (xoxb-…) was specified"): those records are dropped (our config error says what is wrong,
    without the secret). Any other apprise record has every known URL secret replaced by `***`.
    """

    def __init__(self) -> None:
        super().__init__("apprise")
        # Longest first, so a secret containing another is masked whole. Replaced, never
        # mutated: apprise's worker threads read it while a reload adds to it.
        self._secrets: tuple[str, ...] = ()
        self._parsing = threading.local()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these in apprise's records from now on."""
        merged = set(self._secrets) | set(secrets)
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    @contextlib.contextmanager
    def parsing(self) -> Iterator[None]:
        """Drop apprise's records from this thread while it parses a URL."""
        self._parsing.on = True
        try:
            yield
        finally:
            self._parsing.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._parsing, "on", False):
            return False
        secrets = self._secrets
        if secrets:
            message = record.getMessage()
            scrubbed = scrub(message, secrets)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


LOG_GUARD = _AppriseLogGuard()
logging.getLogger("apprise").addFilter(LOG_GUARD)


def privacy_url(plugin: NotifyBase) -> str:
    """apprise's privacy form of a built URL, custom headers and payload fields masked too.

    apprise masks the tokens and passwords a plugin declares, not the `+Header=`, `-param=`
    and `:field=` parameters of the webhook plugins (json://, xml://, form://), where an
    `Authorization` header or an API key in the query or payload is common, nor their path,
    where Make, Zapier or n8n webhooks carry their secret, nor an ntfy topic, the only secret
    of a public ntfy server.
    """
    url = cast("Callable[..., str]", plugin.url)  # untyped in apprise
    parts = urlsplit(str(url(privacy=True)))
    scheme = parts.scheme.lower()
    if scheme in _WEBHOOK_SCHEMES or scheme in _TOPIC_SCHEMES:
        parts = parts._replace(path="/".join(map(_mask_token, parts.path.split("/"))))
    if scheme in _TOPIC_SCHEMES and "mode=cloud" in parts.query:
        # ntfy.sh's own server (`ntfy://TOPIC`, `https://ntfy.sh/TOPIC`): apprise writes the
        # topic where a host would be.
        parts = parts._replace(netloc=_mask_token(parts.netloc))
    pairs = []
    for pair in parts.query.split("&") if parts.query else ():
        key, sep, value = pair.partition("=")
        if unquote(key) in _TUNED_PARAMS:
            continue
        if sep and value and unquote(key)[:1] in _CUSTOM_PARAMS:
            pair = f"{key}=***"
        pairs.append(pair)
    return urlunsplit(parts._replace(query="&".join(pairs)))


# apprise's prefixes of a custom header, a query (GET) parameter and a payload field.
_CUSTOM_PARAMS = ("+", "-", ":")
# Settings the notifier applies to every target itself (plugin_settings.tune: no retries inside
# apprise, delivery.overflow, delivery.timeout): apprise's own values, shown, would mislead.
_TUNED_PARAMS = frozenset({"overflow", "retry", "wait", "cto", "rto"})


def _mask_token(segment: str) -> str:
    """A webhook path segment as shown: a plain path word (`api`, `hooks`) or a short one as
    it is, anything else as `***` and a short fingerprint, so two webhooks on one host stay
    apart. Tokens come in every shape (Zapier's are 7 letters, digits or both), so it is the
    words that are listed, not the tokens guessed."""
    if len(segment) < 6 or segment.lower() in _PATH_WORDS:
        return segment
    return "***" + hashlib.sha256(segment.encode()).hexdigest()[:4]


_PATH_WORDS = frozenset(
    (
        *("api", "apis", "hook", "hooks", "webhook", "webhooks", "catch", "trigger"),
        *("triggers", "event", "events", "notify", "notification", "notifications"),
        *("alert", "alerts", "message", "messages", "send", "incoming", "inbound"),
        *("callback", "callbacks", "service", "services", "rest", "json", "form", "xml"),
    )
)
_WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
# An ntfy topic is the only credential on a public server: whoever has it reads every alert.
_TOPIC_SCHEMES = frozenset({"ntfy", "ntfys"})


def url_secrets(url: str, display: str) -> tuple[str, ...]:
    """Parts of the URL that its privacy form hides: whatever must never appear in an error.

    Candidates are the user, password, host, port, path segments and query values (not the
    scheme or query keys, which are vocabulary); a part the privacy form shows is not secret.
    """
    parts = urlsplit(url)
    candidates = [*_pieces(parts.netloc), *_pieces(parts.path), *_pieces(parts.fragment)]
    for _key, value in parse_qsl(parts.query, keep_blank_values=False):
        candidates.extend(_pieces(value))
    shown = set(_pieces(display)) | set(_pieces(unquote(display)))
    # Never secret, though a display may not show them: the path words of a webhook URL and
    # a service's own host (https://hooks.slack.com/services/...), which every log line would
    # otherwise lose ("channel webhooks" written "channel ***").
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        shown.add(parts.hostname)
    shown |= {c for c in candidates if c.lower() in _PATH_WORDS}
    hidden = {c for c in candidates if c not in shown and len(c) >= 2}
    hidden |= {unquote(c) for c in hidden}
    if parts.password:
        # As an Authorization: Basic header spells them, which a service may echo in an error.
        for user, password in {(parts.username or "", parts.password), _unquoted(parts)}:
            hidden.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    if url not in display:
        # The URL as written holds a part its display hides. One that shows it all is no secret:
        # hidden, it masked its own display (`send to ***?method=POST`) in every line.
        hidden.add(url)
    return tuple(sorted(hidden, key=len, reverse=True))


def _unquoted(parts: SplitResult) -> tuple[str, str]:
    return unquote(parts.username or ""), unquote(parts.password or "")


def _pieces(text: str) -> list[str]:
    return [p for p in _URL_SEPARATORS.split(text) if p]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Text with every secret URL part replaced by `***`."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
