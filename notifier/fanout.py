"""One rendered message becomes one `Alert` per delivery target of each channel it names.

Shared by plain rules (one fill) and shaped ones (a digest), so both reach the outbox keyed
the same way: (fill key, rule, target).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from notifier.events import Alert


class TargetLike(Protocol):
    """One URL of a channel, known by an opaque key."""

    @property
    def key(self) -> str: ...


class TargetLookup(Protocol):
    """The delivery targets behind a channel name (KeyError for one not configured)."""

    def targets(self, channel: str) -> Sequence[TargetLike]: ...


def fan_out(
    *,
    fill_key: str,
    rule: str,
    channels: Iterable[str],
    title: str,
    body: str,
    filled_at: datetime,
    targets: TargetLookup,
) -> list[Alert]:
    """One alert per target of each channel, all carrying the same message."""
    return [
        Alert(
            fill_key=fill_key,
            rule=rule,
            channel=channel,
            target=target.key,
            title=title,
            body=body,
            filled_at=filled_at,
        )
        for channel in channels
        for target in targets.targets(channel)
    ]
