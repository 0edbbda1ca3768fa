"""One message becomes one `Alert` per delivery target of each channel it names.

Shared by plain rules (one fill) and shaped ones (a digest), so both reach the outbox keyed
the same way: (fill key, rule, target). Each channel takes its messages in its own format
(`channels.NAME.body_format`), so the message is rendered here, once for each escaping its
channels need (`render.escape_for`: HTML escapes the venue's text, text and Markdown do not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from notifier.events import Alert
from notifier.render import Escape, escape_for

# A message's title and body, rendered with the escaping its channel's format needs.
Render = Callable[[Escape | None], tuple[str, str]]


class TargetLike(Protocol):
    """One URL of a channel, known by an opaque key."""

    @property
    def key(self) -> str: ...


class TargetLookup(Protocol):
    """The delivery targets behind a channel name (KeyError for one not configured), and the
    format the channel's messages are written in."""

    def targets(self, channel: str) -> Sequence[TargetLike]: ...

    def body_format(self, channel: str) -> str: ...


def fan_out(
    *,
    fill_key: str,
    rule: str,
    channels: Iterable[str],
    render: Render,
    filled_at: datetime,
    targets: TargetLookup,
) -> list[Alert]:
    """One alert per target of each channel, carrying the message as its format has it; a
    URL two of the channels list gets it once, as the first of them has it (the outbox keeps
    one alert per rule and URL)."""
    alerts: list[Alert] = []
    rendered: dict[Escape | None, tuple[str, str]] = {}
    taken: set[str] = set()
    for channel in channels:
        channel_targets = [t for t in targets.targets(channel) if t.key not in taken]
        taken.update(t.key for t in channel_targets)
        if not channel_targets:
            continue
        body_format = targets.body_format(channel)
        escape = escape_for(body_format)
        if escape not in rendered:
            rendered[escape] = render(escape)
        title, body = rendered[escape]
        alerts += (
            Alert(
                fill_key=fill_key,
                rule=rule,
                channel=channel,
                target=target.key,
                title=title,
                body=body,
                filled_at=filled_at,
                body_format=body_format,
            )
            for target in channel_targets
        )
    return alerts
