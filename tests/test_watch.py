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


async def test_each_change_reloads_once_when_it_has_settled(tmp_path: Path) -> None:
    """A change reloads once, after one more poll sees the file unchanged; polls without a
    change reload nothing; a file that went away and came back is a change."""
    config = tmp_path / "config.yaml"
    _touch(config, "a: 1\n", 1_000_000_000)()
    seen: list[str] = []
    steps = [
        lambda: None,  # unchanged
        _touch(config, "a: 2\n", 2_000_000_000),
        lambda: None,  # settled: reload
        lambda: None,  # unchanged
        _touch(config, "a: 3\n", 3_000_000_000),
        config.unlink,  # gone (an editor's rename dance): no reload of nothing
        _touch(config, "a: 4\n", 4_000_000_000),
        lambda: None,  # settled: reload
    ]
    with pytest.raises(asyncio.CancelledError):
        await watch_file(
            config,
            lambda: seen.append(config.read_text(encoding="utf-8")),
            since=signature(config),
            sleep=_script(steps),
        )
    assert seen == ["a: 2\n", "a: 4\n"]


async def test_a_file_written_in_two_steps_is_reloaded_once_whole(tmp_path: Path) -> None:
    """Truncated first (`>` or a two-step save), written next: the empty file, though valid
    YAML, is never reloaded; the whole one is."""
    config = tmp_path / "config.yaml"
    _touch(config, "rules: [a, b]\n", 1_000_000_000)()
    seen: list[str] = []
    steps = [
        _touch(config, "", 2_000_000_000),  # truncated
        _touch(config, "rules: [a, b, c]\n", 2_500_000_000),  # written
        lambda: None,
    ]
    with pytest.raises(asyncio.CancelledError):
        await watch_file(
            config,
            lambda: seen.append(config.read_text(encoding="utf-8")),
            since=signature(config),
            sleep=_script(steps),
        )
    assert seen == ["rules: [a, b, c]\n"]
