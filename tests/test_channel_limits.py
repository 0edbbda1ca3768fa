"""Channel limits in delivery: rate folding, Retry-After pauses and fallback, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import T0, HandClock, Target, settle, spin_until

from notifier.channel_limits import ChannelLimits, SendWindow
from notifier.deliver import Deliverer
from notifier.events import Alert, MessageLimit, SendResult
from notifier.message_fold import MARKUP_GROWTH, MARKUP_OVERHEAD, fitting, fold, worst_length
from notifier.reroute import RETARGET_SUFFIX, FallbackPolicy, channel_targets, retarget
from notifier.settings import ChannelSettings, DeliverySettings
from notifier.store import OutboxItem, StateStore

SETTINGS = DeliverySettings(
    max_age=timedelta(hours=1), retry_base=1.0, retry_cap=60.0, concurrency=2, timeout=30.0
)


class Sender:
    """Targets by channel; scripted results per target; every attempt recorded."""

    def __init__(self, channels: dict[str, list[str]]) -> None:
        self.channels = channels
        self.script: dict[str, list[SendResult]] = {}
        self.attempts: list[tuple[str, str, str]] = []
        self.formats: list[str | None] = []  # each attempt's body_format, in the same order

    def knows(self, target: str) -> bool:
        return self.channel_of(target) is not None

    def channel_of(self, target: str) -> str | None:
        return next((c for c, ts in self.channels.items() if target in ts), None)

    def targets(self, channel: str) -> tuple[Target, ...]:
        return tuple(Target(t) for t in self.channels[channel])

    async def send(
        self,
        target: str,
        title: str,
        body: str,
        *,
        message: str | None = None,
        body_format: str | None = None,
        diagnose: bool = False,
    ) -> SendResult:
        self.attempts.append((target, title, body))
        self.formats.append(body_format)
        queue = self.script.get(target)
        return queue.pop(0) if queue else SendResult(ok=True)


def alert(n: int, target: str, channel: str, body_format: str | None = None) -> Alert:
    return Alert(
        fill_key=f"fill-{n}",
        rule="r",
        channel=channel,
        target=target,
        title=f"T{n}",
        body=f"B{n}",
        filled_at=T0 + timedelta(seconds=n),
        body_format=body_format,
    )


def record(
    store: StateStore, n: int, target: str, channel: str, body_format: str | None = None
) -> None:
    alerts = [alert(n, target, channel, body_format)]
    store.record(fill_key=f"fill-{n}", filled_at=T0, alerts=alerts)


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def store(tmp_path: Path, clock: HandClock) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", clock=clock) as opened:
        yield opened


@dataclass
class Running:
    deliverer: Deliverer
    sender: Sender


@pytest.fixture
async def start(
    store: StateStore, clock: HandClock
) -> AsyncIterator[Callable[[Sender, dict[str, ChannelSettings]], Running]]:
    tasks: list[asyncio.Task[None]] = []

    def go(sender: Sender, channels: dict[str, ChannelSettings]) -> Running:
        deliverer = Deliverer(store, sender, SETTINGS, clock=clock, channels=channels)
        tasks.append(asyncio.create_task(deliverer.run()))
        return Running(deliverer, sender)

    yield go
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


def channel(name: str, **kw: object) -> ChannelSettings:
    return ChannelSettings(name=name, urls=(f"json://localhost/{name}",), **kw)  # type: ignore[arg-type]


async def test_rate_limit_folds_the_rest_into_one_message(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """At 2/min, five alerts: two go alone, the other three as one message; all marked sent."""
    for n in range(5):
        record(store, n, "chat-1", "chat")
    run = start(Sender({"chat": ["chat-1"]}), {"chat": channel("chat", rate=(2, 60.0))})
    await spin_until(lambda: len(run.sender.attempts) == 2)
    await settle()
    assert [a[1] for a in run.sender.attempts] == ["T0", "T1"]
    clock.advance(30)  # the window still holds both
    run.deliverer.notify()
    await settle()
    assert len(run.sender.attempts) == 2
    clock.advance(30)  # a minute since the first two: room again
    run.deliverer.notify()
    await spin_until(lambda: len(run.sender.attempts) == 3)
    _, title, body = run.sender.attempts[2]
    assert title == "3 alerts (sending was rate-limited)"
    assert body == "T2\nB2\n\nT3\nB3\n\nT4\nB4"
    await spin_until(lambda: store.counts()["sent"] == 5)
    assert run.deliverer.stats.sent == 5


class LateSender(Sender):
    """A sender that knows some alerts were delivered by an attempt it had given up on."""

    def __init__(self, channels: dict[str, list[str]], delivered: set[str]) -> None:
        super().__init__(channels)
        self.delivered = delivered

    def take_delivered(self, target: str, identity: str) -> bool:
        if identity in self.delivered:
            self.delivered.discard(identity)
            return True
        return False


async def test_a_fold_leaves_out_alerts_delivered_after_all(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """Rows the service took from a given-up attempt are marked sent, not folded again beside
    newer ones (the chat would see them twice)."""
    for n in range(5):
        record(store, n, "chat-1", "chat")
    delivered = {"fill-2|r|chat-1", "fill-3|r|chat-1"}
    sender = LateSender({"chat": ["chat-1"]}, delivered)
    run = start(sender, {"chat": channel("chat", rate=(2, 60.0))})
    await spin_until(lambda: len(sender.attempts) == 2)
    await settle()
    clock.advance(60)  # the first two left the window: rows 2, 3 and 4 are due, folded
    run.deliverer.notify()
    await spin_until(lambda: store.counts()["sent"] == 5)
    assert [a[1] for a in sender.attempts] == ["T0", "T1", "T4"]
    assert delivered == set()


async def test_a_fold_stops_at_a_row_still_in_back_off(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """Folding takes due rows up to the first one waiting to retry, never a newer row past it."""
    record(store, 0, "chat-1", "chat")
    run = start(Sender({"chat": ["chat-1"]}), {"chat": channel("chat", rate=(1, 60.0))})
    await spin_until(lambda: len(run.sender.attempts) == 1)
    for n in (1, 2, 3):
        record(store, n, "chat-1", "chat")
    waiting = store.head("chat-1", 3)[1]  # T2 failed before and waits ten minutes
    store.mark_failed(waiting.id, error="HTTP 502", next_at=clock() + timedelta(minutes=10))
    run.deliverer.notify({"chat-1"})
    await settle()
    clock.advance(60)  # a token: the lane folds what is due
    run.deliverer.notify()
    await spin_until(lambda: len(run.sender.attempts) == 2)
    assert run.sender.attempts[1][1:] == ("T1", "B1")  # alone: T3 stays behind T2
    for _ in range(3):
        await settle()
        clock.advance(600)
        run.deliverer.notify()
    await spin_until(lambda: store.counts()["sent"] == 4)
    bodies = "\n".join(body for _, _, body in run.sender.attempts)
    assert [line for line in bodies.split("\n") if line.startswith("B")] == ["B0", "B1", "B2", "B3"]


async def test_under_the_rate_nothing_is_folded(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """Alerts within the rate go one message each, unchanged."""
    for n in range(3):
        record(store, n, "chat-1", "chat")
    run = start(Sender({"chat": ["chat-1"]}), {"chat": channel("chat", rate=(20, 60.0))})
    await spin_until(lambda: store.counts()["sent"] == 3)
    assert [a[1] for a in run.sender.attempts] == ["T0", "T1", "T2"]


async def test_retry_after_pauses_the_whole_channel(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """A 429 with Retry-After on one URL holds the channel's other URL too, until it passes."""
    sender = Sender({"chat": ["chat-1", "chat-2"]})
    sender.script["chat-1"] = [SendResult(ok=False, error="HTTP 429", retry_after=10.0)]
    record(store, 0, "chat-1", "chat")
    run = start(sender, {"chat": channel("chat")})
    await spin_until(lambda: len(sender.attempts) == 1)
    record(store, 1, "chat-2", "chat")
    run.deliverer.notify()
    await settle()
    assert len(sender.attempts) == 1
    clock.advance(10)
    run.deliverer.notify()
    await spin_until(lambda: store.counts()["sent"] == 2)
    assert sorted(a[0] for a in sender.attempts[1:]) == ["chat-1", "chat-2"]


