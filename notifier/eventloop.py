"""Run the daemon's event loop to the end without waiting on stray worker threads.

`asyncio.run` ends by joining the default executor's threads with no timeout (Python 3.11). A
name lookup of a feed reconnect (httpx and websockets resolve in that executor) stuck on a DNS
server that does not answer held the exit 24 s after the daemon had finished, past systemd's
stop timeout. By then the state file is closed and every alert is recorded or sent; what a
worker thread still does (a lookup, a reload reading the config) has no result anyone awaits,
and `cli.entry` leaves with `os._exit`.

Everything else is `asyncio.run`'s own: its Ctrl-C handling (a cancellation at the next await,
not an interrupt in the middle of a state-file write) and its cancelling of leftover tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class _UnjoinedExecutor(ThreadPoolExecutor):
    """asyncio's default executor, except that shutting it down never waits for its threads."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=cancel_futures)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, except that the default executor is shut down without waiting."""

    async def unjoined() -> T:
        executor = _UnjoinedExecutor(thread_name_prefix="asyncio")
        asyncio.get_running_loop().set_default_executor(executor)
        return await main

    return asyncio.run(unjoined())
