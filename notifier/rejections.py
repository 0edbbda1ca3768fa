"""Dropped input, counted by reason and logged without flooding: one bad frame must be seen,
a venue sending thousands of them must not fill the disk."""

from __future__ import annotations

import logging
from collections.abc import Callable

from notifier.normalize import Rejected

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds: at most one log line per rejection reason in this window


class Rejections:
    """Counts (`counts`, by reason, for metrics) and logs each reason at most once a window,
    saying how many like it were suppressed since."""

    def __init__(self, counts: dict[str, int], *, monotonic: Callable[[], float]) -> None:
        self.counts = counts
        self._monotonic = monotonic
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged, suppressed)

    def __call__(self, rejected: Rejected, source: str) -> None:
        reason = rejected.reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._monotonic()
        last, suppressed = self._logged.get(reason, (None, 0))
        if last is not None and now - last < LOG_EVERY:
            self._logged[reason] = (last, suppressed + 1)
            return
        self._logged[reason] = (now, 0)
        more = f" ({suppressed} more like it suppressed)" if suppressed else ""
        log.warning("dropped a bad %s message (%s): %s%s", source, reason, rejected.detail, more)
