"""The SQLite state store, on real files: dedupe, atomicity, watermark, outbox, kill -9."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import sqlite3
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from daemon import python_child, python_child_output
from fakes import HandClock

from notifier.errors import StateBusyError, StateError
from notifier.events import Alert
from notifier.prune import PRUNE_EVERY, prune_forever
from notifier.send_results import rate_limit_pause
from notifier.shaping_state import StateChanges
from notifier.state_path import writable_hint
from notifier.store import PRUNE_STEP, SCHEMA_VERSION, StateStore
from notifier.store_schema import MIGRATIONS, to_us

T0 = datetime(2026, 2, 6, 12, 0, 0, 123456, tzinfo=UTC)


def alert(fill_key: str, *, rule: str = "r", target: str = "t1", at: datetime = T0) -> Alert:
    return Alert(
        fill_key=fill_key,
        rule=rule,
        channel="chat",
        target=target,
        title=f"title {fill_key}",
        body=f"body {fill_key} <&*_>",
        filled_at=at,
    )


@pytest.fixture
def clock() -> HandClock:
    return HandClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: HandClock) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", clock=clock) as s:
        yield s


def test_record_dedupes_same_fill(store: StateStore) -> None:
    """The same fill recorded twice queues its alerts once and reports the repeat."""
    alerts = [alert("f1", target="t1"), alert("f1", target="t2")]
    assert store.record(fill_key="f1", filled_at=T0, alerts=alerts) is True
    assert store.record(fill_key="f1", filled_at=T0, alerts=alerts) is False
    assert store.seen("f1")
    assert not store.seen("f2")
    assert sorted(i.target for i in store.outbox()) == ["t1", "t2"]


def test_outbox_rows_unique_per_fill_rule_target(store: StateStore) -> None:
    """Two identical alerts in one record make one row; another rule makes another."""
    alerts = [alert("f1"), alert("f1"), alert("f1", rule="other")]
    store.record(fill_key="f1", filled_at=T0, alerts=alerts)
    assert sorted(i.rule for i in store.outbox()) == ["other", "r"]


def test_a_forgotten_watermark_is_a_fresh_store_s_and_can_be_set_lower(
    store: StateStore,
) -> None:
    """A first start whose key was refused forgets its floor: the next start's is later, or,
    after a clock correction, earlier, and either is kept (the mark only moves forward)."""
    store.save_watermark(T0)
    store.forget_watermark()
    assert store.load_watermark() is None
    earlier = T0 - timedelta(hours=1)
    store.save_watermark(earlier)
    assert store.load_watermark() == earlier


def test_record_without_alerts_still_dedupes_and_advances(store: StateStore) -> None:
    """A fill that matched nothing is remembered and moves the watermark."""
    assert store.record(fill_key="f1", filled_at=T0, alerts=[])
    assert store.seen("f1")
    assert store.load_watermark() == T0
    assert store.counts() == {"pending": 0, "dead": 0, "sent": 0}


def test_unseen_answers_for_many_keys_at_once(store: StateStore) -> None:
    """`unseen` returns exactly the keys never recorded, across several query chunks."""
    store.record(fill_key="k3", filled_at=T0, alerts=[])
    store.remember([("k700", T0), ("k1100", T0)])
    keys = [f"k{n}" for n in range(1200)]
    assert store.unseen(keys) == set(keys) - {"k3", "k700", "k1100"}
    assert store.unseen([]) == set()


def test_remember_records_quiet_fills_like_record(store: StateStore, clock: HandClock) -> None:
    """`remember` marks fills seen and moves the watermark, counting only the new ones."""
    later = T0 + timedelta(minutes=5)
    clock.now = later + timedelta(seconds=1)  # the fills are past, as fills are
    store.record(fill_key="a", filled_at=T0, alerts=[])
    assert store.remember([("a", T0), ("b", later), ("c", T0)]) == 2
    assert store.seen("b")
    assert store.seen("c")
    assert store.load_watermark() == later
    assert not store.record(fill_key="b", filled_at=later, alerts=[alert("b")])
    assert store.outbox() == []
    assert store.remember([]) == 0


@pytest.mark.parametrize("ahead", [timedelta(minutes=5), timedelta(days=365 * 70)])
def test_a_fill_from_the_future_moves_the_watermark_only_to_now(
    store: StateStore, clock: HandClock, ahead: timedelta
) -> None:
    """A fill stamped ahead of this clock is recorded as stamped, but the watermark stops at
    now. It used to go up to 10 minutes ahead: past the 60 s backfill overlap, so the next
    gap's fills, stamped before it, were never read back."""
    later = clock.now + ahead
    assert store.record(fill_key="f", filled_at=later, alerts=[alert("f", at=later)])
    assert store.load_watermark() == clock.now
    store.remember([("g", later)])
    assert store.load_watermark() == clock.now
    assert store.outbox()[0].filled_at == later


def test_a_fill_seen_before_moves_the_watermark_no_further(
    store: StateStore, clock: HandClock
) -> None:
    """A backfill reading a future-stamped fill again an hour later leaves the watermark where
    the first sighting put it: pushed to the new now, a crash soon after would start the
    next backfill past the fills of the downtime."""
    far = datetime(2099, 1, 1, tzinfo=UTC)
    assert store.remember([("g", far), ("h", T0 - timedelta(hours=1))]) == 2
    mark = store.load_watermark()
    assert mark == clock.now
    clock.now += timedelta(hours=1)
    assert store.remember([("g", far), ("g", far)]) == 0
    assert store.record(fill_key="g", filled_at=far, alerts=[]) is False
    assert store.load_watermark() == mark
    assert store.remember([("g", far), ("i", T0), ("i", T0)]) == 1  # new ones still count
    assert store.load_watermark() == mark
    later = clock.now + timedelta(minutes=5)  # past the mark: a new fill beside a seen one
    clock.now = later
    assert store.remember([("g", far), ("j", later)]) == 1
    assert store.load_watermark() == later
    assert not store.unseen(["g", "i", "j"])


