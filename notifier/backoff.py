"""Back-off policy as pure delay arithmetic, shared by the feed and delivery loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Capped exponential back-off with full jitter.

    `next_delay()` grows 1, 2, 4 … up to `cap` (times a random factor in [0.5, 1]);
    `reset()` starts over. Callers decide when a success is solid enough to reset.
    """

    base: float = 1.0
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The pause before the next attempt; each call counts one more failure."""
        raw = min(self.cap, self.base * (2.0 ** min(self.attempt, 32)))
        self.attempt += 1
        return raw * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        """Forget earlier failures."""
        self.attempt = 0


def retry_delay(attempts: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number `attempts` (1-based), capped and jittered; stateless form."""
    raw = min(cap, base * (2.0 ** min(max(attempts - 1, 0), 32)))
    return raw * (0.5 + 0.5 * rng.random())
