"""The alerts that a send given up on delivered after all, remembered for their retries.

A send that outlives its deadline is given up on, and its alerts are retried; the thread goes
on and may still succeed. Its success then answers the retry instead of a second copy. It is
kept per alert (target, identity), not per message: a retry may fold those alerts with
others, or send them one by one, and each must still be recognised.
"""

from __future__ import annotations

from collections import OrderedDict

LATE_KEPT = 1000  # alerts remembered (a retry comes within max_age; the oldest go first)


class LateDeliveries:
    """Alerts known delivered by an attempt given up on, until a retry asks for them."""

    def __init__(self) -> None:
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Alerts whose given-up attempt still runs: how many such attempts each (a retry may
        # be given up on too). Bounded by the send threads.
        self._running: dict[tuple[str, str], int] = {}

    def running(self, target: str, message: str) -> None:
        """An attempt of `message` was given up on while its thread runs: until it ends, its
        alerts may yet arrive."""
        for identity in message.split("\n"):
            self._running[target, identity] = self._running.get((target, identity), 0) + 1

    def sending(self, target: str, identity: str) -> bool:
        """Whether an attempt given up on that holds this alert is still running."""
        return (target, identity) in self._running

    def remember(self, target: str, message: str, delivered: bool) -> None:
        """A given-up attempt of `message` (its alerts' identities, one a line) ended; if the
        service took it, each of its alerts is delivered."""
        for identity in message.split("\n"):
            left = self._running.pop((target, identity), 0) - 1
            if left > 0:
                self._running[target, identity] = left
        if not delivered:
            return
        for identity in message.split("\n"):
            self._delivered[target, identity] = None
        while len(self._delivered) > LATE_KEPT:
            self._delivered.popitem(last=False)

    def take(self, target: str, identity: str) -> bool:
        """Whether this alert was delivered late; forgotten once asked."""
        try:
            del self._delivered[target, identity]
        except KeyError:
            return False
        return True

    def take_message(self, target: str, message: str) -> bool:
        """Whether every alert of `message` was delivered late (then all are forgotten); if
        any was not, nothing is taken and the message goes out."""
        keys = [(target, identity) for identity in message.split("\n")]
        if not all(key in self._delivered for key in keys):
            return False
        for key in keys:
            del self._delivered[key]
        return True
