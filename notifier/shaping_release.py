"""Releasing shaped alerts: what the shaping stage lets go, recorded with the state it leaves.

The shaping stage is pure (shaping_stage.py); this is its durable side in the pipeline. A
release is recorded in the outbox in one transaction with the shaping state that no longer
holds its fills, so after kill -9 they are either still held or recorded: never lost, never
doubled. A release is recorded under a key derived from its fills (`shaped:<rule>|<fill_key>`),
so one recorded twice (a crash between two commits of a store without group commit) is ignored
the second time. Besides the releases a batch's fills bring, a timer releases what falls due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from notifier.digests import Release
from notifier.errors import StateError
from notifier.events import Alert, Fill
from notifier.fanout import TargetLookup
from notifier.rules import Rule, RuleSet
from notifier.shaping_stage import ShapingStage
from notifier.shaping_state import StateChanges

REWAKE = 60.0  # seconds the shaping timer sleeps at most before it looks at the clock again
# Shaped records between two shaping-state writes, each of which commits the open batch (the
# store's own batch limit is held off meanwhile: records must not commit without the state).
SHAPING_SAVE_EVERY = 200
# Seconds a start holds releases for the feed's catch-up at most (`hold`): a venue that cannot
# be reached must not hold a summary due while the daemon was down for longer than this.
CATCH_UP_HOLD = 60.0


class ShapingStore(Protocol):
    """Where the shaping stage's held state is kept (shaping_table.py)."""

    def entries(self) -> list[tuple[str, str, str, str]]: ...

    def legacy_snapshot(self) -> str | None: ...

    def save(self, changes: StateChanges) -> None: ...


class ReleaseStore(Protocol):
    """The state store's part in releasing: the outbox, the shaping state and the open batch."""

    def flush(self) -> None: ...

    def hold_batch(self) -> contextlib.AbstractContextManager[None]: ...

    def abandon_batch(self, reason: StateError) -> None: ...

    def record(self, *, fill_key: str, filled_at: datetime, alerts: Sequence[Alert]) -> bool: ...

    @property
    def shaping(self) -> ShapingStore: ...


class ReleaseCounts(Protocol):
    """The counters a recorded release adds to (the pipeline's stats)."""

    released: int  # shaped messages (digests included) recorded for delivery
    alerts: int


class ShapingReleaser:
    """Records what the shaping stage releases and writes its state, on the pipeline's store;
    `release_forever` is the timer task that releases at the stage's deadlines."""

    def __init__(
        self,
        stage: ShapingStage,
        store: ReleaseStore,
        *,
        targets: Callable[[], TargetLookup],  # the channels in force now (a reload swaps them)
        counts: ReleaseCounts,
        on_recorded: Callable[[set[str]], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._stage = stage
        self._store = store
        self._targets = targets
        self._counts = counts
        self._on_recorded = on_recorded
        self._clock = clock
        self._tick = asyncio.Event()
        self._since_save = 0
        self._caught_up: asyncio.Event | None = None  # set by `hold`: releases wait for it

    def tick(self) -> None:
        """The clock moved or the shaper changed: look at the shaping deadlines again."""
        self._tick.set()

    def hold(self) -> None:
        """Release nothing until `caught_up` (or CATCH_UP_HOLD): a group due while the daemon
        was down still takes the fills made before its time that the start's catch-up brings."""
        self._caught_up = asyncio.Event()

    def caught_up(self) -> None:
        """What the start's catch-up brought is recorded: releases may go out."""
        if self._caught_up is not None:
            self._caught_up.set()

    def offer(self, rule: Rule, fill: Fill) -> set[str]:
        """Hand a match just recorded to the shaper; the targets of what goes out at once.

        The caller calls `offered` once every shaped rule of the fill has it, and `save`s once
        its batch is recorded.
        """
        queued = self._record(self._stage.offer(rule, fill))
        self._since_save += 1
        return queued

    def offered(self) -> None:
        """A fill is with every shaped rule it matched: a long batch saves here, on the way.

        Never between one fill's rules: the save commits the batch, the fill's record in it,
        and a crash right after would leave the rules not yet offered the fill without it,
        while its record makes the restart's backfill skip it as seen.
        """
        if self._since_save >= SHAPING_SAVE_EVERY:
            self.save()

    def record_orphans(self, releases: list[Release]) -> None:
        """Record what rules no longer shaped held, with the state that no longer has it.

        Those fills are seen already: dropped here they would never be alerted. The records and
        the state commit together (the state write commits the open batch); a crash in
        between replays the same releases, whose keys the store then ignores.
        """
        if not releases:
            return
        targets = self._record(releases)
        if targets:
            self._on_recorded(targets)
        self.save()

    def reconfigure(self, rules: RuleSet) -> None:
        """A reload: shape by the new rules, recording at once what the others held."""
        self.record_orphans(self._stage.reconfigure(rules.rules))
        self.save()
        self.tick()

    def _record(self, releases: list[Release]) -> set[str]:
        """Record each release's alerts (idempotent by its key); the targets of those queued."""
        queued: set[str] = set()
        for release in releases:
            alerts = self._stage.alerts(release, self._targets())
            filled_at = release.bunch.last_at
            key = f"shaped:{release.rule}|{release.fill_key}"
            if self._store.record(fill_key=key, filled_at=filled_at, alerts=alerts):
                self._counts.released += 1
                self._counts.alerts += len(alerts)
                queued.update(alert.target for alert in alerts)
        return queued

    def save(self) -> None:
        """Write what the shaping state changed; this commits the store's open batch."""
        changes = self._stage.changes()
        if changes:
            try:
                self._store.shaping.save(changes)  # commits the open batch with it
            except StateError as exc:
                # The batch's records of shaped fills must not commit without the state that
                # holds them (a later flush would): roll it back; the service stops, and a
                # restart reads records and state as they were before this batch.
                self._store.abandon_batch(exc)
                raise
        else:
            self._store.flush()  # the batch commits here all the same
        self._since_save = 0

    def release_due(self) -> None:
        """Record what the shaper releases by now, with the state that no longer holds it, in
        one transaction."""
        with self._store.hold_batch():
            targets = self._record(self._stage.due())
            self.save()
        if targets:
            self._on_recorded(targets)

    async def release_forever(self) -> None:
        """Wake at the shaper's next deadline (or a tick) and release what is due."""
        if self._caught_up is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CATCH_UP_HOLD):
                    await self._caught_up.wait()
        seen = self._clock()  # the wall time at the last look
        while True:
            self._tick.clear()
            now = self._clock()
            # Stepped back since the last look: deadlines set before the step may lie beyond
            # their spec even while another rule's deadline is near, when the check below
            # never looks (a busy rule kept a 30 s group waiting out a 1 h step).
            if now < seen and self._stage.pull_in():
                self.save()
            seen = now
            deadline = self._stage.next_deadline()
            if deadline is None:
                await self._tick.wait()
                continue
            delay = (deadline - now).total_seconds()
            if delay > REWAKE:
                # Far off: is that a stepped-back wall clock? Look again in a while, too, as
                # the wall clock may step while we sleep on the loop's monotonic one.
                if self._stage.pull_in():
                    self.save()
                    continue
                delay = REWAKE
            if delay > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the wait ends, and this timer would outlive the pipeline.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._tick.wait()
                continue
            self.release_due()
            await asyncio.sleep(0)  # a deadline that stays past must not starve the loop