def test_record_is_atomic(store: StateStore) -> None:
    """A record that fails midway leaves no fill key, no rows and no watermark behind."""
    bad = Alert("f1", "r", "chat", "t2", object(), "b", T0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1"), bad])
    assert not store.seen("f1")
    assert store.outbox() == []
    assert store.load_watermark() is None
    assert store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])


def test_watermark_only_moves_forward(store: StateStore, clock: HandClock) -> None:
    """Neither save_watermark nor an older fill moves the watermark back."""
    clock.now = T0 + timedelta(hours=1)  # the fills below are past, as fills are
    assert store.load_watermark() is None
    store.save_watermark(T0 + timedelta(seconds=5))
    store.save_watermark(T0)
    assert store.load_watermark() == T0 + timedelta(seconds=5)
    store.record(fill_key="old", filled_at=T0 - timedelta(hours=1), alerts=[])
    assert store.load_watermark() == T0 + timedelta(seconds=5)
    store.record(fill_key="new", filled_at=T0 + timedelta(minutes=1), alerts=[])
    assert store.load_watermark() == T0 + timedelta(minutes=1)


def test_naive_datetime_refused(store: StateStore) -> None:
    """A naive time is a caller bug: refused, not silently taken as local time."""
    with pytest.raises(ValueError, match="naive"):
        store.save_watermark(datetime(2026, 1, 1))


def test_head_in_fill_order_per_target(store: StateStore) -> None:
    """head() yields one target's pending rows by fill time, whatever the insertion order."""
    for key, secs in [("c", 30), ("a", 10), ("b", 20)]:
        at = T0 + timedelta(seconds=secs)
        store.record(fill_key=key, filled_at=at, alerts=[alert(key, at=at), alert(key, target="x")])
    assert [i.fill_key for i in store.head("t1", limit=10)] == ["a", "b", "c"]
    assert [i.fill_key for i in store.head("t1")] == ["a"]
    assert store.pending_targets() == ["t1", "x"]
    store.mark_sent(store.head("t1")[0].id)
    assert [i.fill_key for i in store.head("t1", limit=10)] == ["b", "c"]


def test_round_trip_of_a_row(store: StateStore, clock: HandClock) -> None:
    """Every field of an outbox row comes back exactly as written."""
    clock.now = T0 + timedelta(seconds=1)
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
    (item,) = store.head("t1")
    assert (item.fill_key, item.rule, item.channel, item.target) == ("f1", "r", "chat", "t1")
    assert (item.title, item.body) == ("title f1", "body f1 <&*_>")
    assert item.filled_at == T0
    assert item.created_at == item.next_at == clock.now
    assert (item.attempts, item.last_error, item.state) == (0, None, "pending")


def test_mark_failed_and_dead(store: StateStore) -> None:
    """Failures count attempts and reschedule; dead rows leave the pending set but stay listed."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
    (item,) = store.head("t1")
    later = T0 + timedelta(seconds=7)
    store.mark_failed(item.id, error="HTTP 500", next_at=later)
    store.mark_failed(item.id, error="HTTP 502", next_at=later)
    (item,) = store.head("t1")
    assert (item.attempts, item.last_error, item.next_at) == (2, "HTTP 502", later)
    store.mark_dead(item.id, error="expired")
    assert store.head("t1") == []
    assert store.pending_targets() == []
    assert [(i.state, i.last_error) for i in store.outbox()] == [("dead", "expired")]
    assert store.counts() == {"pending": 0, "dead": 1, "sent": 0}


def test_outbox_listing_by_state(store: StateStore) -> None:
    """outbox() lists pending and dead rows; a state argument picks one state, sent included."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1", target=t) for t in "abc"])
    a, b, _ = store.outbox()
    store.mark_sent(a.id)
    store.mark_dead(b.id, error="gone")
    assert [i.target for i in store.outbox()] == ["b", "c"]
    assert [i.target for i in store.outbox(state="sent")] == ["a"]
    assert [i.target for i in store.outbox(state="dead")] == ["b"]
    assert [i.target for i in store.outbox(state="pending")] == ["c"]
    assert store.counts() == {"pending": 1, "dead": 1, "sent": 1}


def test_retry_dead_requeues_with_fresh_age(store: StateStore, clock: HandClock) -> None:
    """retry_dead puts dead rows back in line: attempts reset, due now, max_age counted anew."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1"), alert("f1", target="u")])
    first, second = store.outbox()
    store.mark_failed(first.id, error="500", next_at=T0 + timedelta(hours=1))
    store.mark_dead(first.id, error="expired")
    store.mark_sent(second.id)
    clock.now = T0 + timedelta(days=2)
    assert store.retry_dead() == 1
    (item,) = store.head("t1")
    assert (item.state, item.attempts) == ("pending", 0)
    assert item.next_at == item.created_at == clock.now
    assert store.counts() == {"pending": 1, "dead": 0, "sent": 1}


def test_changed_elsewhere_sees_only_other_connections_commits(
    store: StateStore, tmp_path: Path
) -> None:
    """The first call takes note; the store's own writes are not "elsewhere"; a commit through
    another connection (`notifier outbox` beside the daemon) is, once; a mere read is not."""
    assert not store.changed_elsewhere()
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
    (row,) = store.outbox()
    store.mark_dead(row.id, error="expired")
    assert not store.changed_elsewhere()
    with StateStore(tmp_path / "state.db", read_only=True) as reader:
        assert reader.counts()["dead"] == 1
    assert not store.changed_elsewhere()
    with StateStore(tmp_path / "state.db", migrate=False) as beside:
        assert beside.retry_dead() == 1
    assert store.changed_elsewhere()
    assert not store.changed_elsewhere()
    assert store.counts() == {"pending": 1, "dead": 0, "sent": 0}


def test_purge_dead_removes_only_dead(store: StateStore) -> None:
    """purge_dead deletes dead rows and nothing else."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1", target=t) for t in "ab"])
    a, _ = store.outbox()
    store.mark_dead(a.id, error="x")
    assert store.purge_dead() == 1
    assert [i.target for i in store.outbox()] == ["b"]
    assert store.purge_dead() == 0


