"""WAL checkpoints off the event loop: the daemon's connection leaves them to a second
connection on a thread, which copies every frame and fails without taking anything down."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifier.events import Alert
from notifier.state_file_watch import identity
from notifier.store import StateStore
from notifier.walcheckpoint import WalCheckpointer, checkpoint_forever

T0 = datetime(2026, 2, 6, 12, tzinfo=UTC)
COMMITS = 1500  # each commits a page or more: past sqlite's automatic threshold of 1,000


def _fill_up(store: StateStore) -> None:
    for n in range(COMMITS):
        at = T0 + timedelta(seconds=n)
        alert = Alert(
            fill_key=f"k{n}", rule="r", channel="c", target="t", title="x", body="y", filled_at=at
        )
        store.record(fill_key=f"k{n}", filled_at=at, alerts=[alert])


@pytest.mark.parametrize("automatic", [True, False])
def test_commits_checkpoint_only_when_automatic(tmp_path: Path, automatic: bool) -> None:
    """With the in-commit checkpoint off no commit copies the WAL: the checkpointer finds every
    frame still there, and copies them all; at SQLite's default, commits did most of it."""
    path = tmp_path / "state.db"
    with StateStore(path, autocheckpoint=None if automatic else 0) as store:
        _fill_up(store)
        checkpointer = WalCheckpointer(path)
        try:
            frames, copied = checkpointer.checkpoint()
        finally:
            checkpointer.close()
        assert copied == frames
        assert (frames >= COMMITS) is not automatic
        assert store.counts()["pending"] == COMMITS


def test_a_failing_checkpoint_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that cannot be opened yields (0, 0) and one warning, however often it is tried."""
    checkpointer = WalCheckpointer(tmp_path)  # a directory: sqlite cannot open it
    with caplog.at_level(logging.WARNING, logger="notifier.walcheckpoint"):
        assert checkpointer.checkpoint() == (0, 0)
        assert checkpointer.checkpoint() == (0, 0)
    assert checkpointer.failing
    assert len(caplog.records) == 1
    assert "WAL checkpoint failed" in caplog.records[0].getMessage()


def test_a_state_file_deleted_before_the_first_checkpoint_is_not_created_again(
    tmp_path: Path,
) -> None:
    """The checkpointer opens the file by its path on first use; deleted by then, it stays
    gone (the daemon goes on with the file it opened) instead of coming back empty."""
    path = tmp_path / "state.db"
    with StateStore(path):
        path.unlink()
        checkpointer = WalCheckpointer(path)
        try:
            assert checkpointer.checkpoint() == (0, 0)
        finally:
            checkpointer.close()
    assert not path.exists()


def test_a_file_replaced_before_the_first_checkpoint_is_left_alone(tmp_path: Path) -> None:
    """Another file at the path by the time the checkpointer connects (a restore) must not
    take the daemon's WAL: the daemon's own file would never get those pages."""
    path, aside = tmp_path / "state.db", tmp_path / "aside.db"
    with StateStore(path) as store:
        opened = identity(path)
        _fill_up(store)
        path.rename(aside)
        with StateStore(tmp_path / "backup.db"):
            pass
        (tmp_path / "backup.db").rename(path)  # a restored state file where the daemon's was
        checkpointer = WalCheckpointer(path, same_as=opened)
        try:
            assert checkpointer.checkpoint() == (0, 0)
        finally:
            checkpointer.close()
        store.remember([("after", T0)])  # the daemon's file still takes its writes
        assert store.counts()["pending"] == COMMITS


def test_after_close_nothing_is_done(tmp_path: Path) -> None:
    """A closed checkpointer neither opens the file nor fails; closing twice is harmless."""
    path = tmp_path / "state.db"
    with StateStore(path):
        pass
    checkpointer = WalCheckpointer(path)
    checkpointer.checkpoint()
    checkpointer.close()
    checkpointer.close()
    assert checkpointer.checkpoint() == (0, 0)


async def test_checkpoint_forever_runs_on_a_thread_until_cancelled(tmp_path: Path) -> None:
    """The loop checkpoints repeatedly from worker threads, and stops when cancelled."""
    path = tmp_path / "state.db"
    loop = asyncio.get_running_loop()
    ran = asyncio.Event()
    threads: set[int] = set()

    class Counting(WalCheckpointer):
        def checkpoint(self) -> tuple[int, int]:
            threads.add(threading.get_ident())
            result = super().checkpoint()
            loop.call_soon_threadsafe(ran.set)
            return result

    with StateStore(path, autocheckpoint=0) as store:
        _fill_up(store)
        checkpointer = Counting(path)
        task = asyncio.create_task(checkpoint_forever(checkpointer, every=0))
        try:
            for _ in range(2):
                ran.clear()
                await asyncio.wait_for(ran.wait(), timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            checkpointer.close()
    assert task.cancelled()
    assert threading.get_ident() not in threads
