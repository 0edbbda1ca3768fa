"""Shared equipment of the fault suite: the daemon in-process, a gated back-off, a hand clock."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fakes import settle
from receivers import Planned, WebhookReceiver, http_response, read_request

from notifier.config import parse
from notifier.service import Service
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim
from notifier.venue_pages import PAGE_PACE

RULES = """\
rules:
  - name: every
    notify: [{channels}]
    title: "{{order_id}}"
    body: "{{side}} {{quantity}} @ {{price}}"
"""


class Gate:
    """The feed's back-off sleep: records each delay; `hook(n)` runs on the n-th call.

    With `auto`, the sleep returns at once; otherwise it waits for the test's `release()`,
    so the test knows the client is disconnected while it records gap fills.

    The feed's sleep also paces a backfill's history pages (PAGE_PACE apart), while connected:
    those pauses are counted in `paces` and return at once, never gated nor hooked. Every run
    that reads a fill also asks for the empty page after it, so gating them would hold the
    connect-time backfill (and reading) until the next release, and a gap hook would make
    fills at the front of history mid-walk, not while the feed is away.
    """

    def __init__(self, *, auto: bool = True, hook: Callable[[int], None] | None = None) -> None:
        self.delays: list[float] = []
        self.paces = 0  # pauses between history pages (not back-off)
        self._auto = auto
        self._hook = hook
        self._permits = asyncio.Semaphore(0)

    async def __call__(self, delay: float) -> None:
        if delay == PAGE_PACE:
            self.paces += 1
            await asyncio.sleep(0)
            return
        self.delays.append(delay)
        if self._hook is not None:
            self._hook(len(self.delays))
        if self._auto:
            await asyncio.sleep(0)
        else:
            await self._permits.acquire()

    def release(self) -> None:
        self._permits.release()


class Clock:
    """The daemon's wall clock (outbox stamps and the deliverer's schedule), moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class NoJitter(random.Random):
    """Back-off randomness pinned to its top: each retry waits the full 1, 2, 4 … seconds."""

    def random(self) -> float:
        return 1.0


class Hook(WebhookReceiver):
    """A webhook that answers by a status function (or its plan), keeps alive, records times."""

    def __init__(
        self, *, status: Callable[[], int] | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__()
        self.status = status
        self.clock = clock
        self.answers: list[tuple[str, int, datetime | None]] = []  # (title, status, clock)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            if self._plan:
                planned = self._plan.popleft()
                status = planned.status
            else:
                planned = Planned()
                status = 200 if self.status is None else self.status()
            at = self.clock.now if self.clock is not None else None
            self.answers.append((str(request.json["title"]), 0 if planned.hang else status, at))
            await self._notify_arrival()
            if planned.hang:
                await self.hang_until_closed()
                return
            headers = {"Content-Type": "application/json", **planned.headers}
            writer.write(http_response(status, planned.body, headers))
            await writer.drain()

    async def drained(self) -> None:
        """Wait until no connection is open: a killed sender's last request, still in transit
        at the kill, has been read by now."""
        await settle()  # a connection made before the kill is accepted
        await until(lambda: not self._tasks)

    def titles(self, status: int | None = None) -> Counter[str]:
        """How many times each alert arrived (answered with `status`, when given)."""
        return Counter(t for t, s, _ in self.answers if status is None or s == status)


def config_text(
    venue: SimulatedPolySim,
    hooks: dict[str, WebhookReceiver],
    state: Path,
    *,
    feed: str = "",
    delivery: str = "",
    rules: str = RULES,
) -> str:
    """A whole config: by default one rule sending every fill to every hook, titled by its
    order id (`rules`: a template of them, `{channels}` naming every hook)."""
    channels = "".join(f"  {name}: {hook.json_url}\n" for name, hook in hooks.items())
    return (
        f"feed:\n  base_url: {venue.base_url}\n  api_key: ${{POLYSIM_API_KEY}}\n{feed}"
        f"state:\n  path: {state}\n"
        f"delivery:\n  retry_base: 1s\n{delivery}"
        f"channels:\n{channels}" + rules.format(channels=", ".join(hooks))
    )


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Poll a condition of the running daemon (no fixed sleeps stand in for a wait)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def running(
    venue: SimulatedPolySim,
    hooks: dict[str, WebhookReceiver],
    tmp_path: Path,
    *,
    sleep: Gate | None = None,
    clock: Clock | None = None,
    feed_clock: Callable[[], float] | None = None,
    feed: str = "",
    delivery: str = "",
    rules: str = RULES,
) -> AsyncIterator[Service]:
    """The real Service in this loop, connected and reading; stopped (and checked) on exit."""
    text = config_text(
        venue, hooks, tmp_path / "state.db", feed=feed, delivery=delivery, rules=rules
    )
    settings = parse(
        text, source=tmp_path / "config.yaml", env={"POLYSIM_API_KEY": DEFAULT_API_KEY}
    )
    service = Service(
        settings,
        install_signals=False,
        feed_sleep=sleep,
        feed_clock=feed_clock,
        clock=clock,
        delivery_rng=NoJitter(),
    )
    task = asyncio.create_task(service.run(), name="service")
    try:
        await until(lambda: task.done() or bool(service.feed and service.feed.stats.reading))
        assert not task.done(), task.exception()
        yield service
    finally:
        service.request_stop()
        async with asyncio.timeout(15):
            await task


@contextlib.asynccontextmanager
async def started(
    venue: SimulatedPolySim,
    hooks: dict[str, WebhookReceiver],
    tmp_path: Path,
    **hooks_of_service: Any,
) -> AsyncIterator[Service]:
    """The real Service in this loop, started but not waited on (its feed may never connect);
    `hooks_of_service` are its test hooks (feed_sleep, feed_clock...). Stopped on exit."""
    text = config_text(venue, hooks, tmp_path / "state.db")
    settings = parse(text, source=tmp_path / "c.yaml", env={"POLYSIM_API_KEY": DEFAULT_API_KEY})
    service = Service(settings, install_signals=False, **hooks_of_service)
    task = asyncio.create_task(service.run(), name="service")
    try:
        yield service
    finally:
        service.request_stop()
        async with asyncio.timeout(15):
            await task


async def delivered_exactly(service: Service, alerts: int) -> None:
    """Wait until `alerts` are sent and none is pending, then check the run's totals are
    exactly that: an extra fill recorded but not yet sent would show here, and not at the
    receiver, were the service stopped now (one rule, one channel: an alert per fill)."""
    await until(lambda: service.summary().sent >= alerts and service.summary().pending == 0)
    s = service.summary()
    assert (s.fills, s.matched, s.sent, s.failed, s.dead, s.pending) == (
        alerts,
        alerts,
        alerts,
        0,
        0,
        0,
    ), s


def quiet(service: Service, clock: Clock) -> bool:
    """No target's head row is due under the hand clock: nothing is in flight or about to be."""
    store = service.store
    assert store is not None
    heads = [store.head(t) for t in store.pending_targets()]
    return all(h[0].next_at > clock.now for h in heads if h)


async def step_until_delivered(
    service: Service, clock: Clock, *, step: float = 1.0, limit: int = 2000
) -> int:
    """Move the hand clock `step` at a time until the outbox is empty; returns steps taken."""
    assert service.deliverer is not None
    for n in range(limit):
        await until(lambda: quiet(service, clock))
        if service.deliverer.pending() == 0:
            return n
        clock.advance(step)
        service.deliverer.notify()
    raise AssertionError(f"outbox not empty after {limit} steps")