async def test_fallback_after_an_outage_is_queued_once(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """A primary failing for fallback_after: the alert also goes to the fallback, exactly once,
    in the format it was written in for the primary (apprise is told so, and converts it)."""
    sender = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    sender.script["slack-1"] = [SendResult(ok=False, error="token revoked")] * 50
    record(store, 0, "slack-1", "slack", "markdown")
    channels = {
        "slack": channel("slack", fallback="mail", fallback_after=timedelta(minutes=5)),
        "mail": channel("mail"),
    }
    run = start(sender, channels)
    for _ in range(12):  # a minute of failing at a time (the retry cap), past the 5 minutes
        clock.advance(60)
        run.deliverer.notify()
        await settle()
    mail = [a for a in sender.attempts if a[0] == "mail-1"]
    assert mail == [("mail-1", "T0", "B0")]
    assert set(sender.formats) == {"markdown"}
    (row,) = store.outbox(state="sent")
    assert (row.rule, row.channel, row.fill_key) == ("r→fallback", "mail", "fill-0")
    assert row.body_format == "markdown"
    assert len(store.outbox(state="pending")) == 1  # the primary keeps trying


async def test_alerts_queued_behind_a_failing_one_fall_back_on_time(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """Slack down, an alert a minute: each reaches the fallback fallback_after after it was
    recorded, though only the first was ever tried (the rest wait behind it); once each."""
    sender = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    sender.script["slack-1"] = [SendResult(ok=False, error="HTTP 500")] * 5000
    channels = {
        "slack": channel("slack", fallback="mail", fallback_after=timedelta(minutes=5)),
        "mail": channel("mail"),
    }
    run = start(sender, channels)
    fell_back: dict[str, int] = {}
    for minute in range(15):
        if minute < 5:
            record(store, minute, "slack-1", "slack")
        run.deliverer.notify()
        await settle()
        for target, title, _ in sender.attempts:
            if target == "mail-1":
                fell_back.setdefault(title, minute)
        clock.advance(60)
    assert fell_back == {"T0": 5, "T1": 6, "T2": 7, "T3": 8, "T4": 9}
    assert [a[1] for a in sender.attempts if a[0] == "mail-1"] == ["T0", "T1", "T2", "T3", "T4"]
    assert {a[1] for a in sender.attempts if a[0] == "slack-1"} == {"T0"}  # the head only
    assert len(store.outbox(state="pending")) == 5  # the primary keeps them all


async def test_dead_lettered_alert_falls_back(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """An alert dead-lettered on its channel (max_age) is queued for the fallback channel."""
    sender = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    sender.script["slack-1"] = [SendResult(ok=False, error="HTTP 500")]
    record(store, 0, "slack-1", "slack")
    channels = {
        "slack": channel("slack", fallback="mail", fallback_after=timedelta(hours=5)),
        "mail": channel("mail"),
    }
    run = start(sender, channels)
    await spin_until(lambda: len(sender.attempts) == 1)
    clock.advance(3600)
    run.deliverer.notify()
    await spin_until(lambda: store.counts()["sent"] == 1)
    assert store.counts()["dead"] == 1
    assert sender.attempts[-1] == ("mail-1", "T0", "B0")


def test_a_rate_is_a_sliding_window_never_twice_its_count_in_one_period() -> None:
    """5 per 2 s: five at once, then none until the first leaves the window, and never more
    than five in any 2 s (a token bucket let five go at once and five more within the 2 s)."""
    window = SendWindow(5, 2.0)
    for _ in range(5):
        assert window.wait(T0) == 0.0
        window.take(T0)
    assert window.wait(T0) == pytest.approx(2.0)
    assert window.wait(T0 + timedelta(seconds=1.6)) == pytest.approx(0.4)
    at = T0 + timedelta(seconds=2)
    assert window.wait(at) == 0.0
    sends = [at]
    window.take(at)
    for step in range(1, 400):  # a send whenever one fits, 10 ms apart for 4 s
        now = at + timedelta(seconds=step / 100)
        if window.wait(now) == 0.0:
            window.take(now)
            sends.append(now)
    everything = [T0] * 5 + sends
    for i, start in enumerate(everything):
        within = [t for t in everything[i:] if t < start + timedelta(seconds=2)]
        assert len(within) <= 5


def test_a_pause_says_its_end_keeping_an_earlier_longer_one() -> None:
    """`pause` answers when the channel may send again: a second 429 asking for a shorter
    wait leaves the first's end (the failure line states that one), a longer one moves it."""
    limits = ChannelLimits({"chat": channel("chat")})
    first = T0 + timedelta(seconds=60)
    assert limits.pause("chat", T0, first) == first
    assert limits.pause("chat", T0 + timedelta(seconds=1), T0 + timedelta(seconds=31)) == first
    assert limits.wait("chat", T0 + timedelta(seconds=1)) == pytest.approx(59.0)
    later = T0 + timedelta(seconds=90)
    assert limits.pause("chat", T0 + timedelta(seconds=2), later) == later


def test_limits_survive_the_wall_clock_stepping_back() -> None:
    """NTP steps the clock back an hour: a full window counts its sends as made at the new
    now, and a 35 s pause keeps what it had left; neither waits out the hour."""
    limits = ChannelLimits({"chat": channel("chat", rate=(20, 60.0))})
    later = T0 + timedelta(hours=1)
    for _ in range(20):
        limits.take("chat", later)
    assert limits.wait("chat", T0) == pytest.approx(60.0)
    assert limits.wait("chat", T0 + timedelta(seconds=60)) == 0.0
    limits.pause("chat", later, later + timedelta(seconds=35))
    assert limits.wait("chat", later + timedelta(seconds=5)) == pytest.approx(30.0)
    assert limits.wait("chat", T0) == pytest.approx(30.0)
    assert limits.wait("chat", T0 + timedelta(seconds=30)) == 0.0


async def test_a_retry_is_not_held_back_by_the_clock_stepping_back(
    store: StateStore, clock: HandClock, start: Callable[..., Running]
) -> None:
    """A row waiting 1 s to retry when the clock steps back two hours goes at once: no wait
    we set is that long, so the row is taken as due, not held for the step."""
    sender = Sender({"chat": ["chat-1"]})
    sender.script["chat-1"] = [SendResult(ok=False, error="HTTP 500")]
    record(store, 0, "chat-1", "chat")
    run = start(sender, {"chat": channel("chat")})
    await spin_until(lambda: len(sender.attempts) == 1)
    clock.advance(hours=-2)
    run.deliverer.notify()
    await spin_until(lambda: store.counts()["sent"] == 1)
    assert len(sender.attempts) == 2


def test_reload_keeps_a_bucket_whose_rate_is_unchanged() -> None:
    """On reload a channel with the same rate keeps its spent tokens; a new rate starts full."""
    limits = ChannelLimits({"a": channel("a", rate=(1, 60.0)), "b": channel("b", rate=(1, 60.0))})
    limits.take("a", T0)
    limits.take("b", T0)
    limits.update({"a": channel("a", rate=(1, 60.0)), "b": channel("b", rate=(2, 60.0))})
    assert limits.wait("a", T0) == pytest.approx(60.0)
    assert limits.wait("b", T0) == 0.0


def test_retarget_is_idempotent_and_never_doubles(store: StateStore) -> None:
    """Re-recording a row for new targets twice (a crash in between) adds its rows once; a
    target that already holds the alert gets no second row."""
    store.record(
        fill_key="fill-1", filled_at=T0, alerts=[alert(1, "old", "chat"), alert(1, "keep", "chat")]
    )
    old = next(i for i in store.outbox() if i.target == "old")
    targets = channel_targets(Sender({"chat": ["keep", "new"]}), "chat")
    assert targets is not None
    assert retarget(store, old, targets)
    assert not retarget(store, old, targets)
    assert sorted((i.target, i.rule) for i in store.outbox()) == [
        ("keep", "r"),
        ("new", "r"),
        ("old", "r"),
    ]
    assert channel_targets(Sender({"mail": ["m"]}), "chat") is None  # the channel is gone


def test_retarget_back_to_a_url_it_left_uses_a_fresh_row(store: StateStore) -> None:
    """An alert moved off target A and later back to A gets a new row (A's old one never sent)."""
    record(store, 1, "A", "chat")
    (row_a,) = store.outbox()
    assert retarget(store, row_a, [Target("B")])
    store.mark_sent(row_a.id)
    (row_b,) = store.outbox()
    assert retarget(store, row_b, [Target("A")])
    store.mark_sent(row_b.id)
    assert [(i.target, i.rule) for i in store.outbox()] == [("A", "r" + RETARGET_SUFFIX)]


class Recorded:
    """A fallback recorder that notes each record key and holds no alert anywhere."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def record(self, *, fill_key: str, filled_at: object, alerts: object) -> bool:
        self.keys.append(fill_key)
        return True

    def has_alert(self, *, fill_key: str, rule: str, target: str, derived: bool = False) -> bool:
        return False


def test_a_reused_row_id_still_falls_back() -> None:
    """SQLite reuses a deleted last row's id: a new alert with it must still get its fallback."""

    limits = ChannelLimits({"slack": channel("slack", fallback="mail")})
    recorder = Recorded()
    policy = FallbackPolicy(recorder)  # type: ignore[arg-type]
    sender = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    first = OutboxItem(
        id=7, fill_key="fill-1", rule="r", channel="slack", target="slack-1", title="T1",
        body="B1", filled_at=T0, created_at=T0, attempts=1, next_at=T0, last_error="HTTP 500",
        state="pending",
    )  # fmt: skip
    assert policy.escalate(first, limits, "slack", sender)
    again = replace(first, fill_key="fill-2")  # a later alert, stored under the freed id
    assert policy.due_at(again, limits, "slack") is not None
    assert policy.escalate(again, limits, "slack", sender)
    assert not policy.escalate(first, limits, "slack", sender)  # each alert once
    assert recorder.keys == ["fallback:fill-1|r|slack-1", "fallback:fill-2|r|slack-1"]


def test_the_fallback_sweep_walks_a_long_queue_once_and_waits_for_a_gone_channel(
    store: StateStore, clock: HandClock
) -> None:
    """250 rows due (more than one read of the sweep): each escalated once, in order; a later
    sweep reads on from where it stopped. With the fallback channel gone it stops at the
    first row and takes it up again once the channel is back."""
    limits = ChannelLimits({"slack": channel("slack", fallback="mail")})
    policy = FallbackPolicy(store)
    for n in range(250):
        record(store, n, "slack-1", "slack")
    clock.advance(60)
    record(store, 250, "slack-1", "slack")  # a minute younger: not due at the cutoff below
    gone: list[str] = []
    cutoff = clock.now - timedelta(seconds=30)

    def without_mail(row: OutboxItem) -> None:
        gone.append(row.fill_key)
        policy.escalate(row, limits, "slack", Sender({"slack": ["slack-1"]}))

    assert policy.sweep("slack-1", cutoff, without_mail) is None
    assert gone == ["fill-0"]  # stopped at the first: the fallback channel is gone
    escalated: list[str] = []
    both = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})

    def with_mail(row: OutboxItem) -> None:
        escalated.append(row.fill_key)
        policy.escalate(row, limits, "slack", both)

    assert policy.sweep("slack-1", cutoff, with_mail) == clock.now  # fill-250's created_at
    assert escalated == [f"fill-{n}" for n in range(250)]
    assert policy.sweep("slack-1", cutoff, with_mail) == clock.now
    assert len(escalated) == 250  # nothing twice
    mail = [i.fill_key for i in store.outbox() if i.target == "mail-1"]
    assert mail == [f"fill-{n}" for n in range(250)]


def test_a_moved_alert_keeps_its_age(store: StateStore, clock: HandClock) -> None:
    """Retargeted an hour later, the alert's rows keep its created_at: max_age runs on; and
    the format it was written in."""
    store.record(fill_key="fill-1", filled_at=T0, alerts=[alert(1, "old", "chat", "html")])
    (old,) = store.outbox()
    clock.advance(hours=1)
    targets = channel_targets(Sender({"chat": ["new"]}), "chat")
    assert targets is not None
    assert retarget(store, old, targets)
    moved = next(i for i in store.outbox() if i.target == "new")
    assert moved.created_at == old.created_at
    assert moved.next_at == clock.now  # due now, all the same
    assert moved.body_format == "html"


def _rows(bodies: list[str]) -> list[OutboxItem]:
    return [
        OutboxItem(n, f"f{n}", "r", "c", "t", f"T{n:02d}", body, T0, T0, 0, T0, None, "pending")
        for n, body in enumerate(bodies)
    ]


def test_a_fold_fits_the_service_s_lines_and_its_worst_markup() -> None:
    """Folds stop where a service would cut: its line limit, and its length once marked up
    at worst (every character but a letter or digit eight long), never below one row."""
    rows = _rows(["one two three four"] * 50)  # 18 characters, 3 spaces
    assert len(fitting(rows, MessageLimit(chars=32768, lines=2))) == 1
    assert len(fitting(rows, MessageLimit(chars=32768, lines=10))) == 3  # 1 + 3 lines each
    taken = fitting(rows, MessageLimit(chars=4096))
    title, body = fold(taken)
    assert worst_length(f"{title}\n{body}") <= 4096
    assert worst_length("it's") == MARKUP_OVERHEAD + 3 + MARKUP_GROWTH
    assert fitting(_rows(["x" * 9000]), MessageLimit(chars=4096)) == _rows(["x" * 9000])
    assert fitting([], MessageLimit(chars=10)) == []


def test_an_html_fold_counts_its_br_line_breaks_as_lines() -> None:
    """A fold in HTML ends its lines with <br>: a service's line limit counts those, so the
    same rows fit as in text, and a newline in an alert's own text still counts as one."""
    rows = _rows(["one two three four"] * 50)
    assert len(fitting(rows, MessageLimit(chars=32768, lines=10), "<br>")) == 3
    _, body = fold(rows[:2], "<br>")
    assert "\n" not in body
    assert body == "T00<br>one two three four<br><br>T01<br>one two three four"
    tall = _rows(["a\nb\nc"] * 5)
    assert len(fitting(tall, MessageLimit(chars=32768, lines=10), "<br>")) == 2  # 1 + 4 each


def test_a_fallback_channel_back_after_a_reload_is_used() -> None:
    """The fallback channel missing (a reload removed it): nothing queued, and once a later
    reload brings it back, the alert still falls back to it."""

    limits = ChannelLimits({"slack": channel("slack", fallback="mail")})
    recorder = Recorded()
    policy = FallbackPolicy(recorder)  # type: ignore[arg-type]
    row = OutboxItem(
        id=7, fill_key="fill-1", rule="r", channel="slack", target="slack-1", title="T1",
        body="B1", filled_at=T0, created_at=T0, attempts=1, next_at=T0, last_error="HTTP 500",
        state="pending",
    )  # fmt: skip
    assert not policy.escalate(row, limits, "slack", Sender({"slack": ["slack-1"]}))
    assert policy.due_at(row, limits, "slack") is not None  # still to fall back
    both = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    assert policy.escalate(row, limits, "slack", both)
    assert recorder.keys == ["fallback:" + row.identity]


def test_the_fallback_sweep_passes_over_a_waiting_row_and_reads_on_from_its_place(
    store: StateStore, clock: HandClock
) -> None:
    """The head waits (its send given up on still runs): the 249 rows behind it fall back,
    the head does not. A later sweep reads the head back alone and the rows after the
    sweep's place, not the whole queue again; once the head no longer waits, it falls back."""
    limits = ChannelLimits({"slack": channel("slack", fallback="mail")})
    policy = FallbackPolicy(store)
    for n in range(250):
        record(store, n, "slack-1", "slack")
    clock.advance(60)
    cutoff = clock.now - timedelta(seconds=30)
    both = Sender({"slack": ["slack-1"], "mail": ["mail-1"]})
    escalated: list[str] = []

    def escalate(row: OutboxItem) -> None:
        escalated.append(row.fill_key)
        policy.escalate(row, limits, "slack", both)

    head_waits = True
    assert (
        policy.sweep(
            "slack-1", cutoff, escalate, lambda row: head_waits and row.fill_key == "fill-0"
        )
        is None
    )
    assert escalated == [f"fill-{n}" for n in range(1, 250)]
    read: list[int] = []
    pending_by_age = store.pending_by_age

    def counted(target: str, **kw: Any) -> list[OutboxItem]:
        rows = pending_by_age(target, **kw)
        read.append(len(rows))
        return rows

    store.pending_by_age = counted  # type: ignore[method-assign]
    assert policy.sweep("slack-1", cutoff, escalate, lambda row: head_waits) is None
    assert sum(read) == 1  # the head read back; nothing after the sweep's place
    head_waits = False
    assert policy.sweep("slack-1", cutoff, escalate, lambda row: head_waits) is None
    assert escalated[-1] == "fill-0"
    assert len(escalated) == 250  # each once
