"""The threads that run blocking sends: a fixed number at work, not counting sends given up on.

A send given up on keeps its thread until its socket timeouts end it, and those bound each
read, not the exchange: a peer that trickles its answer a byte at a time holds the thread for
as long as it keeps trickling. Counted against a fixed pool, a handful of such targets (one
thread each: a target's sends never overlap) left no thread for any other channel, whose
alerts then failed with "no send thread free" until the trickling stopped. So each send given
up on while it runs lends the pool one more thread until it ends, up to a hard ceiling.

The threads are daemon threads: a send stuck at exit must not hold the process (a
`ThreadPoolExecutor` joins its threads at exit). Its row is still pending, and goes out after
the restart, as for any send cut short.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)

_R = TypeVar("_R")
_Work = tuple[Future[Any], Callable[[], Any]]


class SendThreads:
    """`size` threads at work at once, plus one for each running send given up on
    (`overdue`), never more than `most` threads in all. Threads start on demand; one lent
    for a send given up on ends once that send has, at its next wait for work."""

    def __init__(self, size: int, *, most: int, name: str = "notifier-send") -> None:
        self._size = size
        self._most = max(most, size)
        self._name = name
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._threads = 0  # started and not ended
        self._idle = 0  # waiting for work
        self._waiting = 0  # work submitted and not yet taken by a thread
        self._overdue = 0  # sends given up on, still running
        self._started = 0  # threads ever started: their names

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def submit(self, call: Callable[[], _R]) -> Future[_R]:
        """Run `call` on a thread; cancelling the future before it starts keeps it from running.

        Work no thread can take yet waits for one; if none ever comes (no thread could be
        started), the caller's deadline cancels it, so it never runs unseen.
        """
        future: Future[_R] = Future()
        with self._lock:
            self._work.put((future, call))
            self._waiting += 1
            self._grow()
        return future

    def overdue(self, future: Future[Any]) -> None:
        """The send behind `future` was given up on but may still run: lend a thread while it
        does, so the sends behind it (those queued already too) are not held up by it."""
        with self._lock:
            if future.done():
                return
            self._overdue += 1
            self._grow()
        future.add_done_callback(self._returned)  # at once if it ended meanwhile

    def _returned(self, _: Future[Any]) -> None:
        with self._lock:
            self._overdue -= 1

    def _room(self) -> int:
        return min(self._size + self._overdue, self._most)

    def _grow(self) -> None:
        """Start a thread if work waits that no idle thread will take (the lock held)."""
        if self._waiting <= self._idle or self._threads >= self._room():
            return
        self._started += 1
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}_{self._started}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # the system's thread limit: the work waits for a thread
            log.warning("cannot start a send thread (%s); %d at work", exc, self._threads)
            return
        self._threads += 1

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._threads > self._room():  # lent for a send that has ended
                    self._threads -= 1
                    return
                self._idle += 1
            future, call = self._work.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited: it never runs
            try:
                result = call()
            except BaseException as exc:  # handed to the waiter, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, call  # no reference to a finished send while waiting for the next