def test_retry_and_purge_dead_go_in_steps_and_touch_only_dead_rows(store: StateStore) -> None:
    """Short transactions (a daemon beside them must get the lock), every dead row in the end."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1", target=t) for t in "abcdefg"])
    rows = store.outbox()
    for row in rows[:5]:
        store.mark_dead(row.id, error="x")
    store.mark_sent(rows[5].id)
    assert store.retry_dead(step=2) == 5
    assert store.counts() == {"pending": 6, "dead": 0, "sent": 1}
    for row in store.outbox()[:5]:
        store.mark_dead(row.id, error="x")
    assert store.purge_dead(step=2) == 5
    assert store.counts() == {"pending": 1, "dead": 0, "sent": 1}
    assert store.purge_dead(step=2) == store.retry_dead(step=2) == 0


def test_retry_and_purge_dead_of_one_channel_and_a_move_to_another(store: StateStore) -> None:
    """`channel` limits both to that channel's dead rows; `to` requeues them for another
    channel, each under a URL key no config has (the daemon re-queues it for that channel's
    current URLs), in steps like the rest."""
    mail = dataclasses.replace(alert("f2", target="m1"), channel="mail")
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1", target=t) for t in "abc"])
    store.record(fill_key="f2", filled_at=T0, alerts=[mail])
    for row in store.outbox():
        store.mark_dead(row.id, error="gone")
    assert store.retry_dead(channel="chat", to="desk", step=2) == 3
    moved = store.outbox(state="pending")
    assert [(row.channel, row.target) for row in moved] == [
        ("desk", f"moved:{row.id}") for row in moved
    ]
    assert [row.channel for row in store.outbox(state="dead")] == ["mail"]
    assert store.purge_dead(channel="chat") == 0
    assert store.purge_dead(channel="mail") == 1
    assert store.counts() == {"pending": 3, "dead": 0, "sent": 0}


def test_a_new_state_file_is_said_with_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating the state file (a mistyped state.path starts afresh) is logged with its
    path; opening one that is there is not."""
    caplog.set_level(logging.INFO, logger="notifier.sqlitefile")
    path = tmp_path / "typo" / "notifier.db"
    StateStore(path).close()
    StateStore(path).close()
    assert [r.getMessage() for r in caplog.records] == [f"new state file {path} (there was none)"]


def test_a_write_lock_held_past_the_timeout_is_a_busy_error(tmp_path: Path) -> None:
    """Busy is a condition that may clear (the daemon exits to be restarted), and its message
    no longer blames another notifier: the lock beside the file keeps those out."""
    path = tmp_path / "state.db"
    with StateStore(path, busy_timeout=0.05) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StateBusyError) as info:
                store.set_meta("k", "v")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert str(info.value) == (
            f"state file {path}: write meta: busy: another program held its write lock over "
            "0.05s (a sqlite3 shell, a backup?)"
        )
        store.set_meta("k", "v")  # the store is usable once the lock is gone
        assert store.get_meta("k") == "v"


def test_prune_bounds_the_file(store: StateStore, clock: HandClock) -> None:
    """prune forgets old fill keys and old sent rows, never pending or dead ones."""
    for n in range(10):
        at = T0 + timedelta(hours=n)
        clock.now = at
        store.record(fill_key=f"f{n}", filled_at=at, alerts=[alert(f"f{n}", at=at)])
    items = store.outbox()
    for item in items[:6]:
        clock.now = item.filled_at
        store.mark_sent(item.id)
    store.mark_dead(items[6].id, error="x")
    cut = T0 + timedelta(hours=4)
    assert store.prune(fills_before=cut, sent_before=cut) == 4 + 4
    assert [store.seen(f"f{n}") for n in range(10)] == [False] * 4 + [True] * 6
    assert store.counts() == {"pending": 3, "dead": 1, "sent": 2}
    assert store.load_watermark() == T0 + timedelta(hours=9)


def test_prune_drops_a_recently_sent_row_of_a_forgotten_fill(
    store: StateStore, clock: HandClock
) -> None:
    """A row sent lately but filled before the cutoff goes with its fill key, never alone."""
    store.record(fill_key="old", filled_at=T0, alerts=[alert("old", at=T0)])
    (row,) = store.outbox()
    clock.now = T0 + timedelta(days=8)
    store.mark_sent(row.id)  # e.g. a dead alert requeued and delivered a week later
    cut = T0 + timedelta(days=7)
    assert store.prune(fills_before=cut, sent_before=cut) == 2
    assert not store.seen("old")
    assert store.counts()["sent"] == 0


def test_pending_count_agrees_with_counts(store: StateStore) -> None:
    """pending_count (the index-only count the metrics use) is the pending figure of counts."""
    for n in range(4):
        store.record(fill_key=f"f{n}", filled_at=T0, alerts=[alert(f"f{n}")])
    first, second, *_ = store.outbox()
    store.mark_sent(first.id)
    store.mark_dead(second.id, error="x")
    assert store.pending_count() == store.counts()["pending"] == 2


