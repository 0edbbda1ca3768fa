"""A state file deleted, renamed away or replaced under the running daemon is said, once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.state_file_watch import identity, watch_state_file
from notifier.store import StateStore


async def _watch_through(path: Path, steps: list[Callable[[], None]]) -> None:
    """Run the watch over a real store's file, doing one step before each of its looks."""
    with StateStore(path) as store:
        opened = identity(store.path)
        pending = list(steps)

        async def sleep(seconds: float) -> None:
            assert seconds == 60.0
            if not pending:
                raise asyncio.CancelledError
            pending.pop(0)()

        with pytest.raises(asyncio.CancelledError):
            await watch_state_file(store.path, opened, sleep=sleep)


async def test_a_deleted_state_file_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file deleted under the daemon is logged once, as an error naming the consequence."""
    path = tmp_path / "state.db"
    caplog.set_level(logging.INFO, logger="notifier.state_file_watch")
    await _watch_through(path, [lambda: None, path.unlink, lambda: None, lambda: None])
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "ERROR",
            f"state file {path} was deleted while running: this run goes on with the file it "
            "opened, but the next start will not find the alerts pending in it or the fills "
            "it recorded",
        )
    ]


async def test_a_file_renamed_away_and_back_and_a_replaced_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Renamed away is an error, renamed back an info line, and a new file in its place an error."""
    path, aside = tmp_path / "state.db", tmp_path / "aside.db"
    caplog.set_level(logging.INFO, logger="notifier.state_file_watch")
    await _watch_through(
        path,
        [
            lambda: path.rename(aside),
            lambda: aside.rename(path),
            lambda: (path.rename(aside), path.write_bytes(b"")),
        ],
    )
    said = [(r.levelname, r.getMessage().split(" while running")[0]) for r in caplog.records]
    assert said == [
        ("ERROR", f"state file {path} was deleted"),
        ("INFO", f"state file {path} is the file this run opened again"),
        ("ERROR", f"state file {path} was replaced"),
    ]
