"""Delivery channels: one apprise object per URL, built once, and the one place that sends.

Each URL of a channel is its own target with its own `Apprise` object, so each one succeeds or
fails alone and the outbox can retry only the URLs that failed. Targets are known by an opaque
key (a hash of the URL) and shown in a privacy form (channel_privacy.py, which also keeps the
URLs' secrets out of errors and apprise's logs): the URL itself never leaves here. Whether
apprise takes a URL is channel_urls.py's; what a result says is read in send_results.py; late
successes are kept in late_deliveries.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import html
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from apprise import (
    Apprise,
    AppriseAsset,
    AppriseResult,
    AppriseResultStatus,
    NotifyFormat,
    NotifyType,
)

from notifier import logs
from notifier.channel_privacy import LOG_GUARD, privacy_url, scrub, url_secrets
from notifier.channel_urls import check_url, instantiate
from notifier.errors import ConfigError, ConfigProblem
from notifier.events import MessageLimit, SendResult
from notifier.late_deliveries import LateDeliveries
from notifier.plugin_settings import message_limit, tune
from notifier.send_attempt import GaveUp, attempt
from notifier.send_results import timeout_note, to_send_result
from notifier.settings import ChannelSettings, DeliverySettings

log = logging.getLogger(__name__)

__all__ = ["ChannelSet", "Target", "check_url", "target_key"]

TEST_TITLE = "notifier test"
# service_timeout=0: apprise's own per-call deadline off. With one, apprise hands each blocking
# send to its own pool so it can stop waiting; `send` bounds the wait already, and the socket
# timeouts (plugin_settings.tune) bound the send itself.
_ASSET = AppriseAsset(service_timeout=0)


@dataclass(frozen=True, slots=True)
class Target:
    """One URL of a channel: the outbox stores `key`, logs show `display`."""

    channel: str
    key: str  # sha256 of the URL, first 16 hex chars
    display: str  # apprise's privacy form of the URL


def target_key(url: str) -> str:
    """The opaque, stable key of a channel URL (the outbox holds this, never the URL)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A built target: its apprise object, and the URL parts to scrub from any error text."""

    target: Target
    apprise: Apprise
    secrets: tuple[str, ...]
    limit: MessageLimit  # what one message to the service may hold, per apprise
    body_format: NotifyFormat  # how its messages are written: its channel's, or delivery's
    # The service shows a title of its own (a subject, a notification title), which apprise
    # passes on as is, never converting it to the service's format as it does a title it
    # merges into the body (title_maxlen 0).
    own_title: bool


class ChannelSet:
    """Every configured channel, built once at load; sends one message to one target."""

    def __init__(
        self, entries: Mapping[str, tuple[_Entry, ...]], *, delivery: DeliverySettings
    ) -> None:
        self.names: tuple[str, ...] = tuple(entries)
        self._by_channel = {name: tuple(e.target for e in es) for name, es in entries.items()}
        self._formats = {name: es[0].body_format for name, es in entries.items() if es}
        self._by_key: dict[str, _Entry] = {}
        for es in entries.values():
            for entry in es:
                # The same URL in two channels is one target (first channel named owns it).
                self._by_key.setdefault(entry.target.key, entry)
        self._locks = {key: asyncio.Lock() for key in self._by_key}
        self._default_format = delivery.body_format
        self._deadline = delivery.send_deadline
        # delivery.timeout: the connect timeout the plugins get (`tune`), and how long a send
        # waits for an earlier one to the same target to end.
        self._timeout = delivery.timeout
        self._answer_wait = delivery.answer_timeout
        self._late = LateDeliveries()

    @classmethod
    def build(
        cls, channels: Mapping[str, ChannelSettings], *, delivery: DeliverySettings
    ) -> ChannelSet:
        """Build one Apprise object per URL; ConfigError (URL-free) if apprise refuses any."""
        problems: list[ConfigProblem] = []
        entries: dict[str, tuple[_Entry, ...]] = {}
        for name, settings in channels.items():
            built: dict[str, _Entry] = {}
            body_format = NotifyFormat(settings.body_format or delivery.body_format)
            for index, url in enumerate(settings.urls):
                plugin, why = instantiate(url, _ASSET)
                if plugin is None:
                    path = f"channels.{name}.urls[{index}]"
                    problems.append(ConfigProblem("<config>", None, path, why or "unusable URL"))
                    continue
                display = privacy_url(plugin)  # before tune: shows the user's URL, not ours
                tune(plugin, delivery)
                target = Target(channel=name, key=target_key(url), display=display)
                entry = _Entry(
                    target,
                    Apprise(plugin),
                    url_secrets(url, display),
                    message_limit(plugin),
                    body_format,
                    own_title=int(getattr(plugin, "title_maxlen", 0) or 0) > 0,
                )
                LOG_GUARD.add_secrets(entry.secrets)
                for secret in entry.secrets:  # and any other library's line that quotes one
                    logs.hide(secret, "***")
                built.setdefault(target.key, entry)
            entries[name] = tuple(built.values())
        if problems:
            raise ConfigError(problems)
        return cls(entries, delivery=delivery)

    def targets(self, channel: str) -> tuple[Target, ...]:
        """The targets of a channel, in config order; KeyError for an unknown channel."""
        return self._by_channel[channel]

    def body_format(self, channel: str) -> str:
        """How the channel's messages are written: its own body_format, else delivery's."""
        found = self._formats.get(channel)
        return found.value if found is not None else self._default_format

    def take_locks(self, previous: ChannelSet) -> None:
        """On reload: a URL in both sets keeps its lock, so a send the old set gave up on
        while its thread runs still holds the target (no overlap, no reordering). A held lock
        of a URL this set lacks is kept too: the URL may come back with the next reload."""
        for key, lock in previous._locks.items():
            if key in self._locks or lock.locked():
                self._locks[key] = lock
        self._late = previous._late  # late outcomes still to come land where retries look

    def take_delivered(self, target: str, identity: str) -> bool:
        """Whether a given-up attempt delivered this alert after all (then forgotten here): the
        deliverer leaves such a row out of a fold and marks it sent."""
        return self._late.take(target, identity)

    def sending(self, target: str, identity: str) -> bool:
        """Whether an attempt given up on that holds this alert still runs: it may yet arrive,
        so the deliverer does not send it to the fallback channel meanwhile (for one more
        send deadline at most)."""
        return self._late.sending(target, identity, now=time.monotonic(), hold=self._deadline)

    def _delivered_late(self, target: str, message: str) -> AppriseResult | None:
        """A success to answer `message` with, if a given-up attempt delivered all of it."""
        if not self._late.take_message(target, message):
            return None
        return AppriseResult(status=AppriseResultStatus.SUCCESS)

    def knows(self, target: str) -> bool:
        """Whether this target key belongs to the current config."""
        return target in self._by_key

    def channel_of(self, target: str) -> str | None:
        """The channel a target key belongs to, or None if unknown."""
        entry = self._by_key.get(target)
        return entry.target.channel if entry else None

    def message_limit(self, target: str) -> MessageLimit | None:
        """What one message to the target's service may hold; None for an unknown target."""
        entry = self._by_key.get(target)
        return entry.limit if entry else None

    def display(self, target: str) -> str:
        """The privacy form of a target's URL, safe to log; the key itself when unknown."""
        entry = self._by_key.get(target)
        return entry.target.display if entry else f"<unknown target {target}>"

    def title_for(self, target: str, title: str, body_format: str | None = None) -> str:
        """The title as the target's service gets it. Rendered for HTML (`body_format`, else
        the target's channel's), the title's values are escaped; a title the service shows
        apart from the body (an email subject, an ntfy title) is plain text there: "S&P <
        5000", not "S&amp;P &lt; 5000"."""
        entry = self._by_key.get(target)
        if entry is None or not entry.own_title:
            return title
        if (body_format or entry.body_format) == NotifyFormat.HTML:
            return html.unescape(title)
        return title

    async def send(
        self,
        target: str,
        title: str,
        body: str,
        *,
        message: str | None = None,
        body_format: str | None = None,
        diagnose: bool = False,
    ) -> SendResult:
        """Deliver one message to one target; a service failure is a result, never a raise.

        Sends to one target are serialized so its messages leave in call order. Given the
        `message` identity, a retry of a message whose given-up attempt succeeded after all is
        answered with that success instead of being sent again (not by its text: two alerts
        can read the same). KeyError if the target key is unknown (check `knows` first).
        `body_format`: what the message was written in (apprise converts it for the service),
        by default the target's channel's. `diagnose`: apprise's log is read at DEBUG, where
        it says why a send failed (a refused connection, a server's reply): for retries and
        test sends, as it costs a send more.
        """
        entry = self._by_key[target]
        notify = functools.partial(
            entry.apprise.notify,
            body=body,
            title=self.title_for(target, title, body_format),
            notify_type=NotifyType.INFO,
            body_format=NotifyFormat(body_format) if body_format else entry.body_format,
            log_level=logging.DEBUG if diagnose else None,
        )
        began: list[float] = []  # when a send thread started it (not the wait for one)

        def call() -> AppriseResult:
            began.append(time.monotonic())
            if not diagnose:
                return notify()
            with diagnosing():  # on this send's own thread, for as long as it runs
                return notify()

        try:
            # apprise's blocking notify() on a thread of ours: one hop per send, where its
            # async_notify() takes a dozen turns of the event loop and a hop to its own pool.
            # Its outcome is awaited, not cut off at `timeout`: a slow send that still
            # succeeds, given up on and retried, would arrive twice (see send_attempt).
            result = await attempt(
                call,
                lock=self._locks[target],
                lock_wait=self._timeout,
                deadline=self._deadline,
                done_before=(
                    (lambda: self._delivered_late(target, message)) if message else lambda: None
                ),
                on_overdue=(
                    (lambda: self._late.running(target, message, time.monotonic()))
                    if message
                    else None
                ),
                on_late=(
                    (lambda outcome: self._late.remember(target, message, bool(outcome)))
                    if message
                    else None
                ),
            )
        except GaveUp as exc:
            log.warning("send to %s failed: %s", entry.target.display, exc)
            return SendResult(ok=False, error=str(exc))
        except Exception as exc:  # apprise promises not to raise; a bug must not kill delivery
            error = scrub(f"apprise raised {exc!r}", entry.secrets)
            log.warning("send to %s failed: %s", entry.target.display, error)
            return SendResult(ok=False, error=error)
        with result:
            outcome = to_send_result(result, entry.secrets)
        took = time.monotonic() - began[0] if began else 0.0
        if not outcome.ok:
            noted = timeout_note(outcome.error, took, self._timeout, self._answer_wait)
            outcome = dataclasses.replace(outcome, error=noted)
        log.debug("send to %s: %s", entry.target.display, "ok" if outcome.ok else outcome.error)
        return outcome

    async def send_test(self, channel: str | None = None) -> list[tuple[Target, SendResult]]:
        """Send a test message to every target (of one channel, or all), reporting each."""
        names = self.names if channel is None else (channel,)
        targets = [t for name in names for t in self.targets(name)]
        with diagnosing():  # a failure says why: what an operator testing a channel needs
            results = await asyncio.gather(
                *(
                    self.send(
                        t.key,
                        TEST_TITLE,
                        f"Test message from notifier for channel '{t.channel}'. If you can "
                        "read this, alerts for this channel will reach you here.",
                        diagnose=True,
                    )
                    for t in targets
                )
            )
        return list(zip(targets, results, strict=True))


class _Holders:
    """Who holds apprise's logger at DEBUG now, and its level before the first did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.before = logging.NOTSET


_HOLDERS = _Holders()


@contextlib.contextmanager
def diagnosing() -> Iterator[None]:
    """apprise's logger at DEBUG for a while: its plugins log why a send failed (an SMTP
    server's reply, a refused connection) only there. Its records below ERROR still reach no
    log handler of ours (logs.py), and LOG_GUARD masks URL secrets in them all the same.

    Held by several at once (retries on send threads, a test send around them), the level
    goes back when the last lets go, not when the first does."""
    logger = logging.getLogger("apprise")
    with _HOLDERS.lock:
        if not _HOLDERS.count:
            _HOLDERS.before = logger.level
            logger.setLevel(logging.DEBUG)
        _HOLDERS.count += 1
    try:
        yield
    finally:
        with _HOLDERS.lock:
            _HOLDERS.count -= 1
            if not _HOLDERS.count:
                logger.setLevel(_HOLDERS.before)
