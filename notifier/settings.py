"""Typed, validated settings: what `config.load` produces and every edge consumes."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from notifier.errors import ConfigProblem
    from notifier.rules import RuleSet

DEFAULT_BASE_URL = "https://api.polysimulator.com"
BodyFormat = Literal["text", "markdown", "html"]
BODY_FORMATS: tuple[BodyFormat, ...] = ("text", "markdown", "html")
# Other words for them, whose spelling is near none (a config's `body_format: md`).
FORMAT_WORDS = {"md": "markdown", "plain": "text", "txt": "text", "plaintext": "text"}


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How to reach the execution feed and how much history to recover."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    catch_up: timedelta = timedelta(0)
    backfill_overlap: timedelta = timedelta(seconds=60)
    backfill_horizon: timedelta = timedelta(days=7)
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    stable_after: float = 10.0
    max_frame_bytes: int = 1 << 20
    request_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where the SQLite state store lives."""

    path: Path = Path("notifier.db")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Retry and formatting policy for sending alerts."""

    max_age: timedelta = timedelta(hours=24)
    retry_base: float = 1.0
    retry_cap: float = 300.0
    concurrency: int = 4
    timeout: float = 30.0
    body_format: BodyFormat = "text"  # a channel's own (ChannelSettings) comes first
    # Not split: a message sent in pieces is retried whole when one piece fails, and the
    # pieces already shown are shown twice. Digests cap their lines to stay within limits.
    overflow: Literal["split", "truncate", "upstream"] = "truncate"

    @property
    def answer_timeout(self) -> float:
        """Seconds a sent request's answer is waited for: twice `timeout`, so that a service
        a little slower than configured still gets its success counted, not retried."""
        return 2 * self.timeout

    @property
    def send_deadline(self) -> float:
        """Seconds one attempt may take in all: the connection within `timeout`, then the
        answer within `answer_timeout`."""
        return self.timeout + self.answer_timeout

    @property
    def send_backstop(self) -> float:
        """Seconds after which the deliverer stops waiting for any sender: past ChannelSet's
        own bounds (the target's lock within `timeout`, a send thread within `send_deadline`,
        then `send_deadline` for the send); giving up earlier could mean sending twice."""
        return 2 * (self.send_deadline + self.timeout)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus endpoint; `listen` is None when metrics are off."""

    listen: str | None = None


_DOTTED = re.compile(r"[0-9.]+")
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes "²"


def split_listen(text: str) -> tuple[str, int] | None:
    """`host:port` (an IPv6 host in brackets: `[::1]:9464`) as the host to bind and the port;
    None if it is not that shape."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    if "/" in host or any(c.isspace() for c in host):
        # `http://127.0.0.1:9464` is no host to bind: check-config passed it, and run then
        # exited 70 ("may clear") on every restart.
        return None
    if _DOTTED.fullmatch(host) and not _ipv4(host):
        return None  # `999.1.1.1`, `127.0.0.01`: no address, nor a name that could resolve
    return host, int(port)


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Log level and format from the file (the CLI's --log-level/--log-format take precedence)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """A named destination: one or more apprise URLs (secret), with optional limits."""

    name: str
    urls: tuple[str, ...] = field(repr=False)
    rate: tuple[int, float] | None = None  # (messages, per seconds)
    fallback: str | None = None
    fallback_after: timedelta = timedelta(minutes=5)
    # How this channel's messages are written; None: delivery.body_format.
    body_format: BodyFormat | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated config file."""

    source: Path
    feed: FeedSettings
    state: StateSettings
    delivery: DeliverySettings
    metrics: MetricsSettings
    channels: dict[str, ChannelSettings]
    rules: RuleSet
    log: LogSettings = field(default_factory=LogSettings)
    # What the file does that its writer may not mean (a channel URL from its `:-` default).
    notes: tuple[ConfigProblem, ...] = ()
