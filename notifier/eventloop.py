"""Run the daemon's event loop to the end without waiting on stray worker threads.

`asyncio.run` ends by joining the default executor's threads with no timeout (Python 3.11). A
name lookup of a feed reconnect (httpx and websockets resolve in that executor) stuck on a DNS
server that does not answer held the exit 24 s after the daemon had finished, past systemd's
stop timeout. By then the state file is closed and every alert is recorded or sent; what a
worker thread still does (a lookup, a reload reading the config) has no result anyone awaits,
and `cli.entry` leaves with `os._exit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, except that the default executor is shut down without waiting."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # shuts the default executor down with wait=False


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What `asyncio.run` does with tasks still running when `main` ends: cancel, then report."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
