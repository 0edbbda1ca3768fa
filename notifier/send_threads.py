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

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_R = TypeVar("_R")
_Work = tuple[Future[Any], Callable[[], Any]]


class SendThreads:
    """`size` threads at work at once, plus one for each running send given up on
    (`overdue`), never more than `most` threads in all. Threads start on demand."""

    def __init__(self, size: int, *, most: int, name: str = "notifier-send") -> None:
        self._size = size
        self._most = max(most, size)
        self._name = name
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._threads = 0  # started; they never end
        self._idle = 0  # waiting for work
        self._waiting = 0  # work submitted and not yet taken by a thread
        self._overdue = 0  # sends given up on, still running

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return self._threads

    def submit(self, call: Callable[[], _R]) -> Future[_R]:
        """Run `call` on a thread; cancelling the future before it starts keeps it from running."""
        future: Future[_R] = Future()
        with self._lock:
            self._work.put((future, call))
            self._waiting += 1
            room = min(self._size + self._overdue, self._most)
            if self._waiting > self._idle and self._threads < room:
                self._threads += 1
                number = self._threads
                threading.Thread(
                    target=self._serve, name=f"{self._name}_{number}", daemon=True
                ).start()
        return future

    def overdue(self, future: Future[Any]) -> None:
        """The send behind `future` was given up on but may still run: lend a thread while it
        does, so the sends behind it are not held up by it."""
        with self._lock:
            if future.done():
                return
            self._overdue += 1
        future.add_done_callback(self._returned)  # at once if it ended meanwhile

    def _returned(self, _: Future[Any]) -> None:
        with self._lock:
            self._overdue -= 1

    def _serve(self) -> None:
        while True:
            with self._lock:
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
