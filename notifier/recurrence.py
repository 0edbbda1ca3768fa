"""Equal fills that are still two fills: numbering the fills that share one identity.

The venue sends no fill id, so a fill's identity is (order, time, quantity, price). Two partial
fills of one order with the same size and price in the same second share it, yet are two fills,
and the second is often the one that completes the order. Each gets an occurrence number, part
of its key, and both paths must give one fill the same number, though the feed may have
delivered either, both or neither of them. Only counts ever make a new occurrence; statuses
only say which known occurrence a fill is, since history's `status` is a free string that may
be the order's rather than the fill's (one fill, PARTIALLY_FILLED live, may read FILLED there):

- The live feed has no replay, so every live frame is a fill that happened: a new occurrence,
  unless a history read listed an occurrence the feed has not delivered (a fill made during
  the read at connect, whose live frame follows); that one it is, of its status if it can.
  It may instead be an equal fill after that one: `unsure` then asks for a fresh read, whose
  count tells.
- History lists every fill: a page's fills of one identity are the occurrences already known,
  each of its own status where it can, and only those beyond the known count are new (the
  fills the feed missed), partial fills first: the order they happened in, whichever order
  the venue lists equal times in. Claims are counted within a page: offset paging can show
  one item on two pages, and that copy must find its first number again.

Each source only ever undercounts, and the store keeps each numbered key once, so nothing is
alerted twice. What is known is kept for the last few thousand identities (repeats come within
a matching cycle, about a second), and not across restarts; the README lists what can still
collapse into one fill, and when an alert can show its equal partner's status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from notifier.events import Fill
from notifier.recent import RecentMap

GENERATION = 4096  # identities a generation remembers; two generations are kept
# Equal fills of one identity told apart; more are taken for one (a venue resending a frame in
# a loop must not cost a scan of thousands, nor unbounded memory, per frame).
MAX_OCCURRENCES = 64
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
        # A live fill was taken for one a history read listed: it may instead be an equal fill
        # after it, which only a fresh count can tell. The feed asks for a read and clears it.
        self.unsure = False

    def number_live(self, fill: Fill) -> Fill:
        """A live fill as the occurrence of its identity it is (itself, for the first)."""
        key = fill.key
        known = self._known.get(key, _UNSEEN)
        if known is _UNSEEN:  # an identity not seen before
            self._known[key] = fill.status
            return fill
        occurrences = _occurrences(known)
        number, claimed = _claim_live(occurrences, fill.status)
        self.unsure = self.unsure or claimed
        self._known[key] = occurrences  # in use: kept in the current generation
        return _numbered(fill, number)

    def number_page(self, page: Sequence[Fill]) -> list[Fill]:
        """A history page (newest first) with each fill numbered; the page keeps its order."""
        groups: dict[str, list[int]] = {}  # identity -> positions in the page, oldest first
        for position in range(len(page) - 1, -1, -1):
            groups.setdefault(page[position].key, []).append(position)
        numbered = list(page)
        for key, positions in groups.items():
            positions.sort(key=lambda p: _RANK.get((page[p].status or "").upper(), 1))
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


def _claim_live(known: list[_Occurrence], status: str | None) -> tuple[int, bool]:
    """The number of a live fill, and whether it claimed an occurrence a history read listed
    and the feed had not delivered (of its status if there is one); else a new one."""
    waiting = [n for n, o in enumerate(known, 1) if o.listed and not o.live]
    number = _pick(known, waiting, status)
    if number is None:
        if len(known) < MAX_OCCURRENCES:
            known.append(_Occurrence(status, live=True, listed=False))
        return len(known), False
    occurrence = known[number - 1]
    occurrence.live = True
    occurrence.status = occurrence.status or status
    return number, True


def _claim_listed(known: list[_Occurrence], statuses: Sequence[str | None]) -> list[int]:
    """The numbers of a page's fills of one identity (in order): they claim the known
    occurrences, of their own status first, then of an unknown one, then any; only those
    beyond the known count are new."""
    numbers = [0] * len(statuses)
    free = list(range(1, len(known) + 1))
    for fits in (_same, _unknown, _any):
        for index, status in enumerate(statuses):
            if numbers[index] or not free:
                continue
            number = _pick(known, free, status, (fits,))
            if number is not None:
                numbers[index] = number
                free.remove(number)
    for index, status in enumerate(statuses):
        if not numbers[index]:
            if len(known) >= MAX_OCCURRENCES:
                numbers[index] = len(known)
                continue
            known.append(_Occurrence(status, live=False, listed=True))
            numbers[index] = len(known)
        occurrence = known[numbers[index] - 1]
        occurrence.listed = True
        occurrence.status = occurrence.status or status
    return numbers


def _pick(
    known: list[_Occurrence],
    numbers: list[int],
    status: str | None,
    tests: Sequence[Callable[[str | None, str | None], bool]] = (),
) -> int | None:
    """Of the occurrence `numbers`, the first of `status`, else the first whose status is
    unknown, else the first (or the first passing `tests`, in turn); None if none does."""
    for fits in tests or (_same, _unknown, _any):
        for number in numbers:
            if fits(known[number - 1].status, status):
                return number
    return None


def _same(known: str | None, status: str | None) -> bool:
    """The same status, in any case (rules compare statuses caselessly too)."""
    if known is None or status is None:
        return known is status
    return known == status or known.upper() == status.upper()


def _unknown(known: str | None, status: str | None) -> bool:
    """Either status unknown: the flat live shape carries none."""
    return known is None or status is None


def _any(known: str | None, status: str | None) -> bool:
    """Statuses that differ: one fill may still be both (the order's status in history)."""
    return True


def _numbered(fill: Fill, number: int) -> Fill:
    return fill if number == 1 else dataclasses.replace(fill, occurrence=number)
