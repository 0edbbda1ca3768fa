"""One blocking send on a thread of ours: bounded, and never running twice at once for a target.

A thread cannot be stopped. A send given up on while it runs may still succeed, so its target
stays taken until the thread ends: a retry waits for it (at most `lock_wait`, then gives up
without sending) instead of sending beside it, and the late outcome goes to `on_late`, so
the caller can answer the retry of that very message with it (`done_before`) instead of
sending it twice. The deadline counts from when a thread starts the send, not from when it
was queued for one: a send that never started is cancelled, so nothing went out, and one that
started late gets its whole time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from notifier.send_threads import SendThreads

# Threads that run apprise's blocking sends at once. Bounded: waiting sends queue rather than
# spawn. A send given up on while it runs lends one more until it ends (see send_threads.py),
# up to MAX_SEND_THREADS in all.
SEND_THREADS = 16
MAX_SEND_THREADS = 128

_R = TypeVar("_R")


class GaveUp(Exception):
    """The attempt was given up on; the message says whether anything may have been sent."""


async def attempt(
    call: Callable[[], _R],
    *,
    lock: asyncio.Lock,
    lock_wait: float,
    deadline: float,
    done_before: Callable[[], _R | None] = lambda: None,
    on_overdue: Callable[[], None] | None = None,
    on_late: Callable[[_R | None], None] | None = None,
) -> _R:
    """`call()` on a send thread once the target's `lock` is free; GaveUp past the bounds.

    `done_before()`, asked once the lock is held, may answer instead of a send (the late
    outcome of an earlier attempt of the same message). `on_overdue` is told when an attempt
    is given up on while its thread runs, and `on_late` gets its outcome when the thread ends
    (None if it raised or never ran).
    """
    try:
        async with asyncio.timeout(lock_wait):
            await lock.acquire()
    except TimeoutError:
        message = f"an earlier send to this target is still running after {lock_wait:g}s"
        raise GaveUp(message) from None
    began: list[float] = []

    def timed() -> _R:
        began.append(time.monotonic())
        return call()

    try:
        earlier = done_before()
        if earlier is None:
            thread = _senders().submit(timed)
    except BaseException:
        lock.release()  # nothing was sent: the target is free again
        raise
    if earlier is not None:
        lock.release()
        return earlier
    known = False  # whether the caller gets this attempt's outcome
    try:
        result = await _outcome(thread, began, deadline)
        known = True
        return result
    except Exception as exc:
        known = not isinstance(exc, GaveUp)  # apprise raised: that is its outcome
        raise
    finally:
        if known:
            lock.release()
        else:  # given up on or cancelled: the outcome (maybe a success) comes when it ends
            _senders().overdue(thread)  # the sends behind it get a thread of their own
            loop = asyncio.get_running_loop()
            thread.add_done_callback(functools.partial(_ended_late, loop, lock, on_late))
            if on_overdue is not None:  # after: were it to raise, the target is still freed
                on_overdue()


async def _outcome(thread: Future[_R], began: list[float], deadline: float) -> _R:
    """The thread's result, waiting `deadline` from when it started the send."""
    limit = deadline
    while True:
        try:
            async with asyncio.timeout(limit):
                return await asyncio.wrap_future(thread)
        except TimeoutError:
            # Giving up on the wait cancels a send still queued for a thread (asyncio passes
            # the cancellation on): it never runs. A running one cannot be cancelled.
            if thread.cancelled() or thread.cancel():
                raise GaveUp(f"no send thread free within {deadline:g}s") from None
            if thread.done():
                return thread.result()
            start = began[0] if began else time.monotonic()  # it has just started
            limit = start + deadline - time.monotonic()
            if limit <= 0:
                raise GaveUp(f"no outcome within {deadline:g}s (it may still arrive)") from None


def _ended_late(
    loop: asyncio.AbstractEventLoop,
    lock: asyncio.Lock,
    on_late: Callable[[_R | None], None] | None,
    thread: Future[_R],
) -> None:
    """From the send thread, once a given-up attempt ends: its outcome, then the target."""

    def settle() -> None:
        try:
            if on_late is not None:
                ran = not thread.cancelled() and thread.exception() is None
                on_late(thread.result() if ran else None)
        finally:
            lock.release()  # after on_late: a retry waiting for the lock sees the outcome

    with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits for it
        loop.call_soon_threadsafe(settle)


@functools.cache
def _senders() -> SendThreads:
    """The send threads, started on first use and shared by every channel set (reloads too)."""
    return SendThreads(SEND_THREADS, most=MAX_SEND_THREADS)
