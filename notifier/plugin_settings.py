"""The settings notifier owns on each apprise plugin, and the message limits it reads there.

Apart from channels.py, which builds and sends: apprise's defaults suit a one-off
notification, not a daemon that paces, retries and bounds its sends itself.
"""

from __future__ import annotations

from apprise import NotifyBase, OverflowMode

from notifier.events import MessageLimit
from notifier.settings import DeliverySettings

SLACK_SECTION_LIMIT = 3000  # characters of a Slack section block's text (Slack's documented cap)


def message_limit(plugin: NotifyBase) -> MessageLimit:
    """The service's message limits as apprise knows them (a title it cannot show apart goes
    into the body, so the body's limits are the message's)."""
    chars = int(getattr(plugin, "body_maxlen", 0) or 0) or 32768
    if getattr(plugin, "use_blocks", False):
        chars = min(chars, SLACK_SECTION_LIMIT)  # one section block; apprise does not cut it
    lines = int(getattr(plugin, "body_max_line_count", 0) or 0)
    return MessageLimit(chars=chars, lines=lines)


_SMTP_SCHEMES = frozenset({"mailto", "mailtos"})  # apprise's email: one timeout for all


def tune(plugin: NotifyBase, delivery: DeliverySettings) -> None:
    """Per-instance settings we own rather than inherit from apprise's defaults."""
    # apprise sleeps `request_rate_per_sec` between two sends of the same instance (5.5 s for
    # ntfy/email, 1.2 s for Slack): on a reused object that delays every second alert. The
    # deliverer paces and backs off itself, so the throttle is off. Pinned by a test.
    plugin.request_rate_per_sec = 0
    # No retries inside apprise (a URL's ?retry=N): the deliverer retries with back-off, and a
    # send given up on must not keep trying in its thread.
    plugin.retry = 0
    # The connection is bounded by delivery.timeout, so a peer that never answers ends its
    # send thread with a failure (`send` waits for that outcome). Its answer is waited for
    # twice as long: the request is out by then, and a read cut off sooner turned a slow
    # service's success into a failure, and its retry into a second copy. apprise's email
    # hands smtplib one timeout for every step, the server's answer to the message included.
    smtp = _SMTP_SCHEMES & {
        getattr(plugin, "protocol", None),
        getattr(plugin, "secure_protocol", None),
    }
    plugin.socket_connect_timeout = delivery.answer_timeout if smtp else delivery.timeout
    plugin.socket_read_timeout = delivery.answer_timeout
    plugin.overflow_mode = OverflowMode(delivery.overflow)
