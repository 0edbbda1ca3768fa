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
        # be given up on too), and when the first was given up. Bounded by the send threads.
        self._running: dict[tuple[str, str], tuple[int, float]] = {}

    def running(self, target: str, message: str, since: float) -> None:
        """An attempt of `message` was given up on at `since` (monotonic seconds) while its
        thread runs: until it ends, its alerts may yet arrive."""
        for identity in message.split("\n"):
            count, first = self._running.get((target, identity), (0, since))
            self._running[target, identity] = (count + 1, first)

    def sending(self, target: str, identity: str, *, now: float, hold: float) -> bool:
        """Whether an attempt given up on that holds this alert still runs, for `hold` seconds
        at most: a peer that trickles its answer keeps the thread as long as it trickles, and
        the alert's fallback must not wait on it for ever."""
        running = self._running.get((target, identity))
        return running is not None and now - running[1] < hold

    def remember(self, target: str, message: str, delivered: bool) -> None:
        """A given-up attempt of `message` (its alerts' identities, one a line) ended; if the
        service took it, each of its alerts is delivered."""
        for identity in message.split("\n"):
            count, first = self._running.pop((target, identity), (0, 0.0))
            if count > 1:
                self._running[target, identity] = (count - 1, first)
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
