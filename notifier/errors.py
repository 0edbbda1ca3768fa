"""The one exception root of notifier, and its tree.

    NotifierError
    ├── ConfigError            the config file is unusable; carries every problem found
    ├── FatalFeedError         the venue refused us for good (key refused); exit non-zero
    │   └── KeyRefused
    ├── TransientFeedError     worth another attempt after a back-off
    │   └── RateLimited        HTTP 429, with the server's Retry-After
    ├── StateError             the state file cannot be opened or written
    └── ListenError            the metrics address cannot be bound (in use, not local)

Messages name the bad value or config path, never a secret: the API key appears only as
its prefix, tokens never, channel URLs only in apprise's privacy form.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass


class NotifierError(Exception):
    """Root of every error notifier raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config file, located well enough to fix it."""

    file: str
    line: int | None
    path: str
    message: str
    # The value names an environment variable that is not set: a reload reads the environment
    # the daemon started with, so only a restart can change that.
    unset_variable: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        path, message = _no_urls(self.path), _no_urls(self.message)
        return f"{where}: {path}: {message}" if self.path else f"{where}: {message}"


URL_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*"  # a URL's scheme, as RFC 3986 spells it
# A URL anywhere in a problem's text: a channel URL written where a key, a channel name or a
# duration belongs (`phone: {tgram://...}`, braces for brackets) would be quoted whole, bot
# token and mail password included, in check-config, the journal and "reload refused".
_URL = re.compile(rf"\b({URL_SCHEME}://)[^\s'\"]+")
# A web address with nothing after its host and port: nothing in it can be a secret.
_BARE_HOST = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+/?")


def _no_urls(text: str) -> str:
    """`text` with each URL cut to its scheme: where it is (file, line, key) is enough. A URL
    a message already masked (`https://***@host`, `https://host/…`) stays as it is."""

    def cut(url: re.Match[str]) -> str:
        whole = url.group(0)
        if "***" in whole or whole.endswith("…") or _BARE_HOST.fullmatch(whole):
            return whole
        return f"{url.group(1)}…"

    return _URL.sub(cut, text)


class ConfigError(NotifierError):
    """The config file has one or more problems; all of them are carried, not only the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class FatalFeedError(NotifierError):
    """A feed condition no retry can fix."""


class KeyRefused(FatalFeedError):
    """The token endpoint answered 401: the API key is wrong or revoked."""


class TransientFeedError(NotifierError):
    """A feed failure that another attempt, after a back-off, may cure."""


class RateLimited(TransientFeedError):
    """HTTP 429; `retry_after` is the server's requested pause in seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StateError(NotifierError):
    """The state store cannot be opened, read or written."""


class StateBusyError(StateError):
    """The state file was busy past the timeout, or its disk full: a condition that may clear.

    The daemon exits so that its unit restarts it (exit 70), rather than stopping for good.
    """


def key_prefix(api_key: str) -> str:
    """The part of an API key that PolySimulator itself shows in listings (first 16 chars),
    but never more than half the key: a short one (a typo, a test key) stays mostly hidden."""
    if not api_key:
        return "<none>"
    return api_key[: min(16, len(api_key) // 2)] + "…"


_REWORDED = "error while attempting to bind"  # asyncio's start_server, around the OS's words


def os_reason(exc: BaseException) -> str:
    """Why a read or a bind failed, in the OS's words ("No such file or directory") where it
    has them, else the exception's own text (a decode error, a resolver's message)."""
    number = exc.errno if isinstance(exc, OSError) else None
    said = exc.strerror if isinstance(exc, OSError) else None
    if number is not None and number in errno.errorcode and (said or "").startswith(_REWORDED):
        # The OS's own words, not asyncio's rewording of them around the address it tried
        # (only a bind's: a resolver's number is its own, no errno, and its words are right).
        return os.strerror(number)
    return said or str(exc)


class ListenError(NotifierError):
    """The metrics endpoint cannot listen where configured; it may clear (a port still held
    by an instance that is stopping), so the daemon exits to be restarted, not as fatal."""