def test_prune_goes_in_steps_sent_rows_first(store: StateStore, clock: HandClock) -> None:
    """With a limit, each call deletes at most that many, sent rows before fill keys."""
    for n in range(5):
        store.record(fill_key=f"f{n}", filled_at=T0, alerts=[alert(f"f{n}", at=T0)])
    items = store.outbox()
    for item in items[:3]:
        store.mark_sent(item.id)
    for item in items[3:]:
        store.mark_dead(item.id, error="x")  # a pending row would hold the prune back
    cut = T0 + timedelta(days=1)
    assert store.prune(fills_before=cut, sent_before=cut, limit=2) == 2
    assert store.counts()["sent"] == 1  # two sent rows went, no fill key yet
    assert all(store.seen(f"f{n}") for n in range(5))
    steps = [store.prune(fills_before=cut, sent_before=cut, limit=2) for _ in range(4)]
    assert steps == [2, 2, 2, 0]  # the last sent row and five fill keys, then nothing
    assert store.counts() == {"pending": 0, "dead": 2, "sent": 0}
    assert not any(store.seen(f"f{n}") for n in range(5))


def test_restart_keeps_everything(tmp_path: Path, clock: HandClock) -> None:
    """Close and reopen: pending rows, their retry state, keys, watermark and meta survive."""
    path = tmp_path / "nested" / "dir" / "state.db"
    with StateStore(path, clock=clock) as s:
        s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1"), alert("f1", target="u")])
        item = s.head("t1")[0]
        s.mark_failed(item.id, error="HTTP 503", next_at=T0 + timedelta(seconds=3))
        s.set_meta("shaping", '{"a": 1}')
        before = s.outbox()
    with StateStore(path, clock=clock) as s:
        assert s.outbox() == before
        assert s.seen("f1")
        assert s.load_watermark() == T0
        assert s.get_meta("shaping") == '{"a": 1}'
        assert not s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])


def test_meta_replaces(store: StateStore) -> None:
    """set_meta overwrites; get_meta of an unknown key is None."""
    assert store.get_meta("k") is None
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.get_meta("k") == "2"


def test_schema_version_and_wal(tmp_path: Path) -> None:
    """A new file is in WAL mode and carries the current schema version."""
    path = tmp_path / "s.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    """A file from a newer notifier is refused with a clear message, not misread."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        StateStore(path)


def test_corrupt_file_is_a_state_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a one-line StateError naming the file."""
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database at all " * 200)
    with pytest.raises(StateError) as info:
        StateStore(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "corrupt" in message


def test_unopenable_path_is_a_state_error(tmp_path: Path) -> None:
    """A path that cannot be a file (a directory) gives a StateError."""
    path = tmp_path / "dir.db"
    path.mkdir()
    with pytest.raises(StateError, match="cannot open"):
        StateStore(path)


@pytest.mark.parametrize("under", ["afile", "afile/sub"])
def test_a_file_where_the_directory_must_be_is_named(tmp_path: Path, under: str) -> None:
    """A state path under a regular file said "[Errno 17] File exists: '...'" (or 20, "Not a
    directory"): the error names the file in the way."""
    (tmp_path / "afile").write_text("", encoding="utf-8")
    blocker = tmp_path / "afile"
    with pytest.raises(StateError) as failed:
        StateStore(tmp_path / under / "state.db")
    assert str(failed.value).endswith(
        f"cannot open: {blocker} is a file, where the state file's directory must be"
    )


def test_a_path_the_service_may_not_write_names_its_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd (ProtectSystem=strict, StateDirectory=notifier) the example's state path,
    beside a config in /etc, was refused with a bare "Read-only file system": the error says
    where the service may write. A read-only file system cannot be mounted here (nor a
    permission refused to root), so the directory's creation is made to fail as it does."""
    allowed = tmp_path / "lib"

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setenv("STATE_DIRECTORY", str(allowed))
    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StateError) as failed:
        StateStore(tmp_path / "etc" / "notifier.db")
    assert str(failed.value).endswith(
        f"Read-only file system: '{tmp_path / 'etc'}' (this service may write in {allowed}, "
        f"its state directory: set state.path to a file there, such as {allowed}/notifier.db)"
    )


def test_the_state_directory_hint_is_only_for_a_refusal_outside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hint without systemd's variable, for a path inside the directory, or for another
    error (a missing directory is not the service manager's doing)."""
    refused = OSError(errno.EACCES, "Permission denied")
    outside, inside = tmp_path / "etc" / "n.db", tmp_path / "lib" / "n.db"
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert writable_hint(refused, outside) == ""
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'lib'}:{tmp_path / 'other'}")
    assert writable_hint(refused, outside).startswith(
        f" (this service may write in {tmp_path}/lib,"
    )
    assert writable_hint(refused, inside) == ""
    assert writable_hint(OSError(errno.ENOENT, "No such file"), outside) == ""
    assert writable_hint(ValueError("not an OSError"), outside) == ""


def test_exclusive_store_locks_out_a_second_daemon_but_not_the_cli(tmp_path: Path) -> None:
    """A second exclusive opener (another daemon) is refused; a plain one (the CLI) may work."""
    path = tmp_path / "s.db"
    with StateStore(path, exclusive=True) as first:
        first.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        (row,) = first.outbox(state="pending")
        first.mark_dead(row.id, error="HTTP 500")
        with pytest.raises(StateError, match="locked by another process"):
            StateStore(path, exclusive=True, busy_timeout=0)
        with StateStore(path, busy_timeout=1) as cli:
            assert [r.state for r in cli.outbox()] == ["dead"]
            assert cli.retry_dead() == 1
        assert [r.state for r in first.outbox()] == ["pending"]
    with StateStore(path, exclusive=True, busy_timeout=0) as again:
        assert again.seen("f1")


