"""The send threads: a fixed number at work, plus one lent for each send given up on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from notifier.send_threads import SendThreads

WAIT = 5.0  # seconds: a bound for a thread that should finish at once, never a sleep


def blocked(release: threading.Event, started: threading.Event | None = None) -> Callable[[], str]:
    """A call that holds its thread until `release` is set."""

    def call() -> str:
        if started is not None:
            started.set()
        release.wait(WAIT)
        return "done"

    return call


def until(condition: Callable[[], bool]) -> None:
    """Wait, bounded by WAIT, for the pool's threads to reach a state."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "state never reached"
        time.sleep(0.001)


def returned(future: Future[Any]) -> threading.Event:
    """Set once the pool has taken back what it lent for `future`: a future runs its done
    callbacks in the order they were added, and `overdue` added the pool's first."""
    event = threading.Event()
    future.add_done_callback(lambda _: event.set())
    return event


def test_work_beyond_the_size_waits_for_a_free_thread() -> None:
    """Two threads: a third call queues (does not start) until one of the two ends."""
    pool = SendThreads(2, most=8)
    release = threading.Event()
    busy_started = [threading.Event() for _ in range(2)]
    busy = [pool.submit(blocked(release, event)) for event in busy_started]
    assert all(event.wait(WAIT) for event in busy_started)
    started = threading.Event()
    third = pool.submit(started.set)
    assert pool.threads == 2  # both held by the busy calls: none is free to take the third
    assert not third.running()
    assert not started.is_set()
    release.set()
    third.result(timeout=WAIT)
    assert [f.result(timeout=WAIT) for f in busy] == ["done", "done"]
    assert pool.threads == 2


def test_a_send_given_up_on_lends_a_thread_while_it_runs() -> None:
    """Both threads held by sends given up on: the next call runs on a lent thread."""
    pool = SendThreads(2, most=8)
    release = threading.Event()
    try:
        started = [threading.Event() for _ in range(2)]
        stuck = [pool.submit(blocked(release, event)) for event in started]
        assert all(event.wait(WAIT) for event in started)
        for future in stuck:
            pool.overdue(future)
        assert pool.submit(lambda: "ran").result(timeout=WAIT) == "ran"
        assert pool.threads == 3
    finally:
        release.set()


def test_lent_threads_stop_at_the_ceiling() -> None:
    """`most` bounds the threads however many sends are given up on."""
    pool = SendThreads(1, most=2)
    release = threading.Event()
    try:
        first_started = threading.Event()
        first = pool.submit(blocked(release, first_started))
        assert first_started.wait(WAIT)
        pool.overdue(first)
        second_started = threading.Event()
        second = pool.submit(blocked(release, second_started))
        assert second_started.wait(WAIT)  # on the lent thread
        pool.overdue(second)
        third_started = threading.Event()
        third = pool.submit(third_started.set)
        assert pool.threads == 2  # a third would pass the ceiling; both are held
        assert not third.running()
        assert not third_started.is_set()
    finally:
        release.set()
    assert third_started.wait(WAIT)  # it runs once a thread is free


def test_a_send_that_ended_returns_its_lent_thread() -> None:
    """Once a given-up send ends, the pool is back to its size: no thread more is started,
    and giving it up again after it ended lends none."""
    pool = SendThreads(1, most=8)
    release = threading.Event()
    first_started = threading.Event()
    first = pool.submit(blocked(release, first_started))
    assert first_started.wait(WAIT)
    pool.overdue(first)
    given_back = returned(first)
    release.set()
    first.result(timeout=WAIT)
    assert given_back.wait(WAIT)
    hold = threading.Event()
    try:
        hold_started = threading.Event()
        pool.submit(blocked(hold, hold_started))
        assert hold_started.wait(WAIT)
        started = threading.Event()
        behind = pool.submit(started.set)
        pool.overdue(first)  # given up on after it ended, work waiting: still nothing to lend
        assert pool.threads == 1  # one thread at work, held; none lent for the next call
        assert not behind.running()
        assert not started.is_set()
    finally:
        hold.set()
    assert started.wait(WAIT)
    assert pool.threads == 1


