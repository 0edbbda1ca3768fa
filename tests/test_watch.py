"""Config-file watching: one reload per change, none without one, survives a missing file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.watch import signature, watch_file


def _script(steps: list[Callable[[], None]]) -> Callable[[float], Awaitable[None]]:
    """A sleep that runs one scripted step per poll, then stops the watcher."""
    pending = list(steps)

    async def sleep(_: float) -> None:
        if not pending:
            raise asyncio.CancelledError
        pending.pop(0)()

    return sleep


def _touch(path: Path, text: str, mtime_ns: int) -> Callable[[], None]:
    def step() -> None:
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(mtime_ns, mtime_ns))

    return step


async def test_each_change_reloads_once(tmp_path: Path) -> None:
    """A changed file triggers one reload per change; polls without change trigger none."""
    config = tmp_path / "config.yaml"
    _touch(config, "a: 1\n", 1_000_000_000)()
    calls: list[int] = []
    steps = [
        lambda: None,  # unchanged
        _touch(config, "a: 2\n", 2_000_000_000),
        lambda: None,  # unchanged
        _touch(config, "a: 3\n", 3_000_000_000),
        config.unlink,  # gone (an editor's rename dance): no reload of nothing
        _touch(config, "a: 4\n", 4_000_000_000),
    ]
    with pytest.raises(asyncio.CancelledError):
        await watch_file(
            config, lambda: calls.append(1), since=signature(config), sleep=_script(steps)
        )
    assert len(calls) == 3
