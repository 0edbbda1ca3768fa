"""Fills waiting for their market title, so that a `market_title` rule never has to guess.

A rule on `market_title` cannot judge a fill whose title look-up failed (the venue's 5xx or
429, a slow answer). Judged without its title, the fill would be recorded as seen and its alert
lost for good; counting an unknown title as a match would alert on every market instead. So the
fill waits: held whole in the store's `title_waits` table (durable, but not seen yet), and offered
to the pipeline again once its market's title is known, the rules stop needing it, or it has
waited `limit`. Then it is judged without one, with a warning and a count; so is a fill whose
market the venue says has no title (404/410, no question), at once and without either.

Only fills whose verdict the title can change wait (`RuleSet.needs_title`). A fill waits whole,
its other rules' alerts with it: a fill is recorded once, with every alert it raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from notifier.clock import utc_now
from notifier.digests import fill_from_data, fill_to_data
from notifier.events import Fill

log = logging.getLogger(__name__)

WAIT_LIMIT = timedelta(hours=1)  # a fill waits at most this long, then is judged untitled
CAPACITY = 10_000  # fills held at once; a fill beyond is judged untitled at once


class HeldFills(Protocol):
    """The state store's part: the `title_waits` table."""

    def hold(self, fills: Sequence[tuple[str, datetime, str]]) -> None: ...

    def held(self) -> list[tuple[str, datetime, str]]: ...

    def release(self, keys: Sequence[str]) -> None: ...

    def release_recorded(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Held:
    """A fill waiting for its title, and since when (kept across restarts)."""

    fill: Fill
    since: datetime


class TitleWaits:
    """The held fills: in memory for the pipeline, in the store for the next start."""

    def __init__(
        self,
        store: HeldFills,
        *,
        clock: Callable[[], datetime] = utc_now,
        limit: timedelta = WAIT_LIMIT,
        capacity: int = CAPACITY,
    ) -> None:
        self._store = store
        self._clock = clock
        self.limit = limit
        self._capacity = max(1, capacity)
        self._held: dict[str, Held] = {}
        self._by_market: dict[str, dict[str, None]] = {}  # market id -> keys, in arrival order
        self.gave_up = 0  # fills judged without the title they waited for (title_gate.py)
        # Recorded and still held: a store without group commit stopped between the two
        # writes. Judged already, such a fill must not be restored (nor judged again).
        store.release_recorded()
        stale: list[str] = []  # rows to delete: unreadable, or filed under an old key
        unreadable = 0
        for key, since, data in store.held():
            try:
                fill = fill_from_data(json.loads(data))
            except (ValueError, KeyError, TypeError):
                stale.append(key)
                unreadable += 1
                continue
            if fill.key != key:  # held by a notifier that keyed fills differently
                stale.append(key)
                store.hold([(fill.key, since, data)])
            self._add(fill.key, Held(fill, since))
        if unreadable:
            # Not as this notifier writes them (a hand-edited or damaged file): kept, they
            # would be skipped at every start; the rest of the file is still good.
            log.error("state file: %d held fills unreadable, dropped", unreadable)
        store.release(stale)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, fill_key: object) -> bool:
        return fill_key in self._held

    def fills(self) -> list[Fill]:
        """Every held fill, longest waiting first."""
        return [held.fill for held in self._held.values()]

    def markets(self) -> list[str]:
        """The markets whose titles held fills wait for."""
        return list(self._by_market)

    def of_market(self, market_id: str) -> list[Fill]:
        """The fills waiting for this market's title."""
        return [self._held[key].fill for key in self._by_market.get(market_id, ())]

    def expired(self, fill_key: str) -> bool:
        """Whether this held fill has waited its limit."""
        held = self._held.get(fill_key)
        return held is not None and self._clock() - held.since >= self.limit

    def room(self) -> int:
        """How many more fills may be held."""
        return max(0, self._capacity - len(self._held))

    def hold(self, fills: Iterable[Fill]) -> int:
        """Hold these fills (durably, joining the store's open batch); how many are new."""
        now = self._clock()
        rows: list[tuple[str, datetime, str]] = []
        for fill in fills:
            key = fill.key
            if key not in self._held:
                self._add(key, Held(fill, now))
                rows.append((key, now, json.dumps(fill_to_data(fill))))
        self._store.hold(rows)
        return len(rows)

    def release(self, fill_keys: Iterable[str]) -> None:
        """Forget these fills, now judged (those not held are ignored)."""
        gone: list[str] = []
        for key in fill_keys:
            held = self._held.pop(key, None)
            if held is None:
                continue
            gone.append(key)
            market = held.fill.market_id
            keys = self._by_market[market]
            del keys[key]
            if not keys:
                del self._by_market[market]
        self._store.release(gone)

    def _add(self, key: str, held: Held) -> None:
        self._held[key] = held
        self._by_market.setdefault(held.fill.market_id, {})[key] = None