def test_a_symlink_to_the_state_file_shares_its_lock(tmp_path: Path) -> None:
    """Two configs naming one file by different names: the second daemon is refused. Before,
    each locked `<its name>.lock`, both ran, and both delivered the same pending row."""
    path = tmp_path / "state.db"
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link.db"
    link.symlink_to(path)
    refused = pytest.raises(StateError, match="is another notifier running")
    with StateStore(path, exclusive=True), refused:
        StateStore(link, exclusive=True, busy_timeout=0)
    refused = pytest.raises(StateError, match="is another notifier running")
    with StateStore(link, exclusive=True, busy_timeout=0), refused:
        StateStore(path, exclusive=True, busy_timeout=0)
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    with pytest.raises(StateError, match="cannot open: unable to open database file"):
        StateStore(tmp_path / "loop-a", exclusive=True)  # a one-line error, as before


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from notifier.events import Alert
    from notifier.store import StateStore

    t0 = datetime(2026, 2, 6, tzinfo=UTC)
    store = StateStore(Path(sys.argv[1]))
    n = 0
    while True:
        at = t0 + timedelta(milliseconds=n)
        key = f"fill-{n}"
        alerts = [Alert(key, "r", "chat", t, "title", "body", at) for t in ("a", "b")]
        store.record(fill_key=key, filled_at=at, alerts=alerts)
        for item in store.head("a", limit=1):
            if n % 3:
                store.mark_sent(item.id)
        print(n, flush=True)
        n += 1
    """
)


def run_and_kill(script: str, path: Path, *, lines: int) -> int:
    """Run a writer child until it has printed `lines` numbers, SIGKILL it; the last number."""
    child = python_child(script, str(path))
    assert child.stdout is not None
    last = -1
    try:
        for count, line in enumerate(child.stdout, 1):
            last = int(line)
            if count >= lines:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        last = max([last, *(int(line) for line in child.stdout)])
    finally:
        child.stdout.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return last


def test_kill_9_leaves_consistent_deliverable_state(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-run leaves an intact file: whole fills, rows deliverable."""
    path = tmp_path / "s.db"
    last = run_and_kill(CHILD, path, lines=300)
    with StateStore(path) as s:
        (check,) = s._db.execute("PRAGMA integrity_check").fetchone()
        assert check == "ok"
        keys = {k for (k,) in s._db.execute("SELECT key FROM fills")}
        rows = s._db.execute("SELECT fill_key, count(*) FROM outbox GROUP BY fill_key").fetchall()
        assert {k for k, _ in rows} == keys, "every fill has its rows and every row its fill"
        assert all(n == 2 for _, n in rows)
        assert {f"fill-{n}" for n in range(last + 1)} <= keys, "printed means committed"
        pending = s.counts()["pending"]
        assert pending > len(keys)
        delivered = 0
        for target in s.pending_targets():
            while head := s.head(target):
                s.mark_sent(head[0].id)
                delivered += 1
        assert delivered == pending
        assert s.counts() == {"pending": 0, "dead": 0, "sent": 2 * len(keys)}


class Deferred:
    """Collects deferred commits, as loop.call_soon would, and runs them on demand."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.calls.append(callback)

    def run(self) -> None:
        calls, self.calls = self.calls, []
        for callback in calls:
            callback()


def committed_keys(path: Path) -> set[str]:
    """Fill keys another connection can see: what is committed."""
    db = sqlite3.connect(path)
    try:
        return {k for (k,) in db.execute("SELECT key FROM fills")}
    finally:
        db.close()


def test_group_commit_defers_records_until_flush(tmp_path: Path) -> None:
    """With defer_commit, records commit together when the scheduled flush runs."""
    path = tmp_path / "s.db"
    defer = Deferred()
    with StateStore(path, defer_commit=defer) as s:
        assert s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        assert s.record(fill_key="f2", filled_at=T0, alerts=[alert("f2")])
        assert not s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        assert len(defer.calls) == 1, "one commit scheduled per batch"
        assert committed_keys(path) == set()
        assert [i.fill_key for i in s.head("t1", limit=5)] == ["f1", "f2"]
        defer.run()
        assert committed_keys(path) == {"f1", "f2"}
        s.record(fill_key="f3", filled_at=T0, alerts=[])
        assert len(defer.calls) == 1, "the next batch schedules its own commit"


def test_group_commit_other_writes_are_durable(tmp_path: Path) -> None:
    """A non-record write, flush() and close() each commit the open batch at once."""
    path = tmp_path / "s.db"
    defer = Deferred()
    with StateStore(path, defer_commit=defer) as s:
        s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        s.mark_sent(s.head("t1")[0].id)
        assert committed_keys(path) == {"f1"}
        s.record(fill_key="f2", filled_at=T0, alerts=[])
        s.flush()
        assert committed_keys(path) == {"f1", "f2"}
        s.record(fill_key="f3", filled_at=T0, alerts=[])
    assert committed_keys(path) == {"f1", "f2", "f3"}
    defer.run()  # a commit scheduled before close finds nothing left to do


def test_group_commit_failed_record_keeps_the_batch(tmp_path: Path) -> None:
    """A record failing inside a batch undoes only itself; the batch still commits."""
    path = tmp_path / "s.db"
    defer = Deferred()
    with StateStore(path, defer_commit=defer) as s:
        s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        bad = Alert("f2", "r", "chat", "t2", object(), "b", T0)  # type: ignore[arg-type]
        with pytest.raises(sqlite3.Error):
            s.record(fill_key="f2", filled_at=T0 + timedelta(hours=1), alerts=[bad])
        defer.run()
        assert committed_keys(path) == {"f1"}
        assert s.load_watermark() == T0
        assert [i.fill_key for i in s.outbox()] == ["f1"]


def test_group_commit_batch_limit(tmp_path: Path) -> None:
    """A batch commits by itself at batch_limit records, even if the reader never yields."""
    path = tmp_path / "s.db"
    with StateStore(path, defer_commit=Deferred(), batch_limit=3) as s:
        for n in range(7):
            s.record(fill_key=f"f{n}", filled_at=T0, alerts=[])
        assert committed_keys(path) == {f"f{n}" for n in range(6)}


GROUP_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from notifier.events import Alert
    from notifier.store import StateStore

    t0 = datetime(2026, 2, 6, tzinfo=UTC)
    calls = []
    store = StateStore(Path(sys.argv[1]), defer_commit=calls.append, exclusive=True)
    n = 0
    while True:
        at = t0 + timedelta(milliseconds=n)
        key = f"fill-{n}"
        alerts = [Alert(key, "r", "chat", t, "title", "body", at) for t in ("a", "b")]
        store.record(fill_key=key, filled_at=at, alerts=alerts)
        if n % 7 == 6:
            while calls:
                calls.pop()()
            print(n, flush=True)
        n += 1
    """
)


