"""Equal fills that are still two fills: numbering the fills that share one identity.

The venue sends no fill id, so a fill's identity is (order, time, quantity, price). Two partial
fills of one order with the same size and price in the same second share it, yet are two fills,
and the second is often the one that completes the order. Each gets an occurrence number, part
of its key, and both paths must give one fill the same number, though the feed may have
delivered either, both or neither of them:

- The live feed has no replay, so every live frame is a fill that happened: a repeat on the
  feed is a new occurrence, unless it is a fill a history read listed and the feed had not yet
  delivered (a fill made during the read at connect, whose live frame follows).
- History lists every fill. Its fills claim the occurrences already known by status
  (PARTIALLY_FILLED, FILLED), so the fill the feed delivered keeps its number and the one it
  missed gets a new one; a live frame without a status (the flat shape) fits any. Unclaimed
  ones are numbered after those, partial fills first (the order they happened in, whatever
  order the venue lists equal times in). Claims are counted within a page: offset paging can
  show one item on two pages, and that copy must find its first number again.

Each source only ever undercounts, and the store keeps each numbered key once, so nothing is
alerted twice. What is known is kept for the last few thousand identities (repeats come within
a matching cycle, about a second), and not across restarts: a restart between two equal fills
may lose the second, as may equal fills of one status on two pages of one history read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from notifier.events import Fill
from notifier.recent import RecentMap

GENERATION = 4096  # identities a generation remembers; two generations are kept
_RANK = {"PARTIALLY_FILLED": 0, "FILLED": 2}  # within one second: partial fills came first


@dataclass(slots=True)
class _Occurrence:
    """One fill of an identity: its status as known, and which paths brought it."""

    status: str | None
    live: bool
    listed: bool  # by a history read


# What is known of an identity: its occurrences, or (the common case, kept cheap on the hot
# path) the status of its only fill, delivered live.
_Known = list[_Occurrence] | str | None


class _Unseen(Enum):
    UNSEEN = 0  # an Enum member, so that `is` narrows the type


_UNSEEN = _Unseen.UNSEEN


class Recurrences:
    """Occurrence numbers for the fills of both paths, shared by the feed and its backfill."""

    def __init__(self, generation: int = GENERATION) -> None:
        self._known: RecentMap[str, _Known] = RecentMap(generation)

    def number_live(self, fill: Fill) -> Fill:
        """A live fill as the occurrence of its identity it is (itself, for the first)."""
        key = fill.key
        known = self._known.get(key, _UNSEEN)
        if known is _UNSEEN:  # an identity not seen before
            self._known[key] = fill.status
            return fill
        occurrences = _occurrences(known)
        number = _claim_live(occurrences, fill.status)
        self._known[key] = occurrences  # in use: kept in the current generation
        return _numbered(fill, number)

    def number_page(self, page: Sequence[Fill]) -> list[Fill]:
        """A history page (newest first) with each fill numbered; the page keeps its order."""
        groups: dict[str, list[int]] = {}  # identity -> positions in the page, oldest first
        for position in range(len(page) - 1, -1, -1):
            groups.setdefault(page[position].key, []).append(position)
        numbered = list(page)
        for key, positions in groups.items():
            positions.sort(key=lambda p: _RANK.get(page[p].status or "", 1))  # stable
            known = self._known.get(key, _UNSEEN)
            occurrences = [] if known is _UNSEEN else _occurrences(known)
            numbers = _claim_listed(occurrences, [page[p].status for p in positions])
            self._known[key] = occurrences
            for position, number in zip(positions, numbers, strict=True):
                numbered[position] = _numbered(page[position], number)
        return numbered

    def __len__(self) -> int:
        """Identities remembered (bounded by two generations)."""
        return len(self._known)


def _occurrences(known: _Known) -> list[_Occurrence]:
    if isinstance(known, list):
        return known
    return [_Occurrence(known, live=True, listed=False)]


def _claim_live(known: list[_Occurrence], status: str | None) -> int:
    """The number of a live fill: a listed fill not yet delivered live, else a new one."""
    for exact in (True, False):
        for number, occurrence in enumerate(known, 1):
            if occurrence.listed and not occurrence.live and _fits(occurrence, status, exact):
                occurrence.live = True
                occurrence.status = occurrence.status or status
                return number
    known.append(_Occurrence(status, live=True, listed=False))
    return len(known)


def _claim_listed(known: list[_Occurrence], statuses: Sequence[str | None]) -> list[int]:
    """The numbers of a page's fills of one identity (in order): each claims a known
    occurrence of its status, else one whose status is unknown, else a new one."""
    numbers = [0] * len(statuses)
    taken: set[int] = set()
    for exact in (True, False):
        for index, status in enumerate(statuses):
            if numbers[index]:
                continue
            for number, occurrence in enumerate(known, 1):
                if number not in taken and _fits(occurrence, status, exact):
                    numbers[index] = number
                    taken.add(number)
                    occurrence.listed = True
                    occurrence.status = occurrence.status or status
                    break
    for index, status in enumerate(statuses):
        if not numbers[index]:
            known.append(_Occurrence(status, live=False, listed=True))
            numbers[index] = len(known)
    return numbers


def _fits(occurrence: _Occurrence, status: str | None, exact: bool) -> bool:
    """Same status (`exact`), or either unknown: the flat live shape carries none."""
    if exact:
        return occurrence.status == status
    return occurrence.status is None or status is None


def _numbered(fill: Fill, number: int) -> Fill:
    return fill if number == 1 else dataclasses.replace(fill, occurrence=number)
