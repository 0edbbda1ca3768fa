"""The daemon's loop runner: asyncio.run, without joining stuck worker threads at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from notifier import eventloop


def test_run_returns_while_a_worker_thread_is_still_blocked() -> None:
    """A name lookup stuck in the default executor held asyncio.run's exit for its whole
    timeout (24 s with a DNS server that does not answer); the runner leaves it behind."""
    release = threading.Event()
    started = threading.Event()
    watchdog = threading.Timer(60, release.set)  # if the runner waited, the test still ends
    watchdog.start()

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, lambda: (started.set(), release.wait()))
        await asyncio.to_thread(started.wait)
        return "done"

    try:
        assert eventloop.run(main()) == "done"
        assert not release.is_set()  # returned while the worker was still blocked
    finally:
        release.set()
        watchdog.cancel()


def test_run_cancels_leftover_tasks_and_passes_errors_through() -> None:
    """Tasks still running when main ends are cancelled (their cleanup runs), as asyncio.run."""
    cleaned: list[str] = []

    async def lingering() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("lingering")

    async def main() -> None:
        asyncio.get_running_loop().create_task(lingering())
        await asyncio.sleep(0)

    eventloop.run(main())
    assert cleaned == ["lingering"]

    async def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        eventloop.run(failing())


def test_ctrl_c_is_a_cancellation_at_the_next_await_as_with_asyncio_run() -> None:
    """The synchronous work under way (a state-file write, say) finishes before Ctrl-C lands."""
    steps: list[str] = []
    # A shell starts a background job (`pytest &`) with SIGINT ignored, and asyncio.run then
    # leaves it so: this test is about Python's default handler, which a terminal's run has.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            steps.extend(f"step{n}" for n in range(3))  # no await: not interrupted
            await asyncio.Event().wait()
        finally:
            steps.append("finally")

    try:
        with pytest.raises(KeyboardInterrupt):
            eventloop.run(main())
    finally:
        signal.signal(signal.SIGINT, before)
    assert steps == ["step0", "step1", "step2", "finally"]
