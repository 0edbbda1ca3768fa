"""Walking the venue's history back to a time: the fills one backfill run finds, page by page.

backfill.py decides where a run must read back to, when it runs and what its fills close;
this reads the pages (venue_pages.py), turns each item into a fill numbered among its equals
(recurrence.py), and says where the walk stopped. A run reads at most MAX_PAGES pages; a
longer gap goes on in the next run from the offset where this one stopped.

Venue assumption (PolySimulator documents it): history is ordered newest first by
`filled_at`, and only grows at the front, so an offset reached once never skips an older item
later. The stop condition tolerates small disorder: paging goes on one page past the first
item older than the target.

Pages may hold fewer items than asked while more lie behind them (a venue with a lower cap of
its own), so the offset steps by the items a page held, and a short page is history's end
only when it is shorter than an earlier page of the same walk (a venue that gave more before
is not capping this one) or empty. A walk whose every page was equally short (all of a young
account's history in one page) pays one request more, to find the next one empty or shorter.
Stepping by what was read also keeps a cut run's offset exact, so the next run resumes there
without skipping an item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from notifier.events import Fill
from notifier.normalize import Rejected, normalize_history_item
from notifier.recent import RecentMap
from notifier.recurrence import Recurrences
from notifier.venue_pages import VenuePages

# Requests per run, an empty last page included (at most 10,000 fills at 200 a page); a
# longer gap goes on in the next run.
MAX_PAGES = 50
REJECTED_REMEMBERED = 1000  # bad history items counted once (per generation of the memory)


@dataclass(slots=True)
class HistoryRead:
    """What one run read: its fills by key (newest first, as listed), the offset to go on
    from, whether it reached its target, and how many pages it took."""

    fills: dict[str, Fill]
    next_offset: int
    complete: bool
    pages: int


@dataclass(slots=True)
class _Walk:
    """Where a walk down history ended: the next offset, and whether it reached its target."""

    next_offset: int
    complete: bool


class HistoryWalker:
    """One feed client's reads of history: `read_back()` once a run."""

    def __init__(
        self,
        pages: VenuePages,
        *,
        recurrences: Recurrences,
        on_reject: Callable[[Rejected, str], None],
        unseen: Callable[[Sequence[str]], set[str]] = set,
    ) -> None:
        self._pages = pages
        self._recurrences = recurrences
        self._on_reject = on_reject
        self._unseen = unseen  # the fill keys of these not recorded yet
        # Bad items already counted: every re-read of the overlap lists them again.
        self._rejected: RecentMap[bytes, None] = RecentMap(REJECTED_REMEMBERED)

    async def read_back(self, since: datetime, recent: datetime, resume: int | None) -> HistoryRead:
        """History fills at or after `since`, each once, within MAX_PAGES.

        After a run cut at the page cap, the newest part is read down to `recent`, or to the
        first page of fills all recorded already (what an earlier run or the live feed
        brought), and the rest resumes at `resume`, the offset where the cut run stopped.
        By time alone, more fills than a run's pages in one second (all at or after
        `recent`) made every run re-read them and never reach `resume`. The caller passes
        `resume` only while nothing unrecorded can lie under recorded pages at the front:
        after a failed read (a gap under the live fills recorded since) it passes None.
        """
        self._pages.new_run()
        found: dict[str, Fill] = {}
        cap = MAX_PAGES
        budget = [cap]
        if resume is None:
            walk = await self._walk(0, since, found, budget)
        else:
            walk = await self._walk(0, recent, found, budget, until_known=True)
            if walk.complete:
                walk = await self._walk(resume, since, found, budget)
        return HistoryRead(found, walk.next_offset, walk.complete, pages=cap - budget[0])

    async def _walk(
        self,
        offset: int,
        stop: datetime,
        found: dict[str, Fill],
        budget: list[int],
        *,
        until_known: bool = False,
    ) -> _Walk:
        """Page from `offset` until one page past the first item older than `stop`, or the end
        of history (or, `until_known`, through the first page whose fills are all recorded
        already). The end is an empty page, or one shorter than an earlier page of this walk:
        a page shorter than asked may be the venue's own cap, with more behind it."""
        past = False
        longest = 0  # items of the longest page so far: the venue's cap is no smaller
        while budget[0] > 0:
            budget[0] -= 1
            items = await self._pages.history(offset)
            offset += len(items)  # the items read: an exact place to go on (or resume) from
            ended = not items or len(items) < longest
            longest = max(longest, len(items))
            older = False
            page = self._recurrences.number_page(
                [fill for fill in map(self._normalize, items) if fill is not None]
            )
            for fill in page:
                if fill.filled_at < stop:
                    older = True
                    continue
                found.setdefault(fill.key, fill)
            if past or ended:
                return _Walk(offset, complete=True)
            if until_known and page and not self._unseen([fill.key for fill in page]):
                return _Walk(offset, complete=True)
            past = older
        return _Walk(offset, complete=False)

    def _normalize(self, item: object) -> Fill | None:
        result = (
            normalize_history_item(item)
            if isinstance(item, Mapping)
            else Rejected("not_object", "history item is not an object")
        )
        if not isinstance(result, Rejected):
            return result
        # The item as read: one bad item is one rejection, not one per read that lists it.
        seen = hashlib.blake2b(repr(item).encode(), digest_size=16).digest()
        if seen not in self._rejected:
            self._on_reject(result, "history")
        self._rejected[seen] = None
        return None
