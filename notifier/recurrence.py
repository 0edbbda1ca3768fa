"""Equal fills that are still two fills: numbering repeats of one identity.

The venue sends no fill id, so a fill's identity is (order, time, quantity, price). Two partial
fills of one order with the same size and price in the same second share it, yet are two fills,
and the second is often the one that completes the order. Each repeat therefore gets the next
occurrence number, which is part of its key; how repeats are counted depends on the source:

- The live feed has no replay: every frame is a fill that happened, so the n-th live frame
  with one identity is its n-th occurrence. The count is kept for the last few thousand
  identities (repeats come within one matching cycle, about a second), not across restarts.
- History lists every fill, so a page's count of one identity is a true lower bound. It is
  counted per page, oldest first (the order the feed delivered them in): offset paging can
  shift an item onto the next page as well, and counting across pages would take that copy
  for a repeat. Two equal fills split across a page boundary therefore count as one.

Each source only ever undercounts, and the store keeps each numbered key once, so the fills
alerted are the larger of the two counts: never more than happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from notifier.events import Fill
from notifier.recent import RecentMap

GENERATION = 4096  # identities a generation remembers; two generations are kept


class LiveRecurrences:
    """Numbers the live feed's fills: a repeated identity is the next occurrence."""

    def __init__(self, generation: int = GENERATION) -> None:
        self._counts: RecentMap[str, int] = RecentMap(generation)

    def number(self, fill: Fill) -> Fill:
        """`fill` as the occurrence of its identity it is (itself, for the first)."""
        key = fill.key
        seen = self._counts.get(key, 0)
        self._counts[key] = seen + 1
        return fill if not seen else dataclasses.replace(fill, occurrence=seen + 1)

    def __len__(self) -> int:
        """Identities remembered (bounded by two generations)."""
        return len(self._counts)


def number_page(page: Sequence[Fill]) -> list[Fill]:
    """A history page (newest first) with repeats of one identity numbered, oldest first."""
    counts: dict[str, int] = {}
    numbered: list[Fill] = []
    for fill in reversed(page):
        seen = counts.get(fill.key, 0)
        counts[fill.key] = seen + 1
        numbered.append(fill if not seen else dataclasses.replace(fill, occurrence=seen + 1))
    numbered.reverse()
    return numbered