def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    """Cancelling the future of queued work keeps it from running, as an executor's would."""
    pool = SendThreads(1, most=1)
    release = threading.Event()
    busy = pool.submit(blocked(release))
    ran = threading.Event()
    queued = pool.submit(ran.set)
    assert queued.cancel()
    release.set()
    busy.result(timeout=WAIT)
    assert pool.submit(lambda: "after").result(timeout=WAIT) == "after"
    assert not ran.is_set()


def test_an_exception_reaches_the_waiter_and_the_thread_goes_on() -> None:
    """A call that raises hands its exception to the future; the thread serves the next."""
    pool = SendThreads(1, most=1)

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pool.submit(fail).result(timeout=WAIT)
    assert pool.submit(lambda: 7).result(timeout=WAIT) == 7


def test_the_threads_do_not_hold_the_process_at_exit() -> None:
    """Daemon threads: a send stuck at exit must not keep the daemon from stopping."""
    pool = SendThreads(1, most=1)
    release = threading.Event()
    try:
        pool.submit(blocked(release))
        workers = [t for t in threading.enumerate() if t.name.startswith("notifier-send_")]
        assert workers
        assert all(t.daemon for t in workers)
    finally:
        release.set()


def test_work_queued_before_a_send_is_given_up_on_gets_the_lent_thread() -> None:
    """The only thread held by a send, more work queued behind it, then the send is given up
    on: the queued work runs at once on the lent thread, not after the stuck send."""
    pool = SendThreads(1, most=8)
    release = threading.Event()
    try:
        started = threading.Event()
        stuck = pool.submit(blocked(release, started))
        assert started.wait(WAIT)
        behind = threading.Event()
        queued = pool.submit(behind.set)
        assert pool.threads == 1  # the only thread is held by the stuck send
        assert not queued.running()
        assert not behind.is_set()
        pool.overdue(stuck)
        assert behind.wait(WAIT)
    finally:
        release.set()


def test_a_lent_thread_ends_once_its_send_has() -> None:
    """After the given-up send ends, the pool is back to `size` threads at work at once."""
    pool = SendThreads(1, most=8)
    release = threading.Event()
    started = threading.Event()
    first = pool.submit(blocked(release, started))
    assert started.wait(WAIT)
    pool.overdue(first)
    assert pool.submit(lambda: "lent").result(timeout=WAIT) == "lent"
    assert pool.threads == 2
    release.set()
    first.result(timeout=WAIT)
    until(lambda: pool.threads == 1)  # one of the two ended at its next wait for work
    hold = threading.Event()
    try:
        calls_started = [threading.Event() for _ in range(2)]
        calls = [pool.submit(blocked(hold, event)) for event in calls_started]
        assert calls_started[0].wait(WAIT)
        assert pool.threads == 1  # held by the first call: the second waits
        assert not calls[1].running()
        assert not calls_started[1].is_set()
    finally:
        hold.set()
    assert [call.result(timeout=WAIT) for call in calls] == ["done", "done"]
    assert pool.threads == 1


def test_a_thread_that_cannot_start_leaves_the_work_to_be_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the system's thread limit, submit does not raise: the work waits, and cancelling it
    (the caller's deadline) means it never runs; the pool still starts threads later."""
    pool = SendThreads(1, most=1)
    real_start = threading.Thread.start
    failures = iter([RuntimeError("can't start new thread")])

    def start(thread: threading.Thread) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    ran = threading.Event()
    first = pool.submit(ran.set)
    assert pool.threads == 0
    assert first.cancel()
    assert pool.submit(lambda: "later").result(timeout=WAIT) == "later"
    assert not ran.is_set()
