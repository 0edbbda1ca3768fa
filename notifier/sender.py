"""The `Sender` protocol: what the delivery engine needs from the channels.

A module of its own so that the engine's parts (`deliver.py`, `due_decision.py`,
`delivery_outcomes.py`) name it without importing one another. `channels.ChannelSet` is the
sender the daemon uses, apprise behind it. Beyond the protocol the engine uses what a sender
has of `message_limit` (`message_fold.message_limit`), `body_format` (`message_fold.written_in`,
for a row an older notifier queued), `take_delivered` (`Outcomes.delivered_after_all`),
`sending` (`Outcomes.escalate`: no fallback while a send given up on may yet arrive) and
`targets` (`reroute.TargetDirectory`).
"""

from __future__ import annotations

from typing import Protocol

from notifier.events import SendResult


class Sender(Protocol):
    """What the engine needs from the channels (apprise lives behind it)."""

    def knows(self, target: str) -> bool:
        """Whether this target is still configured."""
        ...

    def channel_of(self, target: str) -> str | None:
        """The configured channel name of a target, or None if unknown."""
        ...

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
        """One attempt; a service failure is a failed result, never an exception.

        `message` names the alert(s) sent for good, the same on every retry: a sender may use
        it to recognise a retry of a message it has delivered after all. `body_format` is the
        format title and body were written in (None: the target's channel's). `diagnose`: a
        failure's error says its cause where the service stack can tell (a retry's).
        """
        ...