def test_kill_9_with_group_commit(tmp_path: Path) -> None:
    """SIGKILL of an exclusive, group-committing writer loses only whole uncommitted batches."""
    path = tmp_path / "s.db"
    last = run_and_kill(GROUP_CHILD, path, lines=60)
    with StateStore(path) as s:
        (check,) = s._db.execute("PRAGMA integrity_check").fetchone()
        assert check == "ok"
        keys = {k for (k,) in s._db.execute("SELECT key FROM fills")}
        rows = s._db.execute("SELECT fill_key, count(*) FROM outbox GROUP BY fill_key").fetchall()
        assert {k for k, _ in rows} == keys
        assert all(n == 2 for _, n in rows)
        assert {f"fill-{n}" for n in range(last + 1)} <= keys, "flushed means committed"
        newest = max(int(k.removeprefix("fill-")) for k in keys)
        assert keys == {f"fill-{n}" for n in range(newest + 1)}, "batches commit whole, in order"
        assert s.load_watermark() == datetime(2026, 2, 6, tzinfo=UTC) + timedelta(
            milliseconds=newest
        )


FULL_DISK_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from notifier.errors import StateError
    from notifier.events import Alert
    from notifier.store import StateStore

    t0 = datetime(2026, 2, 6, tzinfo=UTC)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    huge = "x" * 8_000_000  # more than the page cache: SQLite spills it to the WAL mid-batch

    def attempt(label, write):
        try:
            write()
            print(label, "ok")
        except StateError as exc:
            print(label, exc)

    def full(on):
        limit = 200_000 if on else resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    store = StateStore(Path(sys.argv[1]))
    full(True)
    attempt("plain:", lambda: store.set_meta("big", huge))
    full(False)
    attempt("plain after:", lambda: store.set_meta("small", "1"))
    store.close()

    calls = []
    store = StateStore(Path(sys.argv[2]), defer_commit=calls.append)
    store.record(fill_key="a", filled_at=t0, alerts=[])
    full(True)
    big = Alert("b", "r", "chat", "t", "title", huge, t0)
    attempt("batch:", lambda: store.record(fill_key="b", filled_at=t0, alerts=[big]))
    full(False)
    attempt("batch after:", lambda: store.record(fill_key="c", filled_at=t0, alerts=[]))
    attempt("flush:", lambda: [call() for call in calls])
    """
)


def test_a_full_disk_is_reported_as_such_and_a_lost_batch_stops_writes(tmp_path: Path) -> None:
    """A disk error can end SQLite's transaction by itself; the error says so, not a rollback's.

    Outside a batch the next write works again. Inside one, the records that returned success
    are gone with it: every later write refuses with "batch lost", instead of committing on
    its own as if the batch were intact (restart and backfill bring those fills back).
    """
    plain, batched = tmp_path / "plain.db", tmp_path / "batched.db"
    code, out = python_child_output(FULL_DISK_CHILD, str(plain), str(batched))
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert code == 0, out
    assert lines == {
        "plain": f"state file {plain}: write meta: disk I/O error",
        "plain after": "ok",
        "batch": f"state file {batched}: record fill: disk I/O error",
        "batch after": f"state file {batched}: batch lost: disk I/O error",
        "flush": "ok",  # nothing left to commit: no second, misleading error
    }
    assert committed_keys(batched) == set()


FAILED_COMMIT_CHILD = textwrap.dedent(
    """
    import logging, resource, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from notifier.errors import StateError
    from notifier.store import StateStore

    logging.basicConfig(format="%(levelname)s %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    t0 = datetime(2026, 2, 6, tzinfo=UTC)
    calls = []
    broken = lambda exc: print("on_broken:", type(exc).__name__)  # noqa: E731
    store = StateStore(Path(sys.argv[1]), defer_commit=calls.append, on_broken=broken)
    store.record(fill_key="a", filled_at=t0, alerts=[])  # in the page cache, not the WAL yet
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    for call in calls:
        call()  # as the event loop runs it: must not raise into the loop
    print("callback returned")
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        store.record(fill_key="b", filled_at=t0, alerts=[])
    except StateError as exc:
        print("next write:", exc)
    """
)


def test_a_deferred_commit_that_fails_logs_one_line_and_the_next_write_raises(
    tmp_path: Path,
) -> None:
    """Run by the event loop, a failed commit was a raw "Exception in callback" traceback.
    Now one line, and `on_broken` hears of it (the service stops at once)."""
    path = tmp_path / "s.db"
    code, out = python_child_output(FAILED_COMMIT_CHILD, str(path))
    assert code == 0, out
    assert out.splitlines() == [
        f"ERROR state file {path}: commit: disk I/O error; stopping",
        "on_broken: StateError",
        "callback returned",
        f"next write: state file {path}: commit: disk I/O error",
    ]


def test_a_full_database_may_clear_in_a_batch_and_out(tmp_path: Path) -> None:
    """SQLITE_FULL (here `max_page_count`, as a full disk) is a StateBusyError, and so is the
    lost batch after it: the daemon exits 70 and is restarted, instead of stopping for good."""
    calls: list[Callable[[], None]] = []
    with StateStore(tmp_path / "s.db", defer_commit=calls.append) as store:
        store.record(fill_key="a", filled_at=T0, alerts=[])
        store.flush()
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StateBusyError, match="write meta: database or disk is full"):
            store.set_meta("big", "x" * 100_000)
        big = Alert("b", "r", "chat", "t", "title", "x" * 100_000, T0)
        with pytest.raises(StateBusyError, match="record fill: database or disk is full"):
            store.record(fill_key="b", filled_at=T0, alerts=[big])
        with pytest.raises(StateBusyError, match="batch lost: database or disk is full"):
            store.record(fill_key="c", filled_at=T0, alerts=[])


def held_keys(path: Path) -> set[str]:
    """Held fill keys another connection can see: what is committed."""
    db = sqlite3.connect(path)
    try:
        return {k for (k,) in db.execute("SELECT key FROM title_waits")}
    finally:
        db.close()


def test_held_fills_are_kept_in_order_and_released(store: StateStore) -> None:
    """Held fills come back longest waiting first; holding again keeps the first time."""
    later = T0 + timedelta(seconds=5)
    store.title_waits.hold([("f2", later, '{"n": 2}'), ("f1", T0, '{"n": 1}')])
    store.title_waits.hold([("f2", T0 + timedelta(hours=1), '{"n": "again"}')])
    assert store.title_waits.held() == [("f1", T0, '{"n": 1}'), ("f2", later, '{"n": 2}')]
    store.title_waits.release(["f1", "unknown"])
    store.title_waits.release([])
    assert [key for key, _, _ in store.title_waits.held()] == ["f2"]
    assert not store.seen("f2")  # held is not seen: the fill is still to be judged


def test_unseen_counts_held_fills_as_recorded(store: StateStore) -> None:
    """A held fill is durable, so a backfill run that brought it can close its gap."""
    store.record(fill_key="f1", filled_at=T0, alerts=[])
    store.title_waits.hold([("f2", T0, "{}")])
    assert store.unseen(["f1", "f2", "f3"]) == {"f3"}


def test_held_fills_join_the_group_commit_batch(tmp_path: Path) -> None:
    """Holding and releasing commit with the batch's records, never before them."""
    path = tmp_path / "s.db"
    defer = Deferred()
    with StateStore(path, defer_commit=defer) as s:
        s.title_waits.hold([("f1", T0, "{}")])
        s.record(fill_key="f2", filled_at=T0, alerts=[])
        assert held_keys(path) == set()
        defer.run()
        assert held_keys(path) == {"f1"}
        s.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
        s.title_waits.release(["f1"])
        assert held_keys(path) == {"f1"}
        assert committed_keys(path) == {"f2"}
        defer.run()
        assert held_keys(path) == set()
        assert committed_keys(path) == {"f1", "f2"}


def test_a_version_1_file_gains_the_held_and_shaping_tables(tmp_path: Path) -> None:
    """A state file from before held fills is migrated in place; its fills stay seen, and its
    pending row, queued before rows knew their format, reads as written in none."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)  # the schema version 1 files were made with, as they were made
    db.execute("INSERT INTO fills (key, filled_at) VALUES ('f1', ?)", (to_us(T0),))
    db.execute(
        "INSERT INTO outbox (fill_key, rule, channel, target, title, body, filled_at, "
        "created_at, next_at) VALUES ('f1', 'r', 'chat', 't1', 'title f1', 'body f1', ?1, ?1, ?1)",
        (to_us(T0),),
    )
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('shaping', '{\"version\": 1, \"rules\": {}}')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with StateStore(path) as s:
        assert s.seen("f1")
        assert [(i.fill_key, i.body_format) for i in s.outbox()] == [("f1", None)]
        s.title_waits.hold([("f2", T0, "{}")])
        assert [key for key, _, _ in s.title_waits.held()] == ["f2"]
        assert s.shaping.legacy_snapshot() == '{"version": 1, "rules": {}}'
        s.shaping.save(StateChanges(replace=True, puts=[("r", "rule", "[]", "{}")]))
        assert (s.shaping.entries(), s.shaping.legacy_snapshot()) == (
            [("r", "rule", "[]", "{}")],
            None,
        )
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "outbox_sent_by_fill" in indexes  # schema 4: what the prune looks sent rows up by
        assert "outbox_pending_by_age" in indexes  # schema 5: the fallback sweep's walk
        columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        assert "body_format" in columns  # schema 6: the format each row was written in
    finally:
        db.close()


def test_unseen_fits_an_old_sqlite_s_999_parameters(store: StateStore) -> None:
    """Each statement binds at most 500 keys: SQLite before 3.32 allows 999 parameters."""
    store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    store.record(fill_key="k3", filled_at=T0, alerts=[])
    store.title_waits.hold([("k700", T0, "{}")])
    keys = [f"k{n}" for n in range(1200)]
    assert store.unseen(keys) == set(keys) - {"k3", "k700"}


def test_a_new_state_file_is_its_owner_s_alone_and_an_old_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """The file holds every alert's text: created 0600 (with its -wal and -shm) whatever the
    umask; a file that exists keeps the mode its owner gave it."""
    before = os.umask(0o022)
    try:
        path = tmp_path / "state.db"
        with StateStore(path, exclusive=True) as s:
            s.record(fill_key="k", filled_at=T0, alerts=[alert("k")])
            files = ("state.db", "state.db-wal", "state.db-shm", "state.db.lock")
            modes = [(tmp_path / name).stat().st_mode & 0o777 for name in files]
        # The lock too: another user who could open it could hold it, and keep the daemon out.
        assert modes == [0o600, 0o600, 0o600, 0o600]
        linked = tmp_path / "linked.db"  # a symlink to where the file is to be
        linked.symlink_to(tmp_path / "target.db")
        with StateStore(linked, exclusive=True) as s:
            s.record(fill_key="k", filled_at=T0, alerts=[])
        assert (tmp_path / "target.db").stat().st_mode & 0o777 == 0o600
        old_lock = tmp_path / "older.db.lock"  # left 0644 by an older notifier
        old_lock.touch(mode=0o644)
        old_lock.chmod(0o644)
        with StateStore(tmp_path / "older.db", exclusive=True):
            assert old_lock.stat().st_mode & 0o777 == 0o600
        notes = tmp_path / "notes.txt"  # a .lock that is a link: its target is left alone
        notes.touch(mode=0o644)
        notes.chmod(0o644)
        (tmp_path / "linked-lock.db.lock").symlink_to(notes)
        with StateStore(tmp_path / "linked-lock.db", exclusive=True):
            assert notes.stat().st_mode & 0o777 == 0o644
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o640)
        shared.chmod(0o640)
        with StateStore(shared) as s:
            s.record(fill_key="k", filled_at=T0, alerts=[])
        assert shared.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(before)


def test_prune_keeps_what_was_filled_since_the_oldest_pending_alert(
    store: StateStore, clock: HandClock
) -> None:
    """A pending alert holds the prune back to its fill time (its fallback's sent row and its
    moves' keys stay); once it is sent, the rest goes."""
    for n in range(3):
        at = T0 + timedelta(hours=n)
        store.record(fill_key=f"f{n}", filled_at=at, alerts=[alert(f"f{n}", at=at)])
    first, second, third = store.outbox()
    store.mark_sent(first.id)
    store.mark_sent(third.id)
    cut = T0 + timedelta(days=1)
    assert store.prune(fills_before=cut, sent_before=cut) == 2  # f0's row and key
    assert [store.seen(f"f{n}") for n in range(3)] == [False, True, True]
    store.mark_sent(second.id)
    assert store.prune(fills_before=cut, sent_before=cut) == 4
    assert store.counts() == {"pending": 0, "dead": 0, "sent": 0}


def test_retry_dead_of_a_channel_named_empty_text_binds_it(store: StateStore) -> None:
    """`--channel ''` names a channel, as purge_dead takes it: retry_dead bound no value for
    its `channel = ?` (the name tested for truth) and raised sqlite's ProgrammingError."""
    store.record(fill_key="f1", filled_at=T0, alerts=[alert("f1")])
    (item,) = store.outbox()
    store.mark_dead(item.id, error="x")
    assert store.retry_dead(channel="") == 0
    assert store.purge_dead(channel="") == 0
    assert store.counts()["dead"] == 1


def test_rows_queued_without_a_format_take_their_channel_s_once_settled(
    store: StateStore,
) -> None:
    """Rows an older notifier queued name no format: at start they get their channel's of
    now, so a fallback or a move to another channel later keeps it; a row that names one,
    a sent row and a row of a channel not given stay as they are."""
    store.record(fill_key="a", filled_at=T0, alerts=[alert("a", target="t1")])
    store.record(fill_key="b", filled_at=T0, alerts=[alert("b", target="t2")])
    written = dataclasses.replace(alert("c", target="t3"), body_format="text")
    store.record(fill_key="c", filled_at=T0, alerts=[written])
    other = dataclasses.replace(alert("d", target="t4"), channel="gone")
    store.record(fill_key="d", filled_at=T0, alerts=[other])
    (sent,) = store.head("t2")
    store.mark_sent(sent.id)
    assert store.settle_formats({"chat": "html"}) == 1
    formats = {row.fill_key: row.body_format for row in store.outbox()}
    assert formats == {"a": "html", "c": "text", "d": None}
    (done,) = store.outbox(state="sent")
    assert done.body_format is None
    assert store.settle_formats({"chat": "html"}) == 0


async def test_prune_forever_clears_a_backlog_in_steps_then_waits_an_hour(
    tmp_path: Path, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The hourly prune deletes past one step's worth (yielding between steps), logs how many
    went, keeps what is within the horizon, and then waits PRUNE_EVERY before its next pass."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise asyncio.CancelledError  # one pass is enough

    old = PRUNE_STEP + 3
    with StateStore(tmp_path / "state.db", clock=clock) as store:
        store.remember([(f"old{n}", T0) for n in range(old)])
        store.record(fill_key="new", filled_at=T0 + timedelta(days=8), alerts=[])
        clock.now = T0 + timedelta(days=8)
        caplog.set_level(logging.INFO, logger="notifier.prune")
        with pytest.raises(asyncio.CancelledError):
            await prune_forever(store, horizon=timedelta(days=7), clock=clock, sleep=sleep)
        assert slept == [PRUNE_EVERY]
        assert not store.seen("old0")
        assert not store.seen(f"old{old - 1}")
        assert store.seen("new")
    assert f"pruned {old} old entries" in caplog.text


def test_a_start_retries_at_once_what_backs_off_but_not_what_a_service_asked_to_wait(
    tmp_path: Path,
) -> None:
    """Rows in back-off become due now (attempts kept), but for one whose last try was a
    429: the service asked for a pause, which a restart does not cut short."""
    clock = HandClock()
    later = clock.now + timedelta(minutes=5)
    with StateStore(tmp_path / "state.db", clock=clock) as store:
        for n, error in enumerate(("HTTP 500", "JSON: failure: Too Many Requests, error=429.")):
            alert = Alert(f"k{n}", "big", f"hook-{n}", "t", f"Alert {n}", "body", clock.now)
            store.record(fill_key=f"k{n}", filled_at=clock.now, alerts=[alert])
            [row] = [r for r in store.outbox() if r.fill_key == f"k{n}"]
            store.mark_failed(row.id, error=error, next_at=later)
        store.record(
            fill_key="k2",
            filled_at=clock.now,
            alerts=[Alert("k2", "big", "hook-2", "t", "Alert 2", "body", clock.now)],
        )
        assert store.retry_waiting_now(unless=lambda e: rate_limit_pause(e) is not None) == 1
        rows = {r.fill_key: (r.next_at, r.attempts) for r in store.outbox()}
    assert rows == {"k0": (clock.now, 1), "k1": (later, 1), "k2": (clock.now, 0)}
