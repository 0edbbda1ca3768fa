"""Several alerts of one target as one message, when a rate limit holds them back.

A lane whose channel's rate window is full sends every due row (`foldable`) as one message
(`fold`), cut where the service would cut it (`fitting`, within `message_limit`): an alert cut
off would be marked sent but never seen, so the rest wait for the next message instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from notifier.events import MessageLimit
from notifier.store import OutboxItem

FOLD_LIMIT = 50  # rows folded into one message at most; the rest go in the next one


SAFE_LIMIT = MessageLimit(chars=1900)  # what any service takes (Discord's 2000, less a margin)


def foldable(head: Sequence[OutboxItem], now: datetime, max_age: timedelta) -> list[OutboxItem]:
    """The due rows of a target's `head` (in fill order), up to the first one still in back-off
    or written in another format than the first (queued before a reload changed it).

    Folding a newer row past one in back-off would let the chat see the newer alert first. A
    row past max_age among them (recorded before a backfilled row filled earlier) is left to
    be dead-lettered, never sent; one requeued by `outbox --retry-dead` has its try first.
    """
    written = head[0].body_format if head else None
    return [
        row
        for row in itertools.takewhile(
            lambda i: i.next_at <= now and i.body_format == written, head
        )
        if row.requeued or now < row.created_at + max_age
    ]


def written_in(item: OutboxItem, sender: object, channel: str, default: str) -> str:
    """The format a row's text was written in: its own, else (a row an older notifier
    queued) its channel's now, as the sender has it, else `default`."""
    if item.body_format:
        return item.body_format
    format_of = getattr(sender, "body_format", None)
    found = format_of(channel) if callable(format_of) else None
    return found if isinstance(found, str) else default


def message_limit(sender: object, target: str) -> MessageLimit:
    """What one message to the target may hold, if the sender knows; else what any takes."""
    limit = getattr(sender, "message_limit", None)
    known = limit(target) if callable(limit) else None
    return known if isinstance(known, MessageLimit) else SAFE_LIMIT


def fitting(
    items: Sequence[OutboxItem], limit: MessageLimit, newline: str = "\n"
) -> list[OutboxItem]:
    """The first rows whose fold the service takes whole (at least the first row).

    A fold cut by the service (overflow=truncate, or a service's line limit) would lose whole
    alerts that are then marked sent: the rest wait for the next message instead. Lengths are
    counted as markup may grow them (`worst_length`); lines as any line break may end one.
    """
    taken: list[OutboxItem] = []
    for item in items:
        title, body = fold([*taken, item], newline)
        text = f"{title}{newline}{body}"
        breaks = text.count("\n") + (text.count(newline) if newline != "\n" else 0)
        too_long = worst_length(text) > limit.chars
        too_tall = limit.lines > 0 and breaks + 1 > limit.lines
        if taken and (too_long or too_tall):
            break
        taken.append(item)
    return taken


MARKUP_OVERHEAD = 64  # characters a service may wrap a message in (Telegram: <b>title</b>...)
MARKUP_GROWTH = 8  # the most one character may become: `&nbsp;`, `&apos;`, `<br />\r\n`


def worst_length(text: str) -> int:
    """The most a service's conversion can make of the text, in characters.

    apprise escapes a text body to HTML for Telegram (a space is `&nbsp;`, a quote `&apos;`, a
    tab `&emsp;`) and cuts the escaped form; MarkdownV2 puts a backslash before punctuation.
    Only letters and digits are sure to stay one character, so anything else counts as
    `MARKUP_GROWTH`: a bound, not a guess at each service's rules.
    """
    plain = sum(1 for c in text if c.isalnum())
    return MARKUP_OVERHEAD + plain + MARKUP_GROWTH * (len(text) - plain)


def fold(items: Sequence[OutboxItem], newline: str = "\n") -> tuple[str, str]:
    """One message for several alerts of one target: a count title and each alert in turn,
    their lines ended as the message format ends them (render.line_break)."""
    if len(items) == 1:
        return items[0].title, items[0].body
    title = f"{len(items)} alerts (sending was rate-limited)"
    body = (newline * 2).join(f"{item.title}{newline}{item.body}" for item in items)
    return title, body
