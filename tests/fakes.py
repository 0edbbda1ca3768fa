"""In-process stand-ins shared by the unit suites: hand-moved clocks, targets, event-loop spins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)  # a Friday, 12:00 in London


class HandClock:
    """A wall clock the test sets or moves by hand (`now`); starts at T0 unless told."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> None:
        self.now += timedelta(seconds=seconds, **delta)


class MonoClock:
    """A settable monotonic clock (`t`, in seconds)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class Target:
    key: str


class DeskAndPhone:
    """Two channels: `desk` with one URL, `phone` with two; each writes its messages in the
    format `formats` names for it (text unless named)."""

    def __init__(self, **formats: str) -> None:
        self.formats = formats

    def targets(self, channel: str) -> tuple[Target, ...]:
        keys = {"desk": ("desk-1",), "phone": ("phone-1", "phone-2")}[channel]
        return tuple(Target(k) for k in keys)

    def body_format(self, channel: str) -> str:
        return self.formats.get(channel, "text")


async def spin_until(cond: Callable[[], bool], spins: int = 5000) -> None:
    """Let the event loop run (no real sleeping) until `cond` holds."""
    for _ in range(spins):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never reached")


async def settle(spins: int = 200) -> None:
    """Let every runnable task run, so a test can assert nothing more happens."""
    for _ in range(spins):
        await asyncio.sleep(0)


def grows(delays: list[float]) -> bool:
    """Each delay is a jittered 1, 2, 4 ... (capped at 30) back-off step."""
    return all(0.5 * min(30, 2**i) <= d <= min(30, 2**i) for i, d in enumerate(delays))


class OnlyPhone:
    """The channel set after a reload that dropped `desk`: `phone` with one URL, `key`."""

    def __init__(self, key: str) -> None:
        self.key = key

    def targets(self, channel: str) -> tuple[Target, ...]:
        return {"phone": (Target(self.key),)}[channel]

    def body_format(self, channel: str) -> str:
        return "text"


class Titles:
    """Market titles a test controls: a market not in `titles` fails (None, not absent), one
    in `gone` is one the venue says has no title; `gate` holds look-ups while it is clear."""

    def __init__(self, titles: dict[str, str] | None = None) -> None:
        self.titles = dict(titles or {})
        self.cache: dict[str, str] = {}
        self.gone: set[str] = set()
        self.lookups: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def cached(self, market_id: str) -> str | None:
        return self.cache.get(market_id)

    def absent(self, market_id: str) -> bool:
        return market_id in self.gone

    async def title(self, market_id: str) -> str | None:
        self.lookups.append(market_id)
        await self.gate.wait()
        title = self.titles.get(market_id)
        if title is not None:
            self.cache[market_id] = title
        return title
