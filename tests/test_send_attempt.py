"""One send attempt: the target's lock is given back whenever nothing was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from notifier import send_attempt


class _Refusing:
    """A send pool that cannot take work."""

    def submit(self, call: Callable[[], object]) -> Future[object]:
        raise RuntimeError("no thread for it")


async def test_a_failing_look_at_earlier_outcomes_frees_the_target() -> None:
    """done_before() raising (a bug) must not leave the target taken for good."""
    lock = asyncio.Lock()

    def broken() -> str | None:
        raise KeyError("late outcomes")

    with pytest.raises(KeyError):
        await send_attempt.attempt(
            lambda: "sent", lock=lock, lock_wait=1, deadline=1, done_before=broken
        )
    assert not lock.locked()
    assert await send_attempt.attempt(lambda: "sent", lock=lock, lock_wait=1, deadline=5) == "sent"


async def test_a_pool_that_cannot_take_the_send_frees_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool raising on submit: nothing was sent, so the target is free for the retry."""
    lock = asyncio.Lock()
    monkeypatch.setattr(send_attempt, "_senders", _Refusing)
    with pytest.raises(RuntimeError, match="no thread for it"):
        await send_attempt.attempt(lambda: "sent", lock=lock, lock_wait=1, deadline=1)
    assert not lock.locked()
